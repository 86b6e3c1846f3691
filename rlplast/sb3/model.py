"""stable-baselines3's PPO built from an rlplast config: the same network and hyperparameters.

Mapping (PROTOCOL.md section 2; ``agent`` and ``optimizer`` sections of the config):

* network: separate actor and critic MLPs (``net_arch = {"pi": hidden, "vf": hidden}``), the
  config's activation, state-independent ``log_std`` (``log_std_init``); LeCun uniform weights
  U(+-sqrt(3 / fan_in)) and zero biases on every Linear (drawn from a generator seeded by the
  run's seed; the first layers' fan-in is ``agent.init_fan_in`` when set), in place of SB3's
  orthogonal init with gain 0.01 on the action layer.
* ``learning_rate`` = optimizer.lr; ``torch.optim.Adam`` with the optimizer's betas, eps and
  (coupled) weight_decay; ``n_steps`` = agent.steps_per_update (one env);
  ``batch_size`` = steps_per_update / minibatches; ``n_epochs``, ``clip_range``, ``gamma``,
  ``gae_lambda``, ``ent_coef``, ``vf_coef`` as configured; ``max_grad_norm`` = agent.max_grad_norm,
  or 1e10 (no clipping) when it is null.

Differences that remain: SB3 normalises advantages per minibatch (rlplast: over the whole
rollout), clips actions to the action space before the env sees them (rlplast leaves that to the
simulator, which clips controls to the same range), and bootstraps time-limit ends always (as
rlplast's default ``bootstrap_truncated: true``; ``false`` is not available).
"""

from __future__ import annotations

import math

import torch
from stable_baselines3 import PPO as SB3PPO
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from rlplast.config import Config

NO_CLIPPING = 1e10
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
INIT_SALT = 0x5B3


def check_supported(cfg: Config) -> None:
    """Raise ValueError naming each setting SB3's PPO cannot follow."""
    problems = []
    if cfg.env.envs_per_run != 1:
        problems.append(f"env.envs_per_run must be 1 (got {cfg.env.envs_per_run}): SB3 runs one env per seed")
    if cfg.optimizer.kind != "adam":
        problems.append(f"optimizer.kind must be adam (got {cfg.optimizer.kind!r}): SB3 uses torch.optim.Adam")
    others = sorted({p.kind for p in cfg.plugins} - {"cbp"})
    if others:
        problems.append(f"plugins {others} are not available for SB3 (only cbp, through rlplast.sb3.PolicyCBP)")
    if len(cfg.plugins) > 1:
        problems.append(f"at most one plug-in (cbp) for SB3, got {len(cfg.plugins)}")
    if cfg.eval.every is not None:
        problems.append("eval.every must be null: evaluation during training is not implemented for SB3 runs")
    if not cfg.agent.bootstrap_truncated:
        problems.append("agent.bootstrap_truncated must be true: SB3 always bootstraps time-limit ends")
    if problems:
        raise ValueError("the sb3 agent cannot train this config:\n  " + "\n  ".join(problems))


@torch.no_grad()
def lecun_init_(modules: list[nn.Linear], seed: int, fan_in: dict[int, int] | None = None) -> None:
    """LeCun uniform weights U(+-sqrt(3 / fan_in)) and zero biases, in order, from one generator.

    ``fan_in`` maps ``id(module)`` to the fan-in of its bound where it is not ``in_features``
    (``agent.init_fan_in`` on the first layers)."""
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + INIT_SALT)
    fan_in = fan_in or {}
    for linear in modules:
        bound = math.sqrt(3.0 / fan_in.get(id(linear), linear.in_features))
        sample = torch.rand(linear.weight.shape, generator=gen) * 2 - 1
        linear.weight.copy_(sample * bound)
        if linear.bias is not None:
            linear.bias.zero_()


def policy_linears(policy: nn.Module) -> list[nn.Linear]:
    """Every Linear of the actor (hidden layers, then ``action_net``) and the critic (then ``value_net``)."""
    extractor = policy.mlp_extractor
    modules = [*extractor.policy_net, policy.action_net, *extractor.value_net, policy.value_net]
    return [m for m in modules if isinstance(m, nn.Linear)]


def build_sb3_ppo(cfg: Config, env: VecEnv, seed: int, device: str | torch.device = "cpu") -> SB3PPO:
    """SB3's PPO on ``env`` (one env) with ``cfg``'s network and hyperparameters (see the module doc).

    Raises:
        ValueError: a setting SB3 cannot follow (:func:`check_supported`).
    """
    check_supported(cfg)
    a, o = cfg.agent, cfg.optimizer
    model = SB3PPO(
        "MlpPolicy",
        env,
        learning_rate=o.lr,
        n_steps=a.steps_per_update,
        batch_size=a.steps_per_update // a.minibatches,
        n_epochs=a.epochs,
        gamma=a.gamma,
        gae_lambda=a.gae_lambda,
        clip_range=a.clip,
        normalize_advantage=a.normalize_advantages,
        ent_coef=a.entropy_coef,
        vf_coef=a.value_coef,
        max_grad_norm=a.max_grad_norm or NO_CLIPPING,
        policy_kwargs={
            "net_arch": {"pi": list(a.hidden), "vf": list(a.hidden)},
            "activation_fn": ACTIVATIONS[a.activation],
            "log_std_init": a.log_std_init,
            "ortho_init": False,
            "optimizer_class": torch.optim.Adam,
            "optimizer_kwargs": {"betas": tuple(o.betas), "eps": o.eps, "weight_decay": o.weight_decay},
        },
        seed=seed,
        device=device,
        verbose=0,
    )
    linears = policy_linears(model.policy)
    firsts = (model.policy.mlp_extractor.policy_net[0], model.policy.mlp_extractor.value_net[0])
    fan_in = {id(m): a.init_fan_in for m in firsts} if a.init_fan_in else None
    lecun_init_(linears, seed, fan_in)
    return model
