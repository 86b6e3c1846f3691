import io

import pytest
import torch

from rlplast.envs.vec import EnvConfig, make_vec_env
from tests.envs.envtools import random_actions


def test_gym_backend_equals_cpu_backend_on_ant(busy_cfg):
    cfg = busy_cfg.model_copy(update={"envs_per_run": 2})
    cpu, gym_env = make_vec_env(cfg, 2, backend="cpu"), make_vec_env(cfg, 2, backend="gym")
    assert torch.equal(cpu.reset([3, 4]), gym_env.reset([3, 4]))
    ends = 0
    for a in random_actions(4, 130):
        rc, rg = cpu.step(a), gym_env.step(a)
        for x, y in zip(rc[:4], rg[:4], strict=True):
            assert torch.equal(x, y)
        for key in rc.info:
            assert torch.equal(rc.info[key], rg.info[key]), key
        ends += int((rc.terminated | rc.truncated).sum())
    assert ends > 5


def test_gym_backend_state_dict_exact(busy_cfg):
    env = make_vec_env(busy_cfg, 2, backend="gym")
    env.reset([1, 2])
    acts = random_actions(2, 100)
    for a in acts[:50]:
        env.step(a)
    buffer = io.BytesIO()
    torch.save(env.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    first = [env.step(a) for a in acts[50:]]
    fresh = make_vec_env(busy_cfg, 2, backend="gym")
    fresh.load_state_dict(state)
    for x, a in zip(first, acts[50:], strict=True):
        y = fresh.step(a)
        assert torch.equal(x.obs, y.obs) and torch.equal(x.reward, y.reward) and torch.equal(x.truncated, y.truncated)
    with pytest.raises(ValueError, match=r"state is for backend 'gym'.*this env is 'cpu'"):
        make_vec_env(busy_cfg, 2, backend="cpu").load_state_dict(state)


def cheetah_x_after_gait(friction: float, mode: str) -> tuple[float, float]:
    cfg = EnvConfig(id="HalfCheetah-v5", friction={"mode": mode, "schedule": {"kind": "constant", "value": friction}})
    env = make_vec_env(cfg, num_runs=1, backend="gym")
    env.reset([0])
    for k in range(60):
        res = env.step(torch.sin(0.3 * k + torch.arange(6.0))[None])
    assert res.obs.shape == (1, 17)
    return env.envs[0].unwrapped.data.qpos[0], res.info["friction"].item()


@pytest.mark.parametrize("mode", ["all", "floor"])
def test_other_mujoco_envs_through_the_same_contract(mode, tmp_path, monkeypatch):
    """HalfCheetah-v5 through the gym backend: its friction changes its motion, in both modes."""
    monkeypatch.chdir(tmp_path)  # MuJoCo logs HalfCheetah's deprecation warning to the working directory
    x_slippery, f_slippery = cheetah_x_after_gait(0.02, mode)
    x_grippy, f_grippy = cheetah_x_after_gait(2.0, mode)
    assert (f_slippery, f_grippy) == (pytest.approx(0.02), 2.0)
    assert abs(x_slippery - x_grippy) > 0.3
