"""Gymnasium Ant-v5's observation, reward and termination as batched array functions.

The CPU backend computes its outputs with these functions (float64 numpy, where small-array calls
are cheapest), term by term as ``gymnasium/envs/mujoco/ant_v5.py`` (Gymnasium 1.x) does; the Warp
backend mirrors them in its kernels. What a backend must hand over after each env step, for N envs:

* ``qpos [N, nq]``, ``qvel [N, nv]``: the state after ``frame_skip`` calls of ``mj_step``.
* ``cfrc_ext [N, nbody, 6]``: ``data.cfrc_ext`` after ``mj_rnePostConstraint`` (Gymnasium calls it
  after the substeps; MuJoCo does not fill cfrc_ext otherwise). After a reset it is what
  ``mj_resetData`` + ``mj_forward`` leave there (zeros for Ant).
* ``x_before [N]``, ``x_after [N]``: ``data.xpos[main_body, 0]`` read just before and just after the
  step (before = after the previous step, or after the reset's ``mj_forward``). Note these are
  MuJoCo's kinematics of the last RK4 stage, not ``qpos[0]``.
* ``action [N, nu]``: the action as given (MuJoCo clamps ctrl to [-1, 1]; the cost does not).

The reset (also to mirror): ``mj_resetData``; ``qpos = qpos0 + U(-s, s)`` then
``qvel = 0 + s * N(0, 1)`` (s = ``reset_noise_scale``, drawn in that order from the env's numpy
generator); ``mj_forward``.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rlplast.envs.tasks.arrays import namespace


class AntSpec(BaseModel):
    """Ant-v5's keyword arguments (Gymnasium's names and defaults, but the observation's).

    Ours: ``include_cfrc_ext_in_observation`` defaults to False (27 dims; PROTOCOL.md section 1).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    xml_file: str = "ant.xml"
    frame_skip: int = Field(5, ge=1)
    forward_reward_weight: float = 1.0
    ctrl_cost_weight: float = 0.5
    contact_cost_weight: float = 5e-4
    healthy_reward: float = 1.0
    main_body: int | str = 1
    terminate_when_unhealthy: bool = True
    healthy_z_range: tuple[float, float] = (0.2, 1.0)
    contact_force_range: tuple[float, float] = (-1.0, 1.0)
    reset_noise_scale: float = Field(0.1, ge=0.0)
    exclude_current_positions_from_observation: bool = True
    include_cfrc_ext_in_observation: bool = False

    def obs_dim(self, nq: int, nv: int, nbody: int) -> int:
        """Observation size for a model with ``nq``, ``nv`` and ``nbody`` (world body included)."""
        skipped = 2 if self.exclude_current_positions_from_observation else 0
        return nq - skipped + nv + (6 * (nbody - 1) if self.include_cfrc_ext_in_observation else 0)


def contact_forces(cfrc_ext: np.ndarray, spec: AntSpec) -> np.ndarray:
    """``cfrc_ext [N, nbody, 6]`` clipped to ``contact_force_range``."""
    low, high = spec.contact_force_range
    xp = namespace(cfrc_ext)
    return xp.minimum(xp.maximum(cfrc_ext, low), high)  # np.clip, without its wrapper's cost


def observation(qpos: np.ndarray, qvel: np.ndarray, cfrc_ext: np.ndarray, spec: AntSpec) -> np.ndarray:
    """``[N, obs_dim]``: qpos (without x, y by default), qvel, and optionally clipped cfrc_ext[1:]."""
    position = qpos[:, 2:] if spec.exclude_current_positions_from_observation else qpos
    parts = [position, qvel]
    if spec.include_cfrc_ext_in_observation:
        parts.append(contact_forces(cfrc_ext, spec)[:, 1:].reshape(len(qpos), -1))
    return namespace(qpos).concatenate(parts, axis=1)


def is_healthy(qpos: np.ndarray, qvel: np.ndarray, spec: AntSpec) -> np.ndarray:
    """``[N]`` bool: the whole state is finite and the torso height qpos[2] is within the range."""
    low, high = spec.healthy_z_range
    xp = namespace(qpos)
    finite = xp.isfinite(qpos).all(axis=1) & xp.isfinite(qvel).all(axis=1)
    z = qpos[:, 2]
    return finite & (z >= low) & (z <= high)


def reward(
    x_before: np.ndarray,
    x_after: np.ndarray,
    action: np.ndarray,
    cfrc_ext: np.ndarray,
    healthy: np.ndarray,
    spec: AntSpec,
    dt: float,
) -> np.ndarray:
    """``[N]``: forward velocity + healthy reward - control cost - contact cost (Ant-v5).

    The healthy reward is paid only while healthy (v5), and the contact cost is charged whether
    or not the contact forces are observed (v5).
    """
    forward = (x_after - x_before) / dt * spec.forward_reward_weight
    healthy_reward = healthy * spec.healthy_reward
    xp = namespace(action)
    ctrl_cost = spec.ctrl_cost_weight * xp.square(action).sum(axis=1)
    contact_cost = spec.contact_cost_weight * xp.square(contact_forces(cfrc_ext, spec)).sum(axis=(1, 2))
    return (forward + healthy_reward) - (ctrl_cost + contact_cost)


def terminated(healthy: np.ndarray, spec: AntSpec) -> np.ndarray:
    """``[N]`` bool: unhealthy, if ``terminate_when_unhealthy``."""
    return ~healthy if spec.terminate_when_unhealthy else namespace(healthy).zeros_like(healthy)
