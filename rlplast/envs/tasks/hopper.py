"""Hopper-v5: hop forward in the plane, upright and with every state entry bounded."""

from __future__ import annotations

import math

import numpy as np

from rlplast.envs.tasks.arrays import namespace
from rlplast.envs.tasks.planar import PlanarWalkerSpec, PlanarWalkerTask


class HopperSpec(PlanarWalkerSpec):
    """Hopper-v5's keyword arguments (Gymnasium's names and defaults)."""

    xml_file: str = "hopper.xml"
    frame_skip: int = 4
    healthy_state_range: tuple[float, float] = (-100.0, 100.0)
    healthy_z_range: tuple[float, float] = (0.7, math.inf)
    healthy_angle_range: tuple[float, float] = (-0.2, 0.2)


class HopperTask(PlanarWalkerTask):
    """Hopper-v5 (rlplast.envs.tasks.planar), healthy also while the state stays in range."""

    env_id = "Hopper-v5"
    Spec = HopperSpec
    spec: HopperSpec

    def healthy(self, sim: dict[str, np.ndarray]) -> np.ndarray:
        """Upright, and every entry of the state past (x, z), ``(qpos, qvel)[2:]``, strictly
        inside the state range."""
        low, high = self.spec.healthy_state_range
        state = namespace(sim["qpos"]).concatenate([sim["qpos"], sim["qvel"]], axis=1)[:, 2:]
        return ((low < state) & (state < high)).all(axis=1) & super().healthy(sim)
