"""Humanoid-v5: walk forward without falling; the observation holds the body's inertias,
velocities, actuator and contact forces, and the forward position is the centre of mass."""

from __future__ import annotations

import math

import mujoco
import numpy as np

from rlplast.envs.tasks.arrays import namespace
from rlplast.envs.tasks.base import LocomotionTask, TaskSpec, control_cost


class HumanoidSpec(TaskSpec):
    """Humanoid-v5's keyword arguments (Gymnasium's names and defaults)."""

    xml_file: str = "humanoid.xml"
    frame_skip: int = 5
    forward_reward_weight: float = 1.25
    ctrl_cost_weight: float = 0.1
    contact_cost_weight: float = 5e-7
    contact_cost_range: tuple[float, float] = (-math.inf, 10.0)
    healthy_reward: float = 5.0
    terminate_when_unhealthy: bool = True
    healthy_z_range: tuple[float, float] = (1.0, 2.0)
    reset_noise_scale: float = 1e-2
    include_cinert_in_observation: bool = True
    include_cvel_in_observation: bool = True
    include_qfrc_actuator_in_observation: bool = True
    include_cfrc_ext_in_observation: bool = True


class HumanoidTask(LocomotionTask):
    """Humanoid-v5: forward velocity of the centre of mass + healthy reward - control and contact costs."""

    env_id = "Humanoid-v5"
    Spec = HumanoidSpec
    spec: HumanoidSpec

    def bind(self, model: mujoco.MjModel) -> None:
        self.body_mass = model.body_mass.copy()  # [nbody]

    def views(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        names = ("qpos", "qvel", "xipos", "cinert", "cvel", "qfrc_actuator", "cfrc_ext")
        return {name: getattr(data, name) for name in names}

    def position(self, sim: dict[str, np.ndarray]) -> np.ndarray:
        """``[N]``: x of the centre of mass (bodies' ``xipos`` weighted by mass)."""
        x = sim["xipos"][:, :, 0]
        xp = namespace(x)
        return xp.einsum("b,nb->n", xp.asarray(self.body_mass, like=x), x) / self.body_mass.sum()

    def observation(self, sim: dict[str, np.ndarray]) -> np.ndarray:
        """qpos (without x, y by default), qvel, then per body but the world's: cinert, cvel,
        qfrc_actuator past the free joint, cfrc_ext (each part as the spec includes it)."""
        n, s, xp = len(sim["qpos"]), self.spec, namespace(sim["qpos"])
        parts = [sim["qpos"][:, 2:] if s.exclude_current_positions_from_observation else sim["qpos"], sim["qvel"]]
        if s.include_cinert_in_observation:
            parts.append(sim["cinert"][:, 1:].reshape(n, -1))
        if s.include_cvel_in_observation:
            parts.append(sim["cvel"][:, 1:].reshape(n, -1))
        if s.include_qfrc_actuator_in_observation:
            parts.append(sim["qfrc_actuator"][:, 6:])
        if s.include_cfrc_ext_in_observation:
            parts.append(sim["cfrc_ext"][:, 1:].reshape(n, -1))
        return xp.concatenate(parts, axis=1)

    def healthy(self, sim: dict[str, np.ndarray]) -> np.ndarray:
        """Torso height qpos[2] strictly inside the range."""
        low, high = self.spec.healthy_z_range
        z = sim["qpos"][:, 2]
        return (low < z) & (z < high)

    def reward(self, sim, x_before, x_after, action, healthy):
        s, xp = self.spec, namespace(x_after)
        forward = s.forward_reward_weight * ((x_after - x_before) / self.dt)
        contact = s.contact_cost_weight * xp.square(sim["cfrc_ext"]).sum(axis=(1, 2))
        contact = xp.clip(contact, *s.contact_cost_range)
        return (forward + healthy * s.healthy_reward) - (control_cost(action, s.ctrl_cost_weight) + contact)
