"""A trained policy in Python: load one seed's actor from a run's checkpoint, predict, export.

::

    import rlplast

    policy = rlplast.load_policy("results/demo/ppo", seed=0)    # or .../ppo/seed0, or a .pt
    action, _ = policy.predict(obs)                              # the mean action, as in SB3
    policy.export_state_dict("actor.pt")                         # plain torch state dict
    policy.export_torchscript("actor.ts")                        # torch.jit.load("actor.ts")(obs)

A run group's checkpoint holds every weight with a leading run dimension ``[R, ...]``; the policy
holds run r's slice as a plain :class:`GaussianActor` (``nn.Linear`` layers), which needs nothing
of rlplast to run once exported. Actions are the network's output as the env received it in
training: unclipped (MuJoCo clamps controls to the actuators' ranges).
"""

from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from rlplast.agents.networks import Actor
from rlplast.checkpoint import load_checkpoint
from rlplast.config import Config, ConfigError, read_yaml, validate
from rlplast.report.aggregate import CONFIG_FILE, seed_dirs
from rlplast.run_support import CHECKPOINT_DIR, run_dir, saved_groups

ACTIVATION_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh}
_SEED_DIR = re.compile(r"^seed(\d+)$")


def seed_of_folder(path: Path) -> int | None:
    """``k`` of a run folder ``.../seed<k>``, else None."""
    match = _SEED_DIR.match(Path(path).name)
    return int(match[1]) if match and Path(path).is_dir() else None


class PolicyNotFound(ValueError):
    """No loadable policy at the path given (the message says what is there and what to pass)."""


