"""CpuAntVecEnv: the cpu backend on Ant-v5 (rlplast.envs.cpu_mujoco with rlplast.envs.tasks.ant).

Kept under its own name, which the Ant tests and scripts know; it is :class:`CpuVecEnv` with the
env id checked.
"""

from __future__ import annotations

import torch

from rlplast.envs.cpu_mujoco import BAD_STATE_WARNINGS, STATE_SPEC, CpuVecEnv, available_cores
from rlplast.envs.vec import ANT_IDS, EnvConfig

__all__ = ["BAD_STATE_WARNINGS", "STATE_SPEC", "CpuAntVecEnv", "available_cores"]


class CpuAntVecEnv(CpuVecEnv):
    """Ant-v5 x N on MuJoCo C (``cfg.id`` must be an Ant id)."""

    def __init__(
        self, cfg: EnvConfig, num_runs: int, device: str | torch.device = "cpu", num_threads: int | None = None
    ):
        if cfg.id not in ANT_IDS:
            raise ValueError(f"CpuAntVecEnv simulates {', '.join(ANT_IDS)}; got {cfg.id!r} (use CpuVecEnv)")
        super().__init__(cfg, num_runs, device, num_threads)
