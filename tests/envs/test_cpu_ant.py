import io

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlplast  # noqa: F401  (registers the ids)
from rlplast.envs.cpu_ant import CpuAntVecEnv
from rlplast.envs.schedules import PiecewiseSchedule
from rlplast.envs.vec import EnvConfig, make_vec_env
from tests.envs.envtools import BUSY, random_actions


def wrapper_envs(seeds, **kwargs):
    """The reference: rlplast/SlipperyAnt-v0 (Gymnasium's Ant-v5 + ChangingFriction), one per run."""
    envs = [gym.make("rlplast/SlipperyAnt-v0", every=50, max_episode_steps=40, **kwargs) for _ in seeds]
    return envs, [env.reset(seed=s)[0] for env, s in zip(envs, seeds, strict=True)]


@pytest.mark.parametrize("cfrc", [False, True])
def test_matches_gymnasium_ant_v5_with_the_wrapper(cfrc):
    kwargs = {**BUSY["kwargs"], "include_cfrc_ext_in_observation": cfrc}
    cfg = EnvConfig.model_validate({**BUSY, "kwargs": kwargs})
    venv = make_vec_env(cfg, num_runs=2, backend="cpu")
    seeds = [3, 4]
    obs = venv.reset(seeds)
    envs, gobs = wrapper_envs(seeds, **kwargs)
    assert venv.obs_dim == (105 if cfrc else 27)
    torch.testing.assert_close(obs, torch.tensor(np.stack(gobs), dtype=torch.float32), rtol=0, atol=0)
    ends = {"terminated": 0, "truncated": 0}
    for action in random_actions(2, 150 if cfrc else 300):
        res = venv.step(action)
        for i, env in enumerate(envs):
            # float64 actions: Gymnasium would sum a float32 action's squares in float32
            o, r, term, trunc, info = env.step(action[i].double().numpy())
            assert (term, trunc) == (bool(res.terminated[i]), bool(res.truncated[i]))
            assert res.info["final_obs"][i].tolist() == o.astype(np.float32).tolist()
            assert res.reward[i].item() == pytest.approx(r, rel=1e-6, abs=1e-6)
            if term or trunc:
                ends["terminated"] += term
                ends["truncated"] += trunc
                o, info = env.reset()
            assert res.obs[i].tolist() == o.astype(np.float32).tolist()
            assert res.info["friction"][i].item() == pytest.approx(info["friction"], rel=1e-7)
    assert ends["terminated"] > 3 and ends["truncated"] > 0  # both kinds of ends were compared


def test_a_run_in_a_group_equals_the_run_alone():
    cfg = EnvConfig.model_validate({**BUSY, "envs_per_run": 2})
    group, alone = make_vec_env(cfg, 3, backend="cpu"), make_vec_env(cfg, 1, backend="cpu")
    obs_g, obs_a = group.reset([7, 8, 9]), alone.reset([8])
    assert torch.equal(obs_g[2:4], obs_a)
    assert not torch.equal(obs_g[2], obs_g[3])  # the envs of a run draw different reset noise
    acts = random_actions(6, 120)
    for a in acts:
        rg, ra = group.step(a), alone.step(a[2:4])
        for x, y in zip(rg[:4], ra[:4], strict=True):
            assert torch.equal(x[2:4], y)
        assert torch.equal(rg.info["friction"][2:4], ra.info["friction"])
    assert rg.info["run_steps"].tolist() == [240, 240, 240]


def test_info_bookkeeping(busy_cfg):
    env = make_vec_env(busy_cfg, num_runs=2, backend="cpu")
    env.reset([0, 1])
    returns, lengths, finished = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.int64), 0
    schedule = PiecewiseSchedule(every=50)
    for a in random_actions(2, 200):
        res = env.step(a)
        assert res.obs.dtype == res.reward.dtype == res.info["final_obs"].dtype == torch.float32
        assert res.obs.shape == (2, 27) and res.reward.shape == (2,) and res.terminated.dtype == torch.bool
        returns += res.reward.double()
        lengths += 1
        done = res.terminated | res.truncated
        for i in torch.nonzero(done).flatten().tolist():
            finished += 1
            assert res.info["episode_length"][i] == lengths[i]
            assert res.info["episode_return"][i].item() == pytest.approx(returns[i].item(), rel=1e-5, abs=1e-4)
            # episode_end: the friction of the new episode is the schedule's value now
            steps = int(res.info["run_steps"][i])
            assert res.info["friction"][i].item() == pytest.approx(schedule.at(i, steps), rel=1e-6)
            returns[i], lengths[i] = 0, 0
        assert torch.all(res.info["episode_return"][~done] == 0)
    assert finished > 5 and res.info["nonfinite_resets"].tolist() == [0, 0]