class GaussianActor(nn.Module):
    """One run's actor as plain torch modules: ``mean = net(obs)``, ``std = exp(log_std)``.

    Attributes:
        net: ``nn.Sequential`` of Linear and activation layers, ``[B, obs_dim] -> [B, act_dim]``.
        log_std: ``[act_dim]``, state-independent.
    """

    def __init__(self, obs_dim: int, hidden: list[int], act_dim: int, activation: str = "relu"):
        super().__init__()
        dims = [obs_dim, *hidden, act_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(ACTIVATION_MODULES[activation]())
        self.net = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def forward(self, obs: Tensor) -> Tensor:
        """The mean action: ``[..., obs_dim] -> [..., act_dim]``."""
        return self.net(obs)

    @classmethod
    def from_group(cls, actor: Actor, run: int) -> GaussianActor:
        """Run ``run``'s slice of a run group's actor, copied to the CPU."""
        mlp = actor.mlp
        linears = list(mlp.layers)
        hidden = [layer.out_features for layer in linears[:-1]]
        with torch.device("meta"):  # no init draws: torch's default generator is left as it was
            out = cls(linears[0].in_features, hidden, linears[-1].out_features, mlp.activation)
        out = out.to_empty(device="cpu")
        with torch.no_grad():
            for mine, theirs in zip(out.net[::2], linears, strict=True):
                mine.weight.copy_(theirs.weight[run])
                mine.bias.copy_(theirs.bias[run])
            out.log_std.copy_(actor.log_std[run])
        out.requires_grad_(False)
        return out.eval()


@dataclass
class Policy:
    """One seed's trained actor, with SB3's ``predict``.

    Attributes:
        actor: the network (CPU, float32).
        config: the run's resolved config.
        seed: the run's seed.
        step: the env steps the run had trained when its checkpoint was saved.
        checkpoint: the checkpoint file it came from.
    """

    actor: GaussianActor
    config: Config
    seed: int
    step: int
    checkpoint: Path

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    @property
    def obs_dim(self) -> int:
        return self.actor.net[0].in_features

    @property
    def act_dim(self) -> int:
        return self.actor.log_std.shape[0]

    def predict(
        self, observation: np.ndarray, state: None = None, episode_start: None = None, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """Actions for ``observation`` ``[obs_dim]`` or ``[B, obs_dim]`` -> ``([act_dim] or [B, act_dim], None)``.

        As stable-baselines3's ``predict`` (which returns a recurrent state, None here): the mean
        action when ``deterministic``, else a draw from N(mean, exp(log_std)^2) (from a generator
        seeded by the run's seed). Returns float32 numpy.
        """
        obs = np.asarray(observation, dtype=np.float32)
        if obs.shape[-1:] != (self.obs_dim,) or obs.ndim not in (1, 2):
            raise ValueError(f"observation must have shape [{self.obs_dim}] or [B, {self.obs_dim}], got {obs.shape}")
        with torch.inference_mode():
            mean = self.actor(torch.from_numpy(obs)).numpy()
        if deterministic:
            return mean, None
        std = np.exp(self.actor.log_std.detach().numpy())
        return (mean + std * self._rng.standard_normal(mean.shape)).astype(np.float32), None

    def export_state_dict(self, path: Path) -> None:
        """Save the actor's plain torch state dict (``net.<i>.weight``, ``net.<i>.bias``, ``log_std``),
        loadable into :class:`GaussianActor` or any ``nn.Sequential`` of the same layers."""
        from rlplast.atomic import atomic_write

        state = {k: v.detach().clone() for k, v in self.actor.state_dict().items()}
        atomic_write(Path(path), lambda f: torch.save(state, f), "wb")

    def export_torchscript(self, path: Path) -> None:
        """Save the actor as TorchScript: ``torch.jit.load(path)(obs [B, obs_dim]) -> mean [B, act_dim]``."""
        from rlplast.atomic import atomic_write

        with warnings.catch_warnings():  # torch 2.9+ marks TorchScript deprecated; it still loads anywhere
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(self.actor)
            atomic_write(Path(path), lambda f: torch.jit.save(scripted, f), "wb")


def locate_run(path: Path, seed: int | None) -> tuple[Path, int]:
    """The method folder and seed that ``path`` (a seed folder, a method folder or a group
    checkpoint) and ``seed`` name.

    Raises:
        PolicyNotFound: nothing of the kind at ``path``, a seed that is not there, or a method
            folder of several seeds without ``seed``.
    """
    path = Path(path)
    if path.is_file():
        method_dir, seeds = path.parent.parent, _checkpoint_seeds(path)
    elif (run_seed := seed_of_folder(path)) is not None:
        method_dir, seeds = path.parent, [run_seed]
    elif path.is_dir() and (seed_dirs(path) or (path / CHECKPOINT_DIR).is_dir()):
        method_dir, seeds = path, [s for s, _ in seed_dirs(path)]
    else:
        raise PolicyNotFound(f"{path}: not a run folder (seed<k>), a method folder or a checkpoint of rlplast")
    if seed is None:
        if len(seeds) != 1:
            raise PolicyNotFound(f"{path} holds seeds {seeds}; choose one with seed=...")
        seed = seeds[0]
    elif seed not in seeds:
        raise PolicyNotFound(f"{path} holds seeds {seeds}, not seed {seed}")
    return method_dir, int(seed)


def _checkpoint_seeds(path: Path) -> list[int]:
    for ckpt, seeds in saved_groups(path.parent.parent):
        if ckpt.resolve() == path.resolve():
            return seeds
    raise PolicyNotFound(f"{path}: not a run group's checkpoint (<method>/{CHECKPOINT_DIR}/seeds_<list>.pt)")


def load_run_config(method_dir: Path, seed: int) -> Config:
    """The resolved config saved with run ``seed`` of ``method_dir``.

    Raises:
        PolicyNotFound: the run has no readable config.yaml.
    """
    path = run_dir(method_dir, seed) / CONFIG_FILE
    if not path.is_file():
        raise PolicyNotFound(f"{path} is missing: seed {seed} of {method_dir} has not started")
    try:
        return validate(read_yaml(path), source=str(path))
    except ConfigError as err:
        raise PolicyNotFound(str(err)) from None


def find_group(method_dir: Path, seed: int) -> tuple[Path, list[int]]:
    """The checkpoint of the run group that trained ``seed``, and the group's seeds.

    Raises:
        PolicyNotFound: no checkpoint holds the seed (an SB3 run, or a run not yet saved).
    """
    group = next(((path, seeds) for path, seeds in saved_groups(method_dir) if seed in seeds), None)
    if group is not None:
        return group
    if (Path(method_dir) / CHECKPOINT_DIR / f"sb3_seed{seed}.pt").exists():
        raise PolicyNotFound(
            f"seed {seed} of {method_dir} was trained by stable-baselines3 (implementation: sb3); "
            "load it with stable-baselines3 instead"
        )
    raise PolicyNotFound(f"no checkpoint of seed {seed} in {Path(method_dir) / CHECKPOINT_DIR} (not saved yet?)")


def read_group_actor(path: Path, seeds: list[int], cfg: Config) -> tuple[Actor, int]:
    """The actor of a run group's checkpoint ``[R, ...]`` and the step it was saved at.

    Read with :func:`rlplast.checkpoint.load_checkpoint` against ``cfg`` (a run's saved config),
    so a checkpoint of another config is refused.
    """
    state = load_checkpoint(path, cfg.training_dict())
    actor_state = state["agent"]["actor"]
    obs_dim = actor_state["mlp.layers.0.weight"].shape[-1]
    act_dim = actor_state["log_std"].shape[-1]
    with torch.device("meta"):  # no init draws: torch's default generator is left as it was
        actor = Actor(len(seeds), obs_dim, act_dim, cfg.agent.hidden, cfg.agent.activation)
    actor.load_state_dict(actor_state, assign=True)
    return actor, int(state["run_step"])


def load_policy(path: str | Path, seed: int | None = None) -> Policy:
    """Load one seed's trained policy from a results folder.

    Args:
        path: a run folder (``<method>/seed<k>``), a method folder (``<experiment>/<method>``) or a
            group checkpoint (``<method>/checkpoints/seeds_<list>.pt``).
        seed: which run; may be left out when ``path`` names a single one.

    Returns:
        A :class:`Policy` whose ``predict(obs, deterministic=True)`` gives the mean action.

    Raises:
        PolicyNotFound: see :func:`locate_run` and :func:`find_group`.
        rlplast.checkpoint.CheckpointMismatch, CheckpointUnreadable: a damaged or foreign checkpoint.
    """
    method_dir, seed = locate_run(Path(path), seed)
    cfg = load_run_config(method_dir, seed)
    ckpt, seeds = find_group(method_dir, seed)
    actor, step = read_group_actor(ckpt, seeds, cfg)
    return Policy(GaussianActor.from_group(actor, seeds.index(seed)), cfg, seed, step, ckpt)
