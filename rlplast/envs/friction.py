"""Changing friction on MuJoCo models: the config, the model edit, and the Gymnasium wrapper.

Two modes (PROTOCOL.md section 1):

* ``all`` (the reference): the sliding coefficient (first of the three friction numbers) of every
  geom, so floor and body change together.
* ``floor``: the floor only (the geoms of the world body). MuJoCo uses the larger of two geoms'
  frictions for a contact, so the floor's ``geom_priority`` is raised: a contact then takes all
  its parameters from the floor, and the floor's friction governs it.

What the value means (rlplast.envs.tasks.base): a multiplier of each changed geom's own sliding
friction (1.0 = the model as shipped; Hopper's and Walker2d's geoms differ), except on Ant, where
it is every changed geom's friction, as in the reference (Ant's geoms all have 1.0, so the two
readings agree on its own model). Torsional and rolling friction are left untouched. Explicit
contact pairs (``<pair>``), which override geom mixing, get the same sliding value on both
tangent directions.

Importing ``rlplast`` registers ``rlplast/SlipperyAnt-v0`` (Ant-v5, 27-dim observation, the
reference piecewise schedule) and ``rlplast/Ant-v0`` (constant friction 1.0).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from typing import Any, Literal

import gymnasium as gym
import mujoco
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rlplast.envs.clock import FrictionClock
from rlplast.envs.schedules import PiecewiseSchedule, ScheduleConfig
from rlplast.envs.tasks import friction_scales_own

FRICTION_MODES = ("all", "floor")


class FrictionConfig(BaseModel):
    """How friction changes: which geoms, by which schedule, and when a change takes effect.

    Attributes:
        mode: ``all`` geoms (reference) or the ``floor`` only.
        schedule: the friction schedule (default: the reference piecewise schedule).
        apply: ``episode_end`` (reference: a change takes effect at the first episode end after
            its change point) or ``immediate``.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["all", "floor"] = "all"
    schedule: ScheduleConfig = Field(default_factory=PiecewiseSchedule)
    apply: Literal["episode_end", "immediate"] = "episode_end"


def check_friction_value(value: float) -> float:
    """Return ``value`` as a float, or raise ValueError if it is negative or not finite."""
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"friction must be a finite number >= 0, got {value}")
    return value


def mujoco_model_of(env: gym.Env) -> mujoco.MjModel:
    """The ``mujoco.MjModel`` of a Gymnasium MuJoCo env, or a TypeError naming the env."""
    model = getattr(env.unwrapped, "model", None)
    if not isinstance(model, mujoco.MjModel):
        name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        raise TypeError(
            f"changing friction needs a MuJoCo env (env.unwrapped.model must be a mujoco.MjModel); "
            f"{name!r} has {type(model).__name__}"
        )
    return model


class FrictionSetter:
    """Writes one sliding-friction value into a MuJoCo model, in mode ``all`` or ``floor``.

    In ``floor`` mode the constructor raises the floor geoms' ``geom_priority`` above every other
    geom's (a one-time edit of the model). With ``scales_own`` the value multiplies the frictions
    the chosen geoms (and contact pairs) had when the setter was made; without, it replaces them.
    """

    def __init__(self, model: mujoco.MjModel, mode: str, *, scales_own: bool = False):
        if mode not in FRICTION_MODES:
            raise ValueError(f"unknown friction mode {mode!r}; allowed: {', '.join(FRICTION_MODES)}")
        if not isinstance(model, mujoco.MjModel):
            raise TypeError(f"FrictionSetter needs a mujoco.MjModel, got {type(model).__name__}")
        self.model = model
        self.mode = mode
        if mode == "all":
            self.geoms = np.arange(model.ngeom)
            self.pairs = np.arange(model.npair)
        else:
            self.geoms = np.flatnonzero(model.geom_bodyid == 0)
            if self.geoms.size == 0:
                raise ValueError("friction mode 'floor' needs a floor: the model has no geom on the world body")
            others = np.flatnonzero(model.geom_bodyid != 0)
            top = int(model.geom_priority[others].max()) if others.size else 0
            model.geom_priority[self.geoms] = top + 1
            is_floor = np.isin(model.pair_geom1, self.geoms) | np.isin(model.pair_geom2, self.geoms)
            self.pairs = np.flatnonzero(is_floor)
        self.scales_own = scales_own
        self._own_geoms = model.geom_friction[self.geoms, 0].copy()  # [geoms]
        self._own_pairs = model.pair_friction[self.pairs, :2].copy()  # [pairs, 2]
        self._value = 1.0

    def set(self, value: float) -> None:
        """Set the sliding friction of the chosen geoms (and contact pairs) to ``value`` (times
        their own, with ``scales_own``)."""
        value = check_friction_value(value)
        self._value = value
        if self.scales_own:
            self.model.geom_friction[self.geoms, 0] = self._own_geoms * value
            self.model.pair_friction[self.pairs, :2] = self._own_pairs * value
        else:
            self.model.geom_friction[self.geoms, 0] = value
            self.model.pair_friction[self.pairs, :2] = value

    def get(self) -> float:
        """The value in effect: the last one set with ``scales_own`` (1.0 before), else the
        sliding friction of the first chosen geom."""
        return self._value if self.scales_own else float(self.model.geom_friction[self.geoms[0], 0])


