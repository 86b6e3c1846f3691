"""LocomotionTask: what a Gymnasium MuJoCo locomotion env computes around its simulator.

A task turns batched simulator arrays into observation, reward and termination, and draws the
reset noise, as the Gymnasium env of its id does (term by term). A backend steps the task's MJCF
model and hands over, after each env step and after each reset, the arrays the task asks for in
:meth:`LocomotionTask.views`, stacked over N envs into ``sim: dict[str, Array]`` (``sim["qpos"]``
is ``[N, nq]``, ...): float64 numpy arrays on MuJoCo C (rlplast.envs.cpu_mujoco), float32 torch
views of the simulator on mujoco_warp (rlplast.envs.warp_mujoco). The functions are written once
for both, through ``xp = namespace(x)`` (rlplast.envs.tasks.arrays); on numpy they are numpy's
calls exactly. The reset noise is drawn through ``rng.uniform`` / ``rng.standard_normal``: a
numpy generator per env on the cpu backend, a batched device stream on warp.

What every task shares with Gymnasium's ``MujocoEnv``:

* a step is ``data.ctrl = action``, ``mj_step`` x ``frame_skip``, then ``mj_rnePostConstraint``
  (which fills ``cfrc_ext``);
* a reset is ``mj_resetData``, then ``qpos``/``qvel`` from :meth:`LocomotionTask.reset_state`,
  then ``mj_forward``;
* the forward velocity is ``(position after - position before) / dt`` with ``dt = timestep x
  frame_skip``, where "before" is what :meth:`LocomotionTask.position` gave after the previous
  step or reset.

Friction (PROTOCOL.md section 1): the schedule value multiplies each changed geom's own sliding
friction (1.0 = the model as shipped), unless the task sets ``friction_scales_own = False``, as
Ant does: there the value is every geom's friction (the reference's behaviour; Ant's own geoms
all have friction 1, where both readings agree).

Adding a task: a module here with a :class:`TaskSpec` of the env's keyword arguments and a
:class:`LocomotionTask` subclass, an entry in ``rlplast.envs.tasks.TASKS``, and a YAML in
``configs/tasks/``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import expand_model_path
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rlplast.envs.tasks.arrays import Array, namespace


class TaskSpec(BaseModel):
    """The keyword arguments every locomotion env takes (Gymnasium's names); subclasses add theirs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    xml_file: str
    frame_skip: int = Field(ge=1)
    reset_noise_scale: float = Field(ge=0.0)
    exclude_current_positions_from_observation: bool = True


class LocomotionTask:
    """One Gymnasium MuJoCo locomotion env as batched functions (see the module docstring).

    Args:
        kwargs: the env's keyword arguments (``EnvConfig.kwargs``); unknown ones are an error.
        model: the compiled model (default: loaded from ``xml_file``).

    Attributes:
        spec: the parsed keyword arguments. model: the model all envs start from.
        dt: seconds per env step. obs_dim: observation size.
    """

    env_id: ClassVar[str]
    Spec: ClassVar[type[TaskSpec]]
    friction_scales_own: ClassVar[bool] = True

    def __init__(self, kwargs: dict[str, Any], model: mujoco.MjModel | None = None):
        self.spec = self.parse_kwargs(kwargs)
        # read once: a missing field costs pydantic's __getattr__ (~10 us) on every step
        self._terminates_when_unhealthy = bool(getattr(self.spec, "terminate_when_unhealthy", False))
        self.model = model if model is not None else mujoco.MjModel.from_xml_path(expand_model_path(self.spec.xml_file))
        self.dt = self.model.opt.timestep * self.spec.frame_skip
        self.bind(self.model)
        self.obs_dim = self.observation(self.stack([self.views(mujoco.MjData(self.model))])).shape[1]

    @classmethod
    def parse_kwargs(cls, kwargs: dict[str, Any]) -> TaskSpec:
        """The spec of ``kwargs``, or a ValueError naming the bad key and the allowed ones."""
        try:
            return cls.Spec.model_validate(kwargs)
        except ValidationError as err:
            allowed = ", ".join(cls.Spec.model_fields)
            raise ValueError(f"bad {cls.env_id} kwargs: {err}\nallowed keys: {allowed}") from None

    @staticmethod
    def stack(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Per-env views stacked into ``[N, ...]`` arrays."""
        return {key: np.stack([row[key] for row in rows]) for key in rows[0]}

    # ---- what a subclass defines -------------------------------------------------------------

    def bind(self, model: mujoco.MjModel) -> None:
        """Read the constants the task needs from the model (body ids, masses); default: none."""

    def views(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """The arrays of one env's ``data`` the task reads after a step or reset (live views)."""
        return {"qpos": data.qpos, "qvel": data.qvel}

    def position(self, sim: dict[str, np.ndarray]) -> np.ndarray:
        """``[N]``: the x coordinate whose change per ``dt`` is the forward velocity (qpos[0])."""
        return sim["qpos"][:, 0]

    def observation(self, sim: dict[str, np.ndarray]) -> np.ndarray:
        """``[N, obs_dim]`` float64."""
        raise NotImplementedError

    def healthy(self, sim: dict[str, np.ndarray]) -> np.ndarray:
        """``[N]`` bool (default: always healthy)."""
        qpos = sim["qpos"]
        return namespace(qpos).ones_like(qpos[:, 0], dtype=bool)

    def reward(
        self, sim: dict[str, np.ndarray], x_before: np.ndarray, x_after: np.ndarray, action: Array, healthy: Array
    ) -> np.ndarray:
        """``[N]`` float64 from the state after the step, the positions ``x_before``, ``x_after``
        ``[N]``, ``action [N, nu]`` and ``healthy [N]``."""
        raise NotImplementedError

    def terminated(self, healthy: np.ndarray) -> np.ndarray:
        """``[N]`` bool: unhealthy, if the spec terminates on it (default: never)."""
        if self._terminates_when_unhealthy:
            return ~healthy
        return namespace(healthy).zeros_like(healthy)

    def reset_state(
        self, rng: np.random.Generator, qpos0: np.ndarray, qvel0: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``qpos [nq]``, ``qvel [nv]`` of a new episode: uniform noise on both (Hopper, Walker2d,
        Humanoid), drawn in this order from the env's generator."""
        s = self.spec.reset_noise_scale
        qpos = qpos0 + rng.uniform(low=-s, high=s, size=len(qpos0))
        qvel = qvel0 + rng.uniform(low=-s, high=s, size=len(qvel0))
        return qpos, qvel


def uniform_then_normal(
    rng: np.random.Generator, qpos0: np.ndarray, qvel0: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Ant's and HalfCheetah's reset: ``qpos0 + U(-s, s)``, then ``qvel0 + s * N(0, 1)``."""
    qpos = qpos0 + rng.uniform(low=-scale, high=scale, size=len(qpos0))
    qvel = qvel0 + scale * rng.standard_normal(len(qvel0))
    return qpos, qvel


def control_cost(action: np.ndarray, weight: float) -> np.ndarray:
    """``[N]``: weight x the sum of squared actions (as given; MuJoCo clamps ctrl, the cost does not)."""
    return weight * namespace(action).square(action).sum(axis=1)
