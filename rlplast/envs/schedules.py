"""Friction schedules: pure, seeded functions ``(schedule config, run seed, run env step) -> value``.

A schedule never keeps history: the value at step t is computed from (config, seed, t) alone, so a
resumed run, a GPU run and a CPU run with the same seed see the same sequence. The reference
schedule (PROTOCOL.md section 1) is :class:`PiecewiseSchedule` with its defaults: a new value
drawn log-uniform on [0.02, 2.0] every 2,000,000 env steps.

Piecewise value k comes from its own generator seeded by (run seed, k), so ``at(seed, t)``
needs no earlier draws. Schedules are pydantic models discriminated by ``kind``; parse a dict
with :func:`parse_schedule`.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

# Spawn-key tag of the schedule's random stream, so that it never coincides with the reset-noise
# streams derived from the same run seed (see rlplast.envs.seeding).
SCHEDULE_STREAM = 0x5C4ED

Friction = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
PositiveFriction = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


def check_seed_step(seed: int, step: int) -> None:
    """Raise ValueError unless seed and step are non-negative integers."""
    for name, value in (("seed", seed), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"schedule {name} must be a non-negative integer, got {value!r}")


@functools.lru_cache(maxsize=4096)
def uniform_draw(seed: int, index: int) -> float:
    """The ``index``-th U[0, 1) draw of run ``seed``'s schedule stream (cached, history-free)."""
    seq = np.random.SeedSequence(int(seed), spawn_key=(SCHEDULE_STREAM, int(index)))
    return float(np.random.Generator(np.random.PCG64(seq)).random())


class _Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # whether the value moves at (almost) every step rather than at a few change points
    moves_every_step: ClassVar[bool] = False

    def at(self, seed: int, step: int) -> float:
        """Friction at env step ``step`` (counted over the whole run) of the run seeded ``seed``."""
        check_seed_step(seed, step)
        return self._value(int(seed), int(step))

    def _value(self, seed: int, step: int) -> float:
        raise NotImplementedError


class ConstantSchedule(_Schedule):
    """The same friction forever."""

    kind: Literal["constant"] = "constant"
    value: Friction = 1.0

    def _value(self, seed: int, step: int) -> float:
        return self.value


class PiecewiseSchedule(_Schedule):
    """A new value every ``every`` steps, drawn from [low, high] (log-uniform by default).

    Value k (for steps [k * every, (k + 1) * every)) depends only on (seed, k).
    """

    kind: Literal["piecewise"] = "piecewise"
    low: PositiveFriction = 0.02
    high: PositiveFriction = 2.0
    every: int = Field(2_000_000, ge=1)
    distribution: Literal["log_uniform", "uniform"] = "log_uniform"

    @model_validator(mode="after")
    def _check_range(self) -> PiecewiseSchedule:
        if self.low > self.high:
            raise ValueError(f"piecewise schedule needs low <= high, got low={self.low} > high={self.high}")
        return self

    def _value(self, seed: int, step: int) -> float:
        u = uniform_draw(seed, step // self.every)
        if self.distribution == "uniform":
            return self.low + u * (self.high - self.low)
        return math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))


class CycleSchedule(_Schedule):
    """Cycle through ``values``, moving to the next one every ``every`` steps."""

    kind: Literal["cycle"] = "cycle"
    values: list[Friction] = Field(min_length=1)
    every: int = Field(ge=1)

    def _value(self, seed: int, step: int) -> float:
        return self.values[(step // self.every) % len(self.values)]


class LinearSchedule(_Schedule):
    """From ``start`` to ``end`` linearly over ``steps`` env steps, then ``end`` forever."""

    moves_every_step: ClassVar[bool] = True

    kind: Literal["linear"] = "linear"
    start: Friction
    end: Friction
    steps: int = Field(ge=1)

    def _value(self, seed: int, step: int) -> float:
        return self.start + (self.end - self.start) * min(step / self.steps, 1.0)


class SineSchedule(_Schedule):
    """``mean + amplitude * sin(2 pi step / period + phase)``; requires amplitude <= mean."""

    moves_every_step: ClassVar[bool] = True

    kind: Literal["sine"] = "sine"
    mean: Friction
    amplitude: Friction
    period: int = Field(ge=1)
    phase: float = Field(0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check_non_negative(self) -> SineSchedule:
        if self.amplitude > self.mean:
            raise ValueError(f"sine schedule would go negative: amplitude={self.amplitude} > mean={self.mean}")
        return self

    def _value(self, seed: int, step: int) -> float:
        # clamp: mean - amplitude can round to a tiny negative number
        return max(0.0, self.mean + self.amplitude * math.sin(2 * math.pi * step / self.period + self.phase))


ScheduleConfig = Annotated[
    ConstantSchedule | PiecewiseSchedule | CycleSchedule | LinearSchedule | SineSchedule,
    Field(discriminator="kind"),
]
SCHEDULE_KINDS = ("constant", "piecewise", "cycle", "linear", "sine")

_ADAPTER: TypeAdapter = TypeAdapter(ScheduleConfig)


def parse_schedule(obj: object) -> ScheduleConfig:
    """A schedule model from a dict such as ``{"kind": "piecewise", "every": 1000}`` (or a model).

    Raises:
        pydantic.ValidationError: unknown ``kind`` (the message lists the allowed kinds), unknown
            keys, or bad values.
    """
    if isinstance(obj, _Schedule):
        return obj  # type: ignore[return-value]
    return _ADAPTER.validate_python(obj)


def schedule_value(schedule: ScheduleConfig, seed: int, step: int) -> float:
    """Friction of run ``seed`` at its env step ``step`` (a pure function)."""
    return schedule.at(seed, step)
