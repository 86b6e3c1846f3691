"""The cpu backend on every locomotion task matches Gymnasium's own env step for step.

The reference is the gym backend: ``gym.make(id)`` per env, with the same seeds, reset-noise
generators, friction schedule and autoreset, so any difference is in the cpu backend's physics
loop or the task's batched functions. Ant has its own, stricter tests (test_cpu_ant.py).
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlplast.envs.cpu_mujoco import CpuVecEnv
from rlplast.envs.factory import make_vec_env
from rlplast.envs.friction import ChangingFriction, FrictionSetter
from rlplast.envs.tasks import TASKS, task_class
from rlplast.envs.vec import EnvConfig
from tests.envs.envtools import random_actions

# id -> (obs_dim, act_dim)
TASK_DIMS = {"HalfCheetah-v5": (17, 6), "Hopper-v5": (11, 3), "Walker2d-v5": (17, 6), "Humanoid-v5": (348, 17)}
STEPS = 1000


def busy(env_id: str, **kwargs) -> EnvConfig:
    """Friction redrawn every 150 run steps; episodes cut short enough that random actions meet
    both kinds of ends (they fall Hopper, Walker2d and Humanoid in about 20 steps)."""
    friction = {"schedule": {"kind": "piecewise", "every": 150}}
    limit = 120 if env_id == "HalfCheetah-v5" else 20
    return EnvConfig(id=env_id, kwargs=kwargs, friction=friction, max_episode_steps=limit)


@pytest.fixture(autouse=True)
def _mujoco_log_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo logs Humanoid's deprecation warning to the working directory


@pytest.mark.parametrize("env_id", TASK_DIMS)
def test_matches_gymnasium_step_for_step(env_id):
    cfg = busy(env_id)
    cpu, ref = make_vec_env(cfg, 2, backend="cpu"), make_vec_env(cfg, 2, backend="gym")
    assert isinstance(cpu, CpuVecEnv) and (cpu.obs_dim, cpu.act_dim) == (ref.obs_dim, ref.act_dim) == TASK_DIMS[env_id]
    torch.testing.assert_close(cpu.reset([3, 4]), ref.reset([3, 4]), rtol=0, atol=0)
    ends = np.zeros(2, dtype=int)
    for action in random_actions(2, STEPS, dim=cpu.act_dim):
        a, b = cpu.step(action), ref.step(action)
        assert torch.equal(a.terminated, b.terminated) and torch.equal(a.truncated, b.truncated)
        torch.testing.assert_close(a.obs, b.obs, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(a.info["final_obs"], b.info["final_obs"], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(a.reward, b.reward, rtol=1e-6, atol=1e-5)
        assert torch.equal(a.info["friction"], b.info["friction"])
        ends += [int(a.terminated.sum()), int(a.truncated.sum())]
    assert ends[1] > 0 and (ends[0] > 0 or env_id == "HalfCheetah-v5"), ends  # both kinds of ends compared
    assert len(set(cpu.clock.friction.tolist())) > 1 or STEPS < 150
    cpu.close()


def test_humanoid_observation_parts_follow_the_kwargs():
    cfg = busy("Humanoid-v5", include_cinert_in_observation=False, include_cfrc_ext_in_observation=False)
    cpu, ref = make_vec_env(cfg, 1, backend="cpu"), make_vec_env(cfg, 1, backend="gym")
    assert cpu.obs_dim == ref.obs_dim == 348 - 13 * 10 - 13 * 6
    torch.testing.assert_close(cpu.reset([0]), ref.reset([0]), rtol=0, atol=0)
    for action in random_actions(1, 30, dim=17):
        torch.testing.assert_close(cpu.step(action).obs, ref.step(action).obs, rtol=1e-6, atol=1e-6)


def test_bad_kwargs_name_the_allowed_keys():
    message = r"(?s)bad Hopper-v5 kwargs.*healthy_angel_range.*\nallowed keys: .*healthy_angle_range"
    with pytest.raises(ValueError, match=message):
        make_vec_env(EnvConfig(id="Hopper-v5", kwargs={"healthy_angel_range": [0, 1]}), 1, backend="cpu")


@pytest.mark.parametrize("env_id", TASKS)
def test_friction_multiplies_each_geoms_own_except_on_ant(env_id):
    model = task_class(env_id)({}).model
    own = model.geom_friction[:, 0].copy()
    scales_own = task_class(env_id).friction_scales_own
    setter = FrictionSetter(model, "all", scales_own=scales_own)
    setter.set(0.25)
    expected = own * 0.25 if scales_own else np.full_like(own, 0.25)
    np.testing.assert_array_equal(model.geom_friction[:, 0], expected)
    assert setter.get() == 0.25
    assert scales_own == (env_id != "Ant-v5")
    if env_id in ("Hopper-v5", "Walker2d-v5"):  # geoms of different frictions keep their ratios
        assert len(set(own.tolist())) > 1 and len(set(model.geom_friction[:, 0].tolist())) > 1


def test_the_cpu_backend_sets_the_same_frictions_as_the_gym_backend():
    cfg = busy("Walker2d-v5")
    cpu, ref = make_vec_env(cfg, 2, backend="cpu"), make_vec_env(cfg, 2, backend="gym")
    cpu.reset([0, 1])
    ref.reset([0, 1])
    for n in range(2):
        mine, theirs = cpu.models[n].geom_friction, ref.envs[n].unwrapped.model.geom_friction
        np.testing.assert_array_equal(mine, theirs)
        assert not np.array_equal(mine[:, 0], task_class("Walker2d-v5")({}).model.geom_friction[:, 0])


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Humanoid-v5"])
def test_state_dict_gives_exact_continuation(env_id):
    cfg = busy(env_id)
    env = make_vec_env(cfg, 2, backend="cpu")
    env.reset([5, 6])
    acts = random_actions(2, 80, dim=env.act_dim)
    for a in acts[:30]:
        env.step(a)
    state = env.state_dict()
    first = [env.step(a) for a in acts[30:]]
    fresh = make_vec_env(cfg, 2, backend="cpu")
    fresh.load_state_dict(state)
    for x, y in zip(first, (fresh.step(a) for a in acts[30:]), strict=True):
        assert all(torch.equal(a, b) for a, b in zip(x[:4], y[:4], strict=True))
        assert all(torch.equal(x.info[k], y.info[k]) for k in x.info)


def test_hopper_matches_the_gymnasium_env_with_the_wrapper():
    # independent of the shared autoreset code: Gymnasium's env and ChangingFriction, reset by hand
    friction = {"schedule": {"kind": "piecewise", "every": 50}}
    cfg = EnvConfig(id="Hopper-v5", friction=friction, max_episode_steps=40)
    venv = make_vec_env(cfg, num_runs=2, backend="cpu")
    envs = [ChangingFriction(gym.make("Hopper-v5", max_episode_steps=40), friction) for _ in range(2)]
    obs = venv.reset([3, 4])
    gobs = [env.reset(seed=s)[0] for env, s in zip(envs, [3, 4], strict=True)]
    torch.testing.assert_close(obs, torch.tensor(np.stack(gobs), dtype=torch.float32), rtol=0, atol=0)
    ends = 0
    for action in random_actions(2, 300, dim=3):
        res = venv.step(action)
        for i, env in enumerate(envs):
            o, r, term, trunc, info = env.step(action[i].double().numpy())
            assert (term, trunc) == (bool(res.terminated[i]), bool(res.truncated[i]))
            assert res.reward[i].item() == pytest.approx(r, rel=1e-6, abs=1e-6)
            if term or trunc:
                ends += 1
                o, info = env.reset()
            assert res.obs[i].tolist() == o.astype(np.float32).tolist()
            assert res.info["friction"][i].item() == pytest.approx(info["friction"], rel=1e-7)
    assert ends > 10 and len({float(f) for f in venv.clock.friction}) > 1


@pytest.mark.parametrize(
    ("env_id", "reads"),
    [("Ant-v5", True), ("Humanoid-v5", True), ("HalfCheetah-v5", False), ("Hopper-v5", False), ("Walker2d-v5", False)],
)
def test_contact_forces_are_computed_only_for_tasks_that_read_them(env_id, reads):
    # mj_rnePostConstraint fills cfrc_ext (Ant's and Humanoid's contact cost and observation); the
    # others skip it, and the step-for-step match above shows that nothing else needed it
    env = CpuVecEnv(EnvConfig(id=env_id), num_runs=1)
    assert env._rne is reads
    env.reset([0])
    contact_forces = 0.0
    for _ in range(15):  # Ant and Humanoid start in the air and land within about 10 steps
        env.step(torch.zeros(1, env.act_dim))
        contact_forces = max(contact_forces, np.abs(env.datas[0].cfrc_ext).sum())
    assert (contact_forces > 0) if reads else (contact_forces == 0)
    env.close()
