"""The rlplast Gymnasium ids under SB3's VecEnvs, and the SB3 trainer's resumable env."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import rlplast  # noqa: F401  (registers the ids)
from rlplast.envs.schedules import PiecewiseSchedule
from rlplast.envs.vec import EnvConfig
from rlplast.sb3.env import make_env

REFERENCE = PiecewiseSchedule()  # the schedule rlplast/SlipperyAnt-v0 uses


def test_subproc_vec_env_envs_follow_their_seeds():
    # Worker processes start without rlplast imported (forkserver / spawn): the "module:" prefix
    # makes gym.make import it there. make_vec_env seeds env i with seed + i, and the wrapper
    # seeds its schedule from the reset seed.
    venv = make_vec_env("rlplast:rlplast/SlipperyAnt-v0", n_envs=2, seed=3, vec_env_cls=SubprocVecEnv)
    try:
        obs = venv.reset()
        assert obs.shape == (2, 27)
        for _ in range(3):
            obs, reward, done, infos = venv.step(np.zeros((2, 8), dtype=np.float32))
        assert obs.shape == (2, 27) and reward.shape == (2,) and not done.any()
        expected = [REFERENCE.at(3, 0), REFERENCE.at(4, 0)]
        assert [info["friction"] for info in infos] == pytest.approx(expected)
        assert venv.get_attr("friction") == pytest.approx(expected)
        assert expected[0] != pytest.approx(expected[1])
    finally:
        venv.close()


def test_dummy_vec_env_friction_changes_at_an_episode_end():
    # friction redrawn every 30 steps, episodes of 20 steps: the change lands at the end of episode 2
    kwargs = {"every": 30, "max_episode_steps": 20}
    venv = make_vec_env("rlplast/SlipperyAnt-v0", n_envs=1, seed=5, env_kwargs=kwargs, vec_env_cls=DummyVecEnv)
    venv.reset()
    frictions = []
    for _ in range(45):
        venv.step(np.zeros((1, 8), dtype=np.float32))
        frictions.append(venv.get_attr("friction")[0])
    venv.close()
    schedule = PiecewiseSchedule(every=30)
    assert frictions[:39] == pytest.approx([schedule.at(5, 0)] * 39)  # steps 1..39: first value
    assert frictions[39:] == pytest.approx([schedule.at(5, 30)] * 6)  # after the 2nd episode end (step 40)


def test_make_env_schedule_follows_the_run_seed_not_the_reset_seed():
    cfg = EnvConfig.model_validate({"friction": {"schedule": {"kind": "piecewise", "every": 10}}})
    env = make_env(cfg, seed=7)
    _, info = env.reset(seed=123)
    assert info["friction"] == pytest.approx(PiecewiseSchedule(every=10).at(7, 0))
    env.close()


def test_schedule_state_carries_over_to_a_new_env():
    cfg = EnvConfig.model_validate(
        {"friction": {"schedule": {"kind": "piecewise", "every": 10}, "apply": "immediate"}, "max_episode_steps": 50}
    )
    env = make_env(cfg, seed=2)
    env.reset(seed=0)
    for _ in range(25):
        env.step(np.zeros(8, dtype=np.float32))
    state = env.get_wrapper_attr("schedule_state")()
    assert int(state["run_steps"][0]) == 25

    fresh = make_env(cfg, seed=2)
    fresh.reset(seed=1)
    friction = fresh.get_wrapper_attr("load_schedule_state")(state)
    schedule = PiecewiseSchedule(every=10)
    assert friction == pytest.approx(schedule.at(2, 25)) == pytest.approx(env.get_wrapper_attr("friction"))
    for _ in range(5):
        fresh.step(np.zeros(8, dtype=np.float32))
    assert fresh.get_wrapper_attr("env_steps") == 30
    assert fresh.get_wrapper_attr("friction") == pytest.approx(schedule.at(2, 30))
    env.close()
    fresh.close()
