"""Ant-v5 (rlplast's default: no contact forces in the observation, 27 dims).

The formulas live in rlplast.envs.ant_math, which the Warp backend's kernels mirror too; this
module binds them to the task interface. Ant keeps the reference's friction: the schedule value
is every geom's sliding friction (its geoms all have 1.0, so a multiplier would agree).
"""

from __future__ import annotations

from typing import ClassVar

import mujoco
import numpy as np

from rlplast.envs import ant_math
from rlplast.envs.ant_math import AntSpec
from rlplast.envs.tasks.base import LocomotionTask, uniform_then_normal


class AntTask(LocomotionTask):
    """Ant-v5: forward velocity of the torso + healthy reward - control and contact costs."""

    env_id = "Ant-v5"
    Spec = AntSpec
    friction_scales_own: ClassVar[bool] = False
    spec: AntSpec

    def bind(self, model: mujoco.MjModel) -> None:
        body = self.spec.main_body
        self.main_body = body if isinstance(body, int) else mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body)
        if not 0 <= self.main_body < model.nbody:
            raise ValueError(f"main_body {body!r} is not a body of {self.spec.xml_file}")

    def views(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        return {"qpos": data.qpos, "qvel": data.qvel, "cfrc_ext": data.cfrc_ext, "xpos": data.xpos[self.main_body]}

    def position(self, sim: dict[str, np.ndarray]) -> np.ndarray:
        return sim["xpos"][:, 0]  # the main body's x from MuJoCo's kinematics, as Ant-v5 reads it

    def observation(self, sim: dict[str, np.ndarray]) -> np.ndarray:
        return ant_math.observation(sim["qpos"], sim["qvel"], sim["cfrc_ext"], self.spec)

    def healthy(self, sim: dict[str, np.ndarray]) -> np.ndarray:
        return ant_math.is_healthy(sim["qpos"], sim["qvel"], self.spec)

    def reward(self, sim, x_before, x_after, action, healthy):
        return ant_math.reward(x_before, x_after, action, sim["cfrc_ext"], healthy, self.spec, self.dt)

    def terminated(self, healthy: np.ndarray) -> np.ndarray:
        return ant_math.terminated(healthy, self.spec)

    def reset_state(self, rng, qpos0, qvel0):
        return uniform_then_normal(rng, qpos0, qvel0, self.spec.reset_noise_scale)