def test_immediate_friction_follows_the_run_clock():
    cfg = EnvConfig.model_validate({**BUSY, "envs_per_run": 3, "friction": {**BUSY["friction"], "apply": "immediate"}})
    env = make_vec_env(cfg, num_runs=1, backend="cpu")
    env.reset([5])
    schedule = PiecewiseSchedule(every=50)
    for k, a in enumerate(random_actions(3, 40), start=1):
        res = env.step(a)
        expected = torch.tensor([schedule.at(5, 3 * k)] * 3, dtype=torch.float32)
        assert torch.equal(res.info["friction"], expected)
        assert torch.all(torch.from_numpy(env.models[0].geom_friction[:, 0]).float() == expected[0])


def test_nonfinite_state_resets_only_that_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes its warning log to the working directory
    env, clean = (make_vec_env(EnvConfig(), num_runs=2, backend="cpu") for _ in range(2))
    env.reset([0, 1])
    clean.reset([0, 1])
    acts = random_actions(2, 6)
    for a in acts[:3]:
        env.step(a)
        clean.step(a)
    env.datas[1].qvel[4] = np.nan
    res, ref = env.step(acts[3]), clean.step(acts[3])
    assert res.terminated.tolist() == [False, True] and res.reward[1] == 0
    assert res.info["nonfinite_resets"].tolist() == [0, 1]
    assert torch.isfinite(res.obs).all() and torch.isfinite(res.info["final_obs"]).all()
    assert torch.equal(res.obs[0], ref.obs[0]) and torch.equal(res.reward[0], ref.reward[0])
    assert res.info["episode_length"][1] == 4
    res = env.step(acts[4])
    assert res.info["nonfinite_resets"].tolist() == [0, 1] and not res.terminated.any()


def test_state_dict_gives_exact_continuation(busy_cfg):
    env = make_vec_env(busy_cfg, num_runs=2, backend="cpu")
    env.reset([11, 12])
    acts = random_actions(2, 150)
    for a in acts[:70]:
        env.step(a)
    buffer = io.BytesIO()
    torch.save(env.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    first = [env.step(a) for a in acts[70:]]
    fresh = make_vec_env(busy_cfg, num_runs=2, backend="cpu")
    fresh.load_state_dict(state)
    second = [fresh.step(a) for a in acts[70:]]
    assert sum(int((r.terminated | r.truncated).sum()) for r in first) > 2  # resets after the resume too
    for x, y in zip(first, second, strict=True):
        for a, b in zip(x[:4], y[:4], strict=True):
            assert torch.equal(a, b)
        for key in x.info:
            assert torch.equal(x.info[key], y.info[key]), key
    with pytest.raises(ValueError, match="with 2 envs"):
        make_vec_env(busy_cfg, num_runs=3, backend="cpu").load_state_dict(state)


def test_threads_do_not_change_results(busy_cfg):
    one = CpuAntVecEnv(busy_cfg, num_runs=5, num_threads=1)
    two = CpuAntVecEnv(busy_cfg, num_runs=5, num_threads=2)
    assert (one.num_threads, two.num_threads) == (1, 2)
    assert torch.equal(one.reset(range(5)), two.reset(range(5)))
    for a in random_actions(5, 50):
        assert torch.equal(one.step(a).obs, two.step(a).obs)
    two.close()


def test_envs_with_the_same_friction_share_a_model(busy_cfg):
    cfg = busy_cfg.model_copy(update={"envs_per_run": 3})
    env = make_vec_env(cfg, num_runs=2, backend="cpu")
    env.reset([0, 1])
    frictions = env.clock.friction.tolist()
    assert len({id(m) for m in env.models}) == len(set(frictions)) == 2
    for m, f in zip(env.models, frictions, strict=True):
        assert np.all(m.geom_friction[:, 0] == f)
    for a in random_actions(6, 60):  # run clocks pass 150 steps: the episode ends pick new values
        env.step(a)
    frictions = env.clock.friction.tolist()
    assert len({id(m) for m in env.models}) == len(set(frictions)) > 2
    for m, f in zip(env.models, frictions, strict=True):
        assert np.all(m.geom_friction[:, 0] == f)
