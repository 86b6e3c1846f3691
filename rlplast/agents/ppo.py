"""PPO for a run group: R independent agents trained in one process, every tensor ``[R, ...]``.

The runner drives it::

    with torch.inference_mode():
        for t in range(T):
            actions = agent.act(obs)                       # [N, act_dim]
            step = env.step(actions)
            agent.process_step(step.reward, step.terminated, step.truncated, step.info["final_obs"])
            obs = step.obs
        agent.compute_returns(obs)
    losses = agent.update()                                # {name: [R]}

PPO holds no plasticity code. Plasticity methods attach through the optimizer factory
(``build_optimizer``) and plug-in hooks (``build_plugins``): ``before_step`` / ``after_step``
around every optimizer step and ``after_update`` after all epochs. The acting forward pass leaves
the hidden features of both networks in :attr:`PPO.acting_features` for the metrics.

Run r of a group behaves as it would alone: each run has its own action-noise and minibatch
generators, its own advantage normalisation, and the group loss is the sum of the runs' mean
losses, so each run's gradient is exactly its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator
from torch import Tensor

from rlplast import metrics
from rlplast.agents.networks import Actor, Critic, HiddenLayer, run_generators
from rlplast.agents.plasticity import OptimizerConfig, StepContext, build_optimizer, build_plugins
from rlplast.agents.plasticity.upgd import UPGD
from rlplast.agents.storage import RolloutStorage
from rlplast.agents.update_stats import UpdateStats

# salts that give each random stream of a run its own generator (see run_generators)
SALT_ACTOR, SALT_CRITIC, SALT_ACTION, SALT_MINIBATCH = 11, 12, 13, 14


class PPOConfig(BaseModel):
    """The ``agent:`` section: PPO hyperparameters (defaults: PROTOCOL.md section 2).

    The learning rate and Adam settings live in the ``optimizer:`` section.
    """

    model_config = ConfigDict(extra="forbid")

    hidden: list[PositiveInt] = Field(default_factory=lambda: [256, 256], min_length=1)
    activation: Literal["relu", "tanh"] = "relu"
    log_std_init: float = 0.0
    init_fan_in: PositiveInt | None = Field(
        None,
        description=(
            "fan-in of the first layer's LeCun bound sqrt(3/fan_in), actor and critic (CBP's and "
            "ReDo's reinit of layer 0 follow it); null = the observation size. 111 reproduces the "
            "reference's Ant-v3 network, whose 111-dim observation had 84 constant-zero entries"
        ),
    )
    steps_per_update: PositiveInt = Field(2048, description="env steps per run per update (all its envs)")
    epochs: PositiveInt = 10
    minibatches: PositiveInt = 16
    clip: float = Field(0.2, gt=0)
    gamma: float = Field(0.99, ge=0, le=1)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    normalize_advantages: bool = True
    value_coef: float = Field(1.0, ge=0)
    entropy_coef: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(None, gt=0, description="per-run gradient clipping; null = none")
    bootstrap_truncated: bool = Field(True, description="bootstrap time-limit ends from V(final obs)")

    @model_validator(mode="after")
    def _check_minibatches(self) -> PPOConfig:
        if self.steps_per_update % self.minibatches:
            raise ValueError(
                f"agent.steps_per_update ({self.steps_per_update}) must be a multiple of "
                f"agent.minibatches ({self.minibatches})"
            )
        return self


def explained_variance(values: Tensor, returns: Tensor) -> Tensor:
    """1 - Var(returns - values) / Var(returns) per run; ``[R, B] -> [R]`` (NaN if Var(returns) = 0)."""
    return 1 - (returns - values).var(dim=1) / returns.var(dim=1)


class PPO:
    """Clipped PPO with a Gaussian actor and a separate critic, for R runs at once.

    Args:
        cfg: PPO hyperparameters.
        obs_dim: observation size.
        act_dim: action size.
        seeds: one seed per run (length R); weights, action noise and minibatch order of run r
            depend only on ``seeds[r]``.
        envs_per_run: E; ``cfg.steps_per_update`` must be a multiple of it.
        optimizer_cfg: the optimizer (Adam by default).
        plugin_cfgs: plasticity plug-ins, built by ``build_plugins`` over both networks' hidden layers.
        device: where the networks and the rollout live.
    """

    def __init__(
        self,
        cfg: PPOConfig,
        obs_dim: int,
        act_dim: int,
        seeds: Sequence[int],
        envs_per_run: int = 1,
        optimizer_cfg: OptimizerConfig | None = None,
        plugin_cfgs: Sequence[object] = (),
        device: torch.device | str = "cpu",
    ):
        if cfg.steps_per_update % envs_per_run:
            raise ValueError(
                f"agent.steps_per_update ({cfg.steps_per_update}) must be a multiple of "
                f"env.envs_per_run ({envs_per_run})"
            )
        self.cfg = cfg
        self.seeds = [int(s) for s in seeds]
        self.num_runs = len(self.seeds)
        self.envs_per_run = envs_per_run
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = torch.device(device)
        self.rollout_len = cfg.steps_per_update // envs_per_run

        R = self.num_runs
        self.actor = Actor(R, obs_dim, act_dim, cfg.hidden, cfg.activation, cfg.init_fan_in)
        self.critic = Critic(R, obs_dim, cfg.hidden, cfg.activation, cfg.init_fan_in)
        # initialise on the CPU from CPU generators: the same weights whatever the device
        self.actor.mlp.reset_parameters(run_generators(self.seeds, SALT_ACTOR))
        self.critic.mlp.reset_parameters(run_generators(self.seeds, SALT_CRITIC))
        with torch.no_grad():
            self.actor.log_std.fill_(cfg.log_std_init)
        self.actor.to(self.device)
        self.critic.to(self.device)

        self.optimizer = build_optimizer(optimizer_cfg or OptimizerConfig(), self.parameters(), self.seeds)
        self.plugins = build_plugins(plugin_cfgs, self.hidden_layers(), self.optimizer, self.seeds)
        self.measures_plasticity = isinstance(self.optimizer, UPGD)  # p(Z), UPGD's own metric
        self.storage = RolloutStorage(R, envs_per_run, self.rollout_len, obs_dim, act_dim, self.device)
        self.action_generators = run_generators(self.seeds, SALT_ACTION, self.device)
        self.minibatch_generators = run_generators(self.seeds, SALT_MINIBATCH, self.device)
        self.num_updates = 0
        self.optimizer_steps = 0
        self._std = torch.empty(0)
        self._noise: list[Tensor] = []  # per step of the rollout, [R, E, act_dim]
        self._noise_logprob: list[Tensor] = []  # per step, [R, E]

    # -- structure ------------------------------------------------------------------------------

    def parameters(self) -> list[torch.nn.Parameter]:
        return [*self.actor.parameters(), *self.critic.parameters()]

    def hidden_layers(self) -> list[HiddenLayer]:
        """Hidden layers of the actor then the critic, as plug-ins see them."""
        return [*self.actor.mlp.hidden_layers(), *self.critic.mlp.hidden_layers()]

    # -- acting ---------------------------------------------------------------------------------

    def _runs(self, x: Tensor) -> Tensor:
        """``[N, ...] -> [R, E, ...]`` (run-major env order)."""
        return x.reshape(self.num_runs, self.envs_per_run, *x.shape[1:])

    def act(self, obs: Tensor) -> Tensor:
        """Sample actions for ``obs [N, obs_dim]`` and record the step: returns ``[N, act_dim]``.

        Call under ``torch.inference_mode()``. Afterwards :attr:`acting_features` holds
        ``{"actor": [...], "critic": [...]}``, each hidden layer's features ``[R, E, width]``.
        """
        storage = self.storage
        t = storage.step
        if t == 0:
            self._start_rollout()
        elif t == storage.steps:
            raise RuntimeError(f"rollout storage is full ({t} steps); call update() before acting again")
        obs = self._runs(obs)
        mean = self.actor.mlp.act(obs)
        values = self.critic.mlp.act(obs).squeeze(-1)
        actions = torch.addcmul(mean, self._std, self._noise[t])
        storage.add_action(obs, actions, self._noise_logprob[t], values)
        return actions.reshape(-1, self.act_dim)

    @property
    def acting_features(self) -> dict[str, list[Tensor]]:
        """The hidden features of the last forward pass of each network, ``[R, B, width]`` each
        (after :meth:`act`: the acting pass, B = E)."""
        return {"actor": self.actor.mlp.features, "critic": self.critic.mlp.features}

    def _start_rollout(self) -> None:
        """Draw the rollout's action noise, one generator call per run (not per step), and the
        per-step log-probabilities, which depend only on the noise while the weights are fixed:
        ``log N(a; mean, std) = sum(-noise^2 / 2 - log_std) - act_dim / 2 * log(2 pi)``."""
        self.actor.mlp.freeze_for_acting()  # the weights stay fixed until the update
        self.critic.mlp.freeze_for_acting()
        shape = (self.rollout_len, self.envs_per_run, self.act_dim)
        noise = torch.stack([torch.randn(shape, generator=g, device=self.device) for g in self.action_generators])
        log_std = self.actor.log_std.detach()
        const = -log_std.sum(-1) - 0.5 * math.log(2 * math.pi) * self.act_dim  # [R]
        logprob = (-0.5 * noise.square()).sum(-1) + const.view(-1, 1, 1)  # [R, T, E]
        # per-step views made once: a list index per step instead of a tensor index (a dispatch)
        self._noise, self._noise_logprob = list(noise.unbind(1)), list(logprob.unbind(1))
        self._std = log_std.exp().unsqueeze(1)  # [R, 1, act_dim]

    def process_step(
        self, reward: Tensor, terminated: Tensor, truncated: Tensor, final_obs: Tensor | None = None
    ) -> None:
        """Record the env's answer to the last :meth:`act`: ``reward, terminated, truncated [N]``,
        ``final_obs [N, obs_dim]`` (the last observation of envs that just ended)."""
        if self.cfg.bootstrap_truncated and final_obs is None:
            raise ValueError("agent.bootstrap_truncated needs the final observations (info['final_obs'])")
        final = final_obs if self.cfg.bootstrap_truncated else None
        self.storage.add_outcome(reward, terminated, truncated, final)  # [N, ...]: the storage lays out runs

    def compute_returns(self, last_obs: Tensor) -> None:
        """GAE advantages and returns once the rollout is full; ``last_obs [N, obs_dim]``."""
        storage = self.storage
        if not storage.full:
            raise RuntimeError(f"rollout has {storage.step} of {storage.steps} steps; cannot compute returns")
        last_value = self.critic(self._runs(last_obs))
        bootstrap = torch.zeros_like(storage.values)
        if self.cfg.bootstrap_truncated and bool(storage.truncated.any()):
            # one batched pass over every stored final obs is cheaper than a ragged per-run gather
            final_values = self.critic(storage.flat("final_obs")).view_as(bootstrap)
            ok = storage.truncated & torch.isfinite(storage.final_obs).all(-1)
            bootstrap = torch.where(ok, final_values, bootstrap)
        storage.compute_returns(last_value, bootstrap, self.cfg.gamma, self.cfg.gae_lambda)

    # -- learning -------------------------------------------------------------------------------

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-run PPO loss of one minibatch (``[R, mb, ...]`` fields): ``(loss [R], parts)``, the
        parts detached: ``policy_loss, value_loss [R]`` and ``logratio [R, mb]``."""
        cfg = self.cfg
        mean = self.actor.mlp(batch["obs"])
        logratio = self.actor.log_prob(mean, batch["actions"]) - batch["logprobs"]
        ratio = logratio.exp()
        adv = batch["advantages"]
        policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)).mean(1)
        value_loss = (self.critic(batch["obs"]) - batch["returns"]).square().mean(1)
        loss = policy_loss + cfg.value_coef * value_loss
        if cfg.entropy_coef:
            loss = loss - cfg.entropy_coef * self.actor.entropy()
        parts = {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(), "logratio": logratio.detach()}
        return loss, parts

    def _recompute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The minibatch loss with the current weights, ``[R]``, leaving the features of the
        update's forward pass in place for the plug-ins that read them."""
        saved = self.actor.mlp.features, self.critic.mlp.features
        with torch.no_grad():
            loss = self._loss(batch)[0]
        self.actor.mlp.features, self.critic.mlp.features = saved
        return loss

    def _value_plasticity(self, batch: dict[str, Tensor], loss_before: Tensor) -> Tensor:
        """UPGD's plasticity p(Z) (Elsayed & Mahmood 2024; PROTOCOL.md section 6) of the critic on
        the minibatch Z it just stepped on: ``max(1 - L(W', Z) / L(W, Z), 0)``, ``[R]``, the share
        of Z's value loss that the step (optimizer and plug-ins) removed. Taken on the value loss
        because it is non-negative, as p(Z) needs; the policy surrogate changes sign. Costs one
        critic forward pass; the features of the update's forward pass stay in place."""
        saved = self.critic.mlp.features
        with torch.no_grad():
            loss_after = (self.critic(batch["obs"]) - batch["returns"]).square().mean(1)
        self.critic.mlp.features = saved
        return metrics.upgd_plasticity(loss_before, loss_after)

    def _clip_grads(self, norm: Tensor) -> None:
        """Scale every gradient so that the global norm ``norm [R]`` is at most max_grad_norm."""
        scale = (self.cfg.max_grad_norm / (norm + 1e-6)).clamp(max=1.0)
        for p in self.parameters():
            if p.grad is not None:
                p.grad.mul_(scale.view(-1, *([1] * (p.dim() - 1))))

    def update(self) -> dict[str, Tensor]:
        """Epochs x minibatches of clipped PPO on the stored rollout, then clear it.

        Returns:
            Per-run diagnostics ``{name: [R]}``: policy_loss, value_loss, approx_kl,
            clip_fraction, grad_norm (both networks, before any clipping), actor_grad_norm,
            critic_grad_norm (means over all minibatches), explained_variance (of the rollout's
            values), entropy, log_std (mean over action dims), after the update, and
            value_plasticity: UPGD's plasticity p(Z) of the critic (:meth:`_value_plasticity`),
            the mean over the last epoch's minibatches; only under a UPGD optimizer (it costs a
            critic forward pass per minibatch, and the UPGD paper defines it for UPGD).
        """
        cfg, storage = self.cfg, self.storage
        R, B = self.num_runs, storage.steps * storage.envs_per_run
        mb = B // cfg.minibatches
        fields = {name: storage.flat(name) for name in ("obs", "actions", "logprobs", "advantages", "returns")}
        if cfg.normalize_advantages:
            adv = fields["advantages"]
            fields["advantages"] = (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + 1e-8)
        explained = explained_variance(storage.flat("values"), fields["returns"])

        rows = torch.arange(R, device=self.device).unsqueeze(1)
        stats = UpdateStats([list(self.actor.parameters()), list(self.critic.parameters())], cfg.clip)
        plasticity: list[Tensor] = []
        for epoch in range(cfg.epochs):
            perm = torch.stack([torch.randperm(B, generator=g, device=self.device) for g in self.minibatch_generators])
            # one gather per field and epoch; the minibatches are then slices (views)
            shuffled = {name: value[rows, perm] for name, value in fields.items()}
            for k in range(cfg.minibatches):
                batch = {name: value[:, k * mb : (k + 1) * mb] for name, value in shuffled.items()}
                loss, parts = self._loss(batch)
                stats.add_losses(**parts)
                self.optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()
                norms = stats.add_grads()  # before any clipping
                if cfg.max_grad_norm is not None:
                    self._clip_grads(stats.network_norms(norms).square().sum(0).sqrt())
                ctx = StepContext(
                    step=self.optimizer_steps,
                    loss=loss.detach(),
                    recompute_loss=lambda batch=batch: self._recompute_loss(batch),
                )
                for plugin in self.plugins:
                    plugin.before_step(ctx)
                self.optimizer.step()
                self.optimizer_steps += 1
                ctx.step = self.optimizer_steps
                for plugin in self.plugins:
                    plugin.after_step(ctx)
                if epoch == cfg.epochs - 1 and self.measures_plasticity:
                    plasticity.append(self._value_plasticity(batch, parts["value_loss"]))
        for plugin in self.plugins:
            plugin.after_update()
        storage.clear()
        self.num_updates += 1

        out = stats.means()
        if plasticity:
            out["value_plasticity"] = torch.stack(plasticity).mean(0)
        with torch.no_grad():
            out["explained_variance"] = explained
            out["entropy"] = self.actor.entropy()
            out["log_std"] = self.actor.log_std.mean(-1)
        return {name: value.detach() for name, value in out.items()}

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything to continue exactly; only valid between updates (empty rollout)."""
        if self.storage.step != 0:
            raise RuntimeError("PPO state can only be saved between updates (the rollout is not empty)")
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "plugins": [p.state_dict() for p in self.plugins],
            "action_generators": [g.get_state() for g in self.action_generators],
            "minibatch_generators": [g.get_state() for g in self.minibatch_generators],
            "num_updates": self.num_updates,
            "optimizer_steps": self.optimizer_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (same config, seeds and plug-ins)."""
        if len(state["plugins"]) != len(self.plugins):
            raise ValueError(
                f"checkpoint has {len(state['plugins'])} plug-in states, this agent has {len(self.plugins)}"
            )
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        for plugin, plugin_state in zip(self.plugins, state["plugins"], strict=True):
            plugin.load_state_dict(plugin_state)
        for key in ("action_generators", "minibatch_generators"):
            for g, g_state in zip(getattr(self, key), state[key], strict=True):
                g.set_state(g_state.cpu())
        self.num_updates = int(state["num_updates"])
        self.optimizer_steps = int(state["optimizer_steps"])
        self.storage.clear()
