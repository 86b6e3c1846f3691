"""HalfCheetah-v5: run forward in the plane; no termination."""

from __future__ import annotations

import numpy as np

from rlplast.envs.tasks.arrays import namespace
from rlplast.envs.tasks.base import LocomotionTask, TaskSpec, control_cost, uniform_then_normal


class HalfCheetahSpec(TaskSpec):
    """HalfCheetah-v5's keyword arguments (Gymnasium's names and defaults)."""

    xml_file: str = "half_cheetah.xml"
    frame_skip: int = 5
    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 0.1
    reset_noise_scale: float = 0.1


class HalfCheetahTask(LocomotionTask):
    """HalfCheetah-v5: forward velocity of the root (qpos[0]) - control cost."""

    env_id = "HalfCheetah-v5"
    Spec = HalfCheetahSpec
    spec: HalfCheetahSpec

    def observation(self, sim: dict[str, np.ndarray]) -> np.ndarray:
        """qpos (without x by default), qvel."""
        position = sim["qpos"][:, 1:] if self.spec.exclude_current_positions_from_observation else sim["qpos"]
        return namespace(position).concatenate([position, sim["qvel"]], axis=1)

    def reward(self, sim, x_before, x_after, action, healthy):
        forward = self.spec.forward_reward_weight * ((x_after - x_before) / self.dt)
        return forward - control_cost(action, self.spec.ctrl_cost_weight)

    def reset_state(self, rng, qpos0, qvel0):
        return uniform_then_normal(rng, qpos0, qvel0, self.spec.reset_noise_scale)
