import math

import numpy as np
import pytest
from pydantic import ValidationError

from rlplast.envs.schedules import (
    CycleSchedule,
    LinearSchedule,
    PiecewiseSchedule,
    SineSchedule,
    parse_schedule,
    schedule_value,
    uniform_draw,
)


def test_constant_and_defaults_are_the_reference():
    assert parse_schedule({"kind": "constant", "value": 0.3}).at(5, 10**9) == 0.3
    ref = parse_schedule({"kind": "piecewise"})
    assert (ref.low, ref.high, ref.every, ref.distribution) == (0.02, 2.0, 2_000_000, "log_uniform")


def test_piecewise_is_constant_within_a_segment_and_history_free():
    s = PiecewiseSchedule(every=100)
    seed = 7
    forward = [s.at(seed, t) for t in range(0, 1000, 50)]
    uniform_draw.cache_clear()
    backward = [s.at(seed, t) for t in reversed(range(0, 1000, 50))][::-1]
    assert forward == backward  # value(t) needs no earlier calls
    assert s.at(seed, 0) == s.at(seed, 99) != s.at(seed, 100)
    assert s.at(seed, 100) == s.at(seed, 199)
    # the same seed gives the same sequence, another seed another one
    assert [s.at(8, t) for t in range(0, 1000, 100)] != [s.at(seed, t) for t in range(0, 1000, 100)]


def test_piecewise_log_uniform_distribution():
    s = PiecewiseSchedule(every=1)
    values = np.array([s.at(3, k) for k in range(4000)])
    assert values.min() >= 0.02 and values.max() <= 2.0
    # log-uniform on [0.02, 2]: log10 uniform on [-1.7, 0.3]; a quarter below 10**-1.2
    logs = np.log10(values)
    assert abs(logs.mean() - (-0.7)) < 0.03
    assert abs(np.mean(values < 10**-1.2) - 0.25) < 0.03
    # median of a log-uniform is the geometric mean sqrt(0.02 * 2) = 0.2
    assert abs(np.median(values) - 0.2) < 0.02


def test_piecewise_uniform_distribution_and_degenerate_range():
    s = PiecewiseSchedule(every=1, low=1.0, high=3.0, distribution="uniform")
    values = np.array([s.at(0, k) for k in range(4000)])
    assert abs(values.mean() - 2.0) < 0.04 and values.min() >= 1.0 and values.max() <= 3.0
    assert PiecewiseSchedule(low=0.5, high=0.5).at(1, 12345) == pytest.approx(0.5)


def test_cycle_linear_sine_by_hand():
    c = CycleSchedule(values=[0.5, 1.0, 2.0], every=10)
    assert [c.at(0, t) for t in (0, 9, 10, 25, 30)] == [0.5, 0.5, 1.0, 2.0, 0.5]
    lin = LinearSchedule(start=1.0, end=0.0, steps=100)
    assert [lin.at(0, t) for t in (0, 25, 100, 500)] == [1.0, 0.75, 0.0, 0.0]
    sine = SineSchedule(mean=1.0, amplitude=0.5, period=100)
    assert sine.at(0, 25) == pytest.approx(1.5)
    assert sine.at(0, 50) == pytest.approx(1.0)
    assert sine.at(0, 75) == pytest.approx(0.5)
    shifted = SineSchedule(mean=1.0, amplitude=1.0, period=4, phase=math.pi / 2)
    assert shifted.at(0, 0) == pytest.approx(2.0) and shifted.at(0, 2) == pytest.approx(0.0)
    assert schedule_value(c, 0, 10) == 1.0


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"kind": "constant", "value": -0.1}, "greater than or equal to 0"),
        ({"kind": "constant", "value": float("nan")}, "finite"),
        ({"kind": "constant", "value": float("inf")}, "finite"),
        ({"kind": "piecewise", "low": 2.0, "high": 1.0}, "low <= high"),
        ({"kind": "piecewise", "low": 0.0}, "greater than 0"),
        ({"kind": "piecewise", "every": 0}, "greater than or equal to 1"),
        ({"kind": "piecewise", "distribution": "normal"}, "log_uniform"),
        ({"kind": "cycle", "values": [], "every": 3}, "at least 1"),
        ({"kind": "cycle", "values": [1.0, -2.0], "every": 3}, "greater than or equal to 0"),
        ({"kind": "sine", "mean": 0.5, "amplitude": 1.0, "period": 10}, "negative"),
        ({"kind": "wobble"}, "'constant', 'piecewise', 'cycle', 'linear', 'sine'"),
        ({"kind": "constant", "valeu": 1.0}, "Extra inputs are not permitted"),
    ],
)
def test_bad_schedules_name_the_problem(cfg, message):
    with pytest.raises(ValidationError, match=message):
        parse_schedule(cfg)


@pytest.mark.parametrize(("seed", "step"), [(-1, 0), (0, -5), (1.5, 0), (0, True)])
def test_bad_seed_or_step(seed, step):
    with pytest.raises(ValueError, match="non-negative integer"):
        PiecewiseSchedule().at(seed, step)
