import warnings

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlplast  # noqa: F401  (registers the ids)
from rlplast.envs.friction import ChangingFriction, FrictionSetter
from rlplast.envs.schedules import PiecewiseSchedule

GAIT = np.sin(0.5 * np.arange(100)[:, None] + np.arange(8)[None, :] * np.pi / 4)


def torso_after_gait(env: gym.Env, seed: int = 0) -> np.ndarray:
    env.reset(seed=seed)
    for a in GAIT:
        env.step(a)
    return env.unwrapped.data.qpos[:3].copy()


def test_registered_ids_and_kwargs_pass_through():
    env = gym.make("rlplast/SlipperyAnt-v0", every=123, ctrl_cost_weight=0.25)
    assert env.observation_space.shape == (27,)
    assert env.unwrapped._ctrl_cost_weight == 0.25
    wrapper = env.get_wrapper_attr("config")
    assert wrapper.schedule == PiecewiseSchedule(every=123) and wrapper.mode == "all"
    assert env.spec.max_episode_steps == 1000
    full = gym.make("rlplast/Ant-v0", include_cfrc_ext_in_observation=True, friction=0.5, mode="floor")
    assert full.observation_space.shape == (105,)
    _, info = full.reset(seed=0)
    assert info["friction"] == 0.5


@pytest.mark.parametrize("env_id", ["rlplast/SlipperyAnt-v0", "rlplast/Ant-v0"])
def test_check_env_passes(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails, but the infinite-box ones
        warnings.filterwarnings("ignore", message=".*Box observation space m.*infinity")
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version")
        check_env(gym.make(env_id), skip_render_check=True)


def test_all_mode_sets_every_sliding_coefficient_only():
    env = gym.make("rlplast/Ant-v0", friction=0.3)
    env.reset(seed=0)
    fr = env.unwrapped.model.geom_friction
    assert np.all(fr[:, 0] == 0.3) and np.all(fr[:, 1:] == 0.5)
    assert np.all(env.unwrapped.model.geom_priority == 0)


def test_floor_mode_sets_the_floor_and_raises_its_priority():
    env = gym.make("rlplast/Ant-v0", friction=0.3, mode="floor")
    env.reset(seed=0)
    model = env.unwrapped.model
    floor = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "floor")
    assert model.geom_friction[floor, 0] == 0.3
    others = np.arange(model.ngeom) != floor
    assert np.all(model.geom_friction[others, 0] == 1.0) and np.all(model.geom_friction[:, 1:] == 0.5)
    assert model.geom_priority[floor] > model.geom_priority[others].max()


@pytest.mark.parametrize("mode", ["all", "floor"])
def test_friction_changes_the_motion(mode):
    slippery = torso_after_gait(gym.make("rlplast/Ant-v0", friction=0.02, mode=mode))
    grippy = torso_after_gait(gym.make("rlplast/Ant-v0", friction=2.0, mode=mode))
    assert np.linalg.norm(slippery[:2] - grippy[:2]) > 0.5  # metres after 100 steps (5 s)


def test_floor_friction_without_priority_does_nothing():
    """Why floor mode raises the priority: MuJoCo takes the max of the two geoms' frictions."""
    plain = gym.make("Ant-v5", include_cfrc_ext_in_observation=False)
    reference = torso_after_gait(plain)
    model = plain.unwrapped.model
    model.geom_friction[model.geom_bodyid == 0, 0] = 0.02
    np.testing.assert_array_equal(torso_after_gait(plain), reference)
    FrictionSetter(model, "floor").set(0.02)
    assert np.linalg.norm(torso_after_gait(plain)[:2] - reference[:2]) > 0.5


def test_immediate_change_at_the_change_point():
    env = gym.make("rlplast/SlipperyAnt-v0", every=10, apply="immediate")
    _, info = env.reset(seed=4)
    s = PiecewiseSchedule(every=10)
    assert info["friction"] == s.at(4, 0)
    seen = []
    for _ in range(25):
        *_, info = env.step(np.zeros(8))
        seen.append(info["friction"])
    assert seen == [s.at(4, t) for t in range(25)]
    assert env.unwrapped.model.geom_friction[0, 0] == s.at(4, 25)


def test_episode_end_change_waits_for_the_episode_end():
    env = gym.make("rlplast/SlipperyAnt-v0", every=10, max_episode_steps=15)
    s = PiecewiseSchedule(every=10)
    _, info = env.reset(seed=2)
    frictions = [info["friction"]]
    for _ in range(3):
        truncated = False
        while not truncated:
            *_, truncated, info = env.step(np.zeros(8))
            assert info["friction"] == frictions[-1]
        _, info = env.reset()
        frictions.append(info["friction"])
    # resets at 15, 30 and 45 steps: segments 1, 3 and 4 of the schedule
    assert frictions == [s.at(2, 0), s.at(2, 15), s.at(2, 30), s.at(2, 45)]
    assert len(set(frictions)) == 4
    assert env.get_wrapper_attr("env_steps") == 45


def test_seeded_reset_replays_and_schedule_seed_is_fixed():
    env = gym.make("rlplast/SlipperyAnt-v0", every=5, apply="immediate")
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=11)
        out = [obs]
        for a in GAIT[:12]:
            obs, _, _, _, info = env.step(a)
            out.append(np.append(obs, info["friction"]))
        runs.append(np.concatenate(out))
    np.testing.assert_array_equal(runs[0], runs[1])
    fixed = gym.make("rlplast/SlipperyAnt-v0", schedule_seed=3)
    assert fixed.reset(seed=0)[1]["friction"] == fixed.reset(seed=1)[1]["friction"] == PiecewiseSchedule().at(3, 0)


def test_bad_input():
    with pytest.raises(TypeError, match="MuJoCo env"):
        ChangingFriction(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="'all' or 'floor'"):
        gym.make("rlplast/Ant-v0", mode="ceiling")
    with pytest.raises(ValueError, match="finite"):
        gym.make("rlplast/Ant-v0", friction=float("nan"))
    env = gym.make("rlplast/SlipperyAnt-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action shape must be \(8,\)"):
        env.step(np.zeros(7))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.full(8, np.nan))
    with pytest.raises(ValueError, match="finite number >= 0"):
        FrictionSetter(env.unwrapped.model, "all").set(-1.0)


def test_stable_baselines3_make_vec_env_steps():
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env("rlplast/SlipperyAnt-v0", n_envs=2, seed=0)
    obs = venv.reset()
    assert obs.shape == (2, 27)
    for _ in range(3):
        obs, reward, _, infos = venv.step(np.zeros((2, 8), dtype=np.float32))
    assert reward.shape == (2,) and all("friction" in i for i in infos)
    # seeds 0 and 1: each env follows its own schedule
    assert [i["friction"] for i in infos] == [PiecewiseSchedule().at(s, 0) for s in (0, 1)]
    venv.close()


def test_public_names_of_the_env_package():
    import rlplast.envs

    assert rlplast.envs.ChangingFriction is ChangingFriction
    assert set(rlplast.envs.ENV_IDS) == {"rlplast/SlipperyAnt-v0", "rlplast/Ant-v0"}
    assert all(env_id in gym.registry for env_id in rlplast.envs.ENV_IDS)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        rlplast.envs.Nope  # noqa: B018