class ChangingFriction(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Changes a Gymnasium MuJoCo env's friction over time by a seeded schedule.

    Env steps are counted across episodes. The schedule seed is ``schedule_seed`` if given, else
    the seed of the latest seeded ``reset`` (a seeded reset also restarts the step count, so the
    env replays exactly); without either, a random seed is drawn once. ``info["friction"]`` is the
    friction in effect during the step (or, after ``reset``, for the new episode).

    Args:
        env: a Gymnasium env whose ``unwrapped.model`` is a ``mujoco.MjModel``.
        friction: a :class:`FrictionConfig` or a dict of its fields (default: the reference).
        schedule_seed: fixes the schedule's seed regardless of reset seeds.
        scales_own: whether the value multiplies each geom's own friction (default: as the task
            of the env's id says, rlplast.envs.tasks.friction_scales_own: all but Ant).
    """

    def __init__(
        self,
        env: gym.Env,
        friction: FrictionConfig | Mapping[str, Any] | None = None,
        *,
        schedule_seed: int | None = None,
        scales_own: bool | None = None,
    ):
        cfg = friction if isinstance(friction, FrictionConfig) else FrictionConfig.model_validate(friction or {})
        gym.utils.RecordConstructorArgs.__init__(
            self, friction=cfg.model_dump(), schedule_seed=schedule_seed, scales_own=scales_own
        )
        gym.Wrapper.__init__(self, env)
        self.config = cfg
        if scales_own is None:
            scales_own = friction_scales_own(env.spec.id if env.spec is not None else None)
        self._setter = FrictionSetter(mujoco_model_of(env), cfg.mode, scales_own=scales_own)
        self._clock = FrictionClock(cfg, num_runs=1, envs_per_run=1)
        self._fixed_seed = schedule_seed
        self._started = False

    @property
    def friction(self) -> float:
        """The sliding friction in effect now."""
        return self._setter.get()

    @property
    def env_steps(self) -> int:
        """Env steps taken since the schedule started (across episodes)."""
        return int(self._clock.run_steps[0])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the env; a seeded reset (or the first one) restarts the schedule."""
        if seed is not None or not self._started:
            base = seed if seed is not None else secrets.randbits(31)
            self._clock.reset([self._fixed_seed if self._fixed_seed is not None else base])
            self._started = True
        self._clock.episode_end(np.ones(1, dtype=bool))
        self._setter.set(self._clock.friction[0])
        obs, info = self.env.reset(seed=seed, options=options)
        info["friction"] = self.friction
        return obs, info

    def step(self, action):
        """Step the env with a checked action, then advance the schedule by one env step."""
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        action = np.asarray(action)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action shape must be {self.action_space.shape}, got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"actions must be finite, got {action}")
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["friction"] = self.friction
        if self._clock.tick()[0]:
            self._setter.set(self._clock.friction[0])
        return obs, reward, terminated, truncated, info


# Keyword arguments the registered ids take for the wrapper; every other one goes to Ant-v5.
_WRAPPER_KEYS = ("mode", "apply", "schedule_seed")
_PIECEWISE_KEYS = ("low", "high", "every", "distribution")


def _make_ant(schedule: Mapping[str, Any], kwargs: dict[str, Any]) -> ChangingFriction:
    from gymnasium.envs.mujoco.ant_v5 import AntEnv

    wrapper = {k: kwargs.pop(k) for k in _WRAPPER_KEYS if k in kwargs}
    schedule_seed = wrapper.pop("schedule_seed", None)
    # ours: 27-dim observation by default (the reference's contact forces were all zeros)
    env = AntEnv(**{"include_cfrc_ext_in_observation": False, **kwargs})
    return ChangingFriction(env, {**wrapper, "schedule": schedule}, schedule_seed=schedule_seed, scales_own=False)


def make_slippery_ant(**kwargs: Any) -> ChangingFriction:
    """``rlplast/SlipperyAnt-v0``: Ant-v5 with the reference schedule.

    Keyword arguments: ``schedule`` (a full schedule dict), or the piecewise fields ``low``,
    ``high``, ``every``, ``distribution``; ``mode``, ``apply``, ``schedule_seed``; every other one
    goes to Ant-v5.
    """
    schedule = kwargs.pop("schedule", None)
    fields = {k: kwargs.pop(k) for k in _PIECEWISE_KEYS if k in kwargs}
    if schedule is not None and fields:
        raise ValueError(f"give either schedule or the piecewise fields {sorted(fields)}, not both")
    return _make_ant(schedule if schedule is not None else {"kind": "piecewise", **fields}, kwargs)


def make_constant_ant(friction: float = 1.0, **kwargs: Any) -> ChangingFriction:
    """``rlplast/Ant-v0``: Ant-v5 (27-dim observation) at a constant friction (default 1.0)."""
    return _make_ant({"kind": "constant", "value": friction}, kwargs)
