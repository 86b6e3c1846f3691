"""FrictionClock: which friction each env of a run group should have, step by step.

Shared by the Gymnasium wrapper (one run, one env) and the VecEnv backends (R runs x E envs,
run-major). Each run follows its own schedule from its own seed, and its clock is the run's env
steps summed over its E envs. With ``apply: episode_end`` an env takes the schedule's current
value when its episode ends; with ``immediate`` every env of the run takes it at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rlplast.envs.seeding import check_seeds

if TYPE_CHECKING:
    from rlplast.envs.friction import FrictionConfig


class FrictionClock:
    """Schedule position and target friction of N = R x E envs.

    Attributes:
        seeds: ``[R]`` int64, the run seeds given to :meth:`reset`.
        run_steps: ``[R]`` int64, env steps of each run so far (summed over its E envs).
        friction: ``[N]`` float64, the friction each env should have now.
    """

    def __init__(self, cfg: FrictionConfig, num_runs: int, envs_per_run: int):
        if num_runs < 1 or envs_per_run < 1:
            raise ValueError(f"need num_runs >= 1 and envs_per_run >= 1, got {num_runs} and {envs_per_run}")
        self.cfg = cfg
        self.num_runs = num_runs
        self.envs_per_run = envs_per_run
        self.seeds = np.zeros(num_runs, dtype=np.int64)
        self.run_steps = np.zeros(num_runs, dtype=np.int64)
        self.friction = np.full(num_runs * envs_per_run, np.nan)

    def _targets(self) -> np.ndarray:
        """``[N]``: the schedule's value now for every env (the value of its run)."""
        values = [self.cfg.schedule.at(int(s), int(t)) for s, t in zip(self.seeds, self.run_steps, strict=True)]
        return np.repeat(np.asarray(values, dtype=np.float64), self.envs_per_run)

    def _update(self, mask: np.ndarray) -> np.ndarray:
        target = self._targets()
        changed = mask & (target != self.friction)
        self.friction[changed] = target[changed]
        return changed

    def reset(self, seeds: Sequence[int]) -> None:
        """Start every run's schedule from step 0 with its seed."""
        self.seeds[:] = check_seeds(seeds, self.num_runs)
        self.run_steps[:] = 0
        self.friction[:] = self._targets()

    def tick(self) -> np.ndarray:
        """Advance every run by one step of its E envs.

        Returns:
            ``[N]`` bool: envs whose friction changed (possible only with ``apply: immediate``).
        """
        self.run_steps += self.envs_per_run
        if self.cfg.apply == "immediate":
            return self._update(np.ones_like(self.friction, dtype=bool))
        return np.zeros(self.friction.shape, dtype=bool)

    def episode_end(self, done: np.ndarray) -> np.ndarray:
        """Envs ``done [N]`` start a new episode; with ``episode_end`` they take the current value.

        Returns:
            ``[N]`` bool: envs whose friction changed.
        """
        if self.cfg.apply == "episode_end" and done.any():
            return self._update(np.asarray(done, dtype=bool))
        return np.zeros(self.friction.shape, dtype=bool)

    def state_dict(self) -> dict[str, Any]:
        """Seeds, run steps and current frictions (CPU tensors, so ``torch.load(weights_only=True)`` works)."""
        return {key: torch.from_numpy(getattr(self, key).copy()) for key in ("seeds", "run_steps", "friction")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        for key in ("seeds", "run_steps", "friction"):
            value = np.asarray(state[key])
            target = getattr(self, key)
            if value.shape != target.shape:
                raise ValueError(f"friction clock state {key!r} has shape {value.shape}, expected {target.shape}")
            target[:] = value
