import numpy as np
import pytest

from rlplast.envs.clock import FrictionClock
from rlplast.envs.friction import FrictionConfig
from rlplast.envs.schedules import PiecewiseSchedule

SCHEDULE = PiecewiseSchedule(every=10)


def test_runs_count_steps_over_their_envs_immediately():
    clock = FrictionClock(FrictionConfig(schedule=SCHEDULE, apply="immediate"), num_runs=2, envs_per_run=3)
    clock.reset([5, 9])
    np.testing.assert_array_equal(clock.friction, [SCHEDULE.at(5, 0)] * 3 + [SCHEDULE.at(9, 0)] * 3)
    changed = [clock.tick() for _ in range(4)]  # 3 env steps per tick: 3, 6, 9, 12
    np.testing.assert_array_equal(clock.run_steps, [12, 12])
    assert [c.all() for c in changed] == [False, False, False, True]
    np.testing.assert_array_equal(clock.friction, [SCHEDULE.at(5, 12)] * 3 + [SCHEDULE.at(9, 12)] * 3)


def test_episode_end_changes_only_the_envs_that_ended():
    clock = FrictionClock(FrictionConfig(schedule=SCHEDULE), num_runs=1, envs_per_run=2)
    clock.reset([1])
    before = clock.friction.copy()
    for _ in range(6):  # 12 env steps: the schedule is in segment 1 now
        assert not clock.tick().any()
    changed = clock.episode_end(np.array([False, True]))
    np.testing.assert_array_equal(changed, [False, True])
    np.testing.assert_array_equal(clock.friction, [before[0], SCHEDULE.at(1, 12)])


def test_state_round_trip_and_bad_input():
    cfg = FrictionConfig(schedule=SCHEDULE)
    clock = FrictionClock(cfg, num_runs=2, envs_per_run=1)
    clock.reset([0, 1])
    clock.tick()
    other = FrictionClock(cfg, num_runs=2, envs_per_run=1)
    other.load_state_dict(clock.state_dict())
    np.testing.assert_array_equal(other.run_steps, [1, 1])
    np.testing.assert_array_equal(other.friction, clock.friction)
    with pytest.raises(ValueError, match="expected 2 seeds, got 1"):
        clock.reset([0])
    with pytest.raises(ValueError, match="non-negative integers"):
        clock.reset([0, -3])
    with pytest.raises(ValueError, match="shape"):
        FrictionClock(cfg, num_runs=3, envs_per_run=1).load_state_dict(clock.state_dict())
