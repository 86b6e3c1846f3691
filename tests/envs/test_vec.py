import sys
import types

import pytest
import torch
from pydantic import ValidationError

from rlplast.envs.cpu_ant import CpuAntVecEnv
from rlplast.envs.cpu_mujoco import CpuVecEnv
from rlplast.envs.factory import choose_backend
from rlplast.envs.gym_vec import GymVecEnv
from rlplast.envs.schedules import PiecewiseSchedule
from rlplast.envs.vec import EnvConfig, make_vec_env


def test_env_config_defaults_and_ant_kwargs():
    cfg = EnvConfig()
    assert (cfg.id, cfg.envs_per_run, cfg.max_episode_steps) == ("Ant-v5", 1, 1000)
    assert cfg.friction.mode == "all" and cfg.friction.apply == "episode_end"
    assert cfg.friction.schedule == PiecewiseSchedule()
    assert cfg.env_kwargs() == {"include_cfrc_ext_in_observation": False}
    full = EnvConfig(kwargs={"include_cfrc_ext_in_observation": True, "ctrl_cost_weight": 0.1})
    assert full.env_kwargs() == {"include_cfrc_ext_in_observation": True, "ctrl_cost_weight": 0.1}
    assert EnvConfig(id="Hopper-v5", kwargs={"a": 1}).env_kwargs() == {"a": 1}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"envs_per_run": 0}, "greater than or equal to 1"),
        ({"frction": {}}, "Extra inputs are not permitted"),
        ({"friction": {"mode": "walls"}}, "'all' or 'floor'"),
        ({"friction": {"apply": "later"}}, "'episode_end' or 'immediate'"),
        ({"friction": {"schedule": {"kind": "square"}}}, "'constant', 'piecewise'"),
        ({"friction": {"schedule": {"kind": "piecewise", "low": 3.0}}}, "low <= high"),
    ],
)
def test_env_config_bad_values(data, message):
    with pytest.raises(ValidationError, match=message):
        EnvConfig.model_validate(data)


def test_factory_backends_and_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo logs HalfCheetah's deprecation warning to the working directory
    ant = make_vec_env(EnvConfig(), num_runs=1, backend="auto")
    assert isinstance(ant, CpuAntVecEnv) and (ant.obs_dim, ant.act_dim, ant.num_envs) == (27, 8, 1)
    ant.close()
    cheetah = make_vec_env(EnvConfig(id="HalfCheetah-v5"), num_runs=1, backend="auto")
    assert isinstance(cheetah, CpuVecEnv) and (cheetah.obs_dim, cheetah.act_dim) == (17, 6)
    cheetah.close()
    assert isinstance(make_vec_env(EnvConfig(id="InvertedPendulum-v5"), num_runs=1, backend="auto"), GymVecEnv)
    with pytest.raises(ValueError, match="allowed: cpu, gym, warp, auto"):
        make_vec_env(EnvConfig(), num_runs=1, backend="gpu")
    with pytest.raises(ValueError, match=r"backend 'cpu' supports env ids Ant-v5, .*Humanoid-v5; .*use backend 'gym'"):
        make_vec_env(EnvConfig(id="InvertedPendulum-v5"), num_runs=1, backend="cpu")
    with pytest.raises(ValueError, match=r"backend 'warp' supports env ids Ant-v5, .*Walker2d-v5; got 'Reacher-v5'"):
        make_vec_env(EnvConfig(id="Reacher-v5"), num_runs=1, backend="warp")
    with pytest.raises(ValueError, match=r"backend 'warp' cannot run Humanoid-v5: .*PGS solver.*use backend 'cpu'"):
        make_vec_env(EnvConfig(id="Humanoid-v5"), num_runs=1, backend="warp")
    with pytest.raises(ValueError, match="num_runs must be >= 1"):
        make_vec_env(EnvConfig(), num_runs=0, backend="cpu")
    with pytest.raises(TypeError, match="MuJoCo env"):
        make_vec_env(EnvConfig(id="CartPole-v1"), num_runs=1, backend="gym")


def test_warp_backend_is_imported_lazily(monkeypatch):
    made = []
    fake = types.ModuleType("rlplast.envs.warp_ant")
    fake.WarpAntVecEnv = lambda cfg, num_runs, device: made.append((cfg, num_runs, device)) or "warp-env"
    monkeypatch.setitem(sys.modules, "rlplast.envs.warp_ant", fake)
    generic = types.ModuleType("rlplast.envs.warp_mujoco")
    generic.WarpTaskVecEnv = lambda cfg, num_runs, device: made.append((cfg, num_runs, device)) or "warp-task-env"
    monkeypatch.setitem(sys.modules, "rlplast.envs.warp_mujoco", generic)
    cfg, hopper = EnvConfig(), EnvConfig(id="Hopper-v5")
    assert make_vec_env(cfg, 3, backend="warp", device="cuda:1") == "warp-env"
    assert make_vec_env(hopper, 1, backend="warp", device="cuda:1") == "warp-task-env"
    assert made == [(cfg, 3, "cuda:1"), (hopper, 1, "cuda:1")]
    monkeypatch.setattr("rlplast.envs.factory.warp_available", lambda: True)
    assert make_vec_env(cfg, 2, backend="auto", device="cuda") == "warp-env"
    assert make_vec_env(hopper, 2, backend="auto", device="cuda") == "warp-task-env"
    # Humanoid stays on the cpu backend (mujoco_warp cannot simulate its model)
    assert choose_backend("Humanoid-v5", "auto", "cuda") == "cpu"
    # on a CPU device, auto keeps the (much faster) MuJoCo C backend even where warp is installed
    cpu_env = make_vec_env(cfg, 1, backend="auto", device="cpu")
    assert type(cpu_env).__name__ == "CpuAntVecEnv"
    cpu_env.close()


def test_bad_actions_and_seeds():
    env = make_vec_env(EnvConfig(), num_runs=2, backend="cpu")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="expected 2 seeds, got 3"):
        env.reset([0, 1, 2])
    env.reset([0, 1])
    with pytest.raises(ValueError, match=r"\[2, 8\], got \[2, 7\]"):
        env.step(torch.zeros(2, 7))
    with pytest.raises(ValueError, match=r"NaN/inf in envs \[1\]"):
        env.step(torch.tensor([[0.0] * 8, [0.0] * 7 + [float("inf")]]))
    with pytest.raises(ValueError, match="floating point"):
        env.step(torch.zeros(2, 8, dtype=torch.int64))
    env.close()


def test_bad_ant_kwargs_name_the_key_and_the_allowed_ones():
    with pytest.raises(ValueError, match=r"ctrl_cost(?s:.*)allowed keys: xml_file, frame_skip"):
        make_vec_env(EnvConfig(kwargs={"ctrl_cost": 0.1}), num_runs=1, backend="cpu")
