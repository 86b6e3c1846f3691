"""What Hopper-v5 and Walker2d-v5 share: a walker in the (x, z) plane that must stay upright.

Observation: qpos (without x by default) and qvel clipped to [-10, 10]. Reward: forward velocity
of the root (qpos[0]) + healthy reward (while healthy) - control cost. Healthy: height qpos[1]
and torso angle qpos[2] strictly inside their ranges. Reset: uniform noise on qpos and qvel.
"""

from __future__ import annotations

import numpy as np

from rlplast.envs.tasks.arrays import namespace
from rlplast.envs.tasks.base import LocomotionTask, TaskSpec, control_cost


class PlanarWalkerSpec(TaskSpec):
    """The keyword arguments both envs take (defaults: each env's spec)."""

    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 1e-3
    healthy_reward: float = 1.0
    terminate_when_unhealthy: bool = True
    healthy_z_range: tuple[float, float]
    healthy_angle_range: tuple[float, float]
    reset_noise_scale: float = 5e-3


class PlanarWalkerTask(LocomotionTask):
    """A planar walker (see the module docstring)."""

    spec: PlanarWalkerSpec

    def observation(self, sim: dict[str, np.ndarray]) -> np.ndarray:
        position = sim["qpos"][:, 1:] if self.spec.exclude_current_positions_from_observation else sim["qpos"]
        xp = namespace(position)
        return xp.concatenate([position, xp.clip(sim["qvel"], -10.0, 10.0)], axis=1)

    def healthy(self, sim: dict[str, np.ndarray]) -> np.ndarray:
        (z_low, z_high), (a_low, a_high) = self.spec.healthy_z_range, self.spec.healthy_angle_range
        z, angle = sim["qpos"][:, 1], sim["qpos"][:, 2]
        return (z_low < z) & (z < z_high) & (a_low < angle) & (angle < a_high)

    def reward(self, sim, x_before, x_after, action, healthy):
        s = self.spec
        forward = s.forward_reward_weight * ((x_after - x_before) / self.dt)
        return (forward + healthy * s.healthy_reward) - control_cost(action, s.ctrl_cost_weight)
