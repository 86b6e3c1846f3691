"""The VecEnv contract (torch in, torch out, same-step autoreset) and its config.

N = R runs x E envs per run, run-major: env ``n = r * E + e``. Every backend returns float32
tensors on its ``device``:

* ``reset(seeds)`` (one seed per run) -> obs ``[N, obs_dim]``.
* ``step(actions [N, act_dim])`` -> :class:`StepResult` with obs ``[N, obs_dim]``, reward ``[N]``,
  terminated ``[N]`` and truncated ``[N]`` (bool), and ``info``:

  - ``final_obs [N, obs_dim]``: the last observation of envs that just ended (``obs`` already holds
    their reset observation); equal to ``obs`` elsewhere.
  - ``episode_return [N]``, ``episode_length [N]``: of the episode that just ended (0 elsewhere).
  - ``friction [N]``: each env's friction now (after any change at this step's episode ends).
  - ``run_steps [R]`` int64: env steps of each run so far, summed over its E envs.
  - ``nonfinite_resets [N]`` int64: envs reset so far because the simulator produced NaN/inf.

* ``state_dict()`` / ``load_state_dict(state)``: everything needed to continue exactly (tensors,
  python scalars, lists and dicts only: ``torch.load(weights_only=True)`` loads it).

Backends (built by rlplast.envs.factory.make_vec_env): ``cpu`` (the locomotion tasks of
rlplast.envs.tasks on MuJoCo C, stepped in threads; rlplast.envs.cpu_mujoco), ``gym`` (any
Gymnasium MuJoCo id; rlplast.envs.gym_vec), ``warp`` (the tasks mujoco_warp simulates, all but
Humanoid: Ant-v5 by rlplast.envs.warp_ant, the others by rlplast.envs.warp_mujoco; imported only
when asked for), ``auto`` (warp with CUDA and mujoco_warp for the ids warp runs, else cpu for the
ids of a task, else gym).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from rlplast.envs.friction import FrictionConfig

# Ids of Ant-v5, whose observation default is ours (no contact forces) and which warp rebuilds.
ANT_IDS = ("Ant-v5",)


class EnvConfig(BaseModel):
    """Which env, how its friction changes, and how many envs each run steps.

    Attributes:
        id: a Gymnasium id; the ``cpu`` backend supports those of rlplast.envs.tasks.TASKS (Ant,
            HalfCheetah, Hopper, Walker2d, Humanoid v5), ``warp`` those but Humanoid, ``gym`` any.
        kwargs: passed to the env (Ant-v5's keyword arguments); for Ant-v5
            ``include_cfrc_ext_in_observation`` defaults to False here (27-dim observation).
        friction: the friction schedule, mode and when changes apply.
        envs_per_run: E, envs stepped in parallel by each run.
        max_episode_steps: truncation length.
        num_threads: simulator threads of the ``cpu`` backend (None: every core this process may use).
    """

    model_config = ConfigDict(extra="forbid")

    id: str = "Ant-v5"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    friction: FrictionConfig = Field(default_factory=FrictionConfig)
    envs_per_run: int = Field(1, ge=1)
    max_episode_steps: int = Field(1000, ge=1)
    num_threads: int | None = Field(None, ge=1)

    def env_kwargs(self) -> dict[str, Any]:
        """``kwargs`` with our Ant default (no contact forces in the observation) filled in."""
        if self.id in ANT_IDS:
            return {"include_cfrc_ext_in_observation": False, **self.kwargs}
        return dict(self.kwargs)


class StepResult(NamedTuple):
    """What :meth:`VecEnv.step` returns (see the module docstring for shapes)."""

    obs: Tensor
    reward: Tensor
    terminated: Tensor
    truncated: Tensor
    info: dict[str, Tensor]


class VecEnv(abc.ABC):
    """Base of the batched backends: sizes, device, and the action check.

    Attributes:
        num_runs: R. envs_per_run: E. num_envs: N = R * E.
        obs_dim, act_dim: observation and action sizes.
        device: where the returned tensors live.
    """

    def __init__(self, num_runs: int, envs_per_run: int, obs_dim: int, act_dim: int, device: str | torch.device):
        if num_runs < 1:
            raise ValueError(f"num_runs must be >= 1, got {num_runs}")
        self.num_runs = int(num_runs)
        self.envs_per_run = int(envs_per_run)
        self.num_envs = self.num_runs * self.envs_per_run
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.device = torch.device(device)

    def check_actions(self, actions: Tensor) -> Tensor:
        """Return ``actions`` as a tensor, or raise ValueError on a wrong shape or a NaN/inf."""
        actions = torch.as_tensor(actions)
        if actions.shape != (self.num_envs, self.act_dim):
            raise ValueError(
                f"actions must have shape [num_envs, act_dim] = [{self.num_envs}, {self.act_dim}], "
                f"got {list(actions.shape)}"
            )
        if not actions.is_floating_point():
            raise ValueError(f"actions must be floating point, got {actions.dtype}")
        if not torch.isfinite(actions).all():
            bad = (~torch.isfinite(actions)).any(dim=1).nonzero().flatten().tolist()
            raise ValueError(f"actions must be finite; NaN/inf in envs {bad[:10]}")
        return actions

    @abc.abstractmethod
    def reset(self, seeds: Sequence[int]) -> Tensor:
        """Reset every env, run r from ``seeds[r]``; returns obs ``[N, obs_dim]``."""

    @abc.abstractmethod
    def step(self, actions: Tensor) -> StepResult:
        """Step every env with ``actions [N, act_dim]``; envs that end are reset in the same call."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (into an env built with the same config)."""

    def close(self) -> None:  # noqa: B027 (optional: a backend without resources needs nothing)
        """Release threads and simulators."""


def __getattr__(name: str) -> Any:
    # the factory imports the backends, which import this module: reached lazily, not at import
    if name in ("make_vec_env", "warp_available"):
        from rlplast.envs import factory

        return getattr(factory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
