"""The generic warp backend (rlplast.envs.warp_mujoco) on Warp's CPU device (or the device
RLPLAST_WARP_TEST_DEVICE names, see tests/envs/envtools.py), checked against the cpu backend
(MuJoCo C, itself checked against Gymnasium step for step in test_cpu_tasks.py).

Tolerances. mujoco_warp computes in float32, MuJoCo C in float64, and contact dynamics amplify
the difference over a rollout (HalfCheetah's two runs drift apart by O(1) within 30 steps). So
each env step starts from the cpu backend's state (qpos, qvel and the solver's warm start, as
Gymnasium's ``set_state``) and only one step's difference is compared.
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

pytest.importorskip("mujoco_warp")

from rlplast.envs.cpu_mujoco import CpuVecEnv
from rlplast.envs.factory import make_vec_env
from rlplast.envs.friction import FrictionConfig
from rlplast.envs.vec import EnvConfig
from rlplast.envs.warp_mujoco import WarpTaskVecEnv
from tests.envs.envtools import (
    WARP_DEVICE,
    check_friction_follows_clock,
    check_resumes_exactly,
    on_cpu,
    random_actions,
)
from tests.tiny_ant import OVERRIDES, UPDATE

pytestmark = pytest.mark.warp

TASK_IDS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
CONSTANT = {"schedule": {"kind": "constant", "value": 1.0}}


@pytest.fixture(autouse=True)
def _mujoco_log_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo logs HalfCheetah's deprecation warning to the working directory


def cpu_state(env: CpuVecEnv) -> tuple[torch.Tensor, ...]:
    """qpos, qvel, qacc_warmstart ``[N, ...]`` of every env of the cpu backend, as float32."""
    return tuple(
        torch.tensor(np.stack([getattr(d, key) for d in env.datas]), dtype=torch.float32)
        for key in ("qpos", "qvel", "qacc_warmstart")
    )


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_step_matches_the_cpu_backend_from_the_same_state(env_id):
    cfg = EnvConfig(id=env_id, friction=CONSTANT)
    warp, cpu = WarpTaskVecEnv(cfg, 4, device=WARP_DEVICE), CpuVecEnv(cfg, 4, num_threads=1)
    assert (warp.obs_dim, warp.act_dim) == (cpu.obs_dim, cpu.act_dim)
    warp.reset([0, 1, 2, 3])
    cpu.reset([0, 1, 2, 3])
    obs_err, reward_err, ends = [], [], 0
    for action in random_actions(4, 25, dim=cpu.act_dim, scale=1.0):
        warp.set_state(*cpu_state(cpu))
        a, b = on_cpu(warp.step(action)), cpu.step(action)
        assert torch.equal(a.terminated, b.terminated)
        obs_err.append((a.info["final_obs"] - b.info["final_obs"]).abs().amax(dim=1))
        reward_err.append((a.reward - b.reward).abs())
        ends += int(b.terminated.sum())
    obs_err, reward_err = torch.cat(obs_err), torch.cat(reward_err)
    # measured over 480 steps per task (8 envs x 60): observation max 3.3e-4 (HalfCheetah; its
    # velocities reach 10-20), 1.5e-4 (Walker2d), 3.6e-6 (Hopper), medians 4e-7 to 8e-6; reward
    # max 1.0e-5 (Walker2d), 6e-6 (HalfCheetah), 1.7e-6 (Hopper). Elliptic cones give the same
    # sizes: float32 precision through stiff contacts, not a modelling difference.
    assert obs_err.max() < 1e-3 and obs_err.median() < 3e-5, (obs_err.max(), obs_err.median())
    assert reward_err.max() < 1e-4, reward_err.max()
    assert ends > 0 or env_id == "HalfCheetah-v5"  # a fall compared too (HalfCheetah never ends)
    cpu.close()


def test_humanoid_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"backend 'warp' cannot run Humanoid-v5: .*PGS solver"):
        make_vec_env(EnvConfig(id="Humanoid-v5"), 1, backend="warp", device="cpu")
    with pytest.raises(NotImplementedError, match=r"mujoco_warp cannot simulate Humanoid-v5's model: .*PGS"):
        WarpTaskVecEnv(EnvConfig(id="Humanoid-v5"), 1, device=WARP_DEVICE)


@pytest.mark.parametrize("mode", ["all", "floor"])
def test_friction_per_world_multiplies_each_geoms_own_and_matches_mujoco_c(mode):
    # Hopper's geoms differ (foot 2.0, the rest 0.9): a multiplier and a value disagree there
    schedule = {"kind": "piecewise", "low": 0.05, "high": 2.0}
    cfg = EnvConfig(id="Hopper-v5", friction={"mode": mode, "schedule": schedule})
    seeds = [6, 3, 2, 4]
    warp, cpu = WarpTaskVecEnv(cfg, 4, device=WARP_DEVICE), CpuVecEnv(cfg, 4, num_threads=1)
    warp.reset(seeds)
    cpu.reset(seeds)
    friction = warp.state_dict()["friction"].numpy()
    np.testing.assert_allclose(friction, cpu.clock.friction, rtol=1e-6)
    assert len(set(friction.tolist())) == 4
    own = warp.task.model.geom_friction[:, 0]
    chosen = own > -1 if mode == "all" else warp.task.model.geom_bodyid == 0
    expected = np.where(chosen, own * friction[:, None], own)
    np.testing.assert_allclose(warp._geom_friction.cpu().numpy(), expected, rtol=1e-6)
    # every world from one state of the hopper with its foot on the floor (cpu env 0, still actions)
    for _ in range(30):
        cpu.step(torch.zeros(4, 3))
        if cpu.datas[0].ncon > 0:
            break
    qpos, qvel, warm = (x[:1].expand(4, -1) for x in cpu_state(cpu))
    for n, d in enumerate(cpu.datas):
        d.qpos[:], d.qvel[:], d.qacc_warmstart[:] = qpos[n], qvel[n], warm[n]
        mujoco.mj_forward(cpu.models[n], d)
        assert d.ncon > 0
    warp.set_state(qpos, qvel, warm)
    action = torch.tensor([[0.0, -1.0, 1.0]]).expand(4, -1)
    a, b = on_cpu(warp.step(action)), cpu.step(action)
    np.testing.assert_allclose(a.info["final_obs"].numpy(), b.info["final_obs"].numpy(), atol=1e-3)
    spread = (a.info["final_obs"][:, 5:].amax(0) - a.info["final_obs"][:, 5:].amin(0)).max()
    assert spread > 0.05  # friction changes the motion far beyond the tolerance
    cpu.close()


@pytest.mark.parametrize("apply", ["episode_end", "immediate"])
def test_friction_schedule_follows_the_cpu_backends_clock(apply):
    # run clocks advance 2 per step (E = 2): values change after steps 3, 5, 8, 10; episodes end
    # every 3 steps, so the two apply modes give different sequences
    friction = FrictionConfig(schedule={"kind": "cycle", "values": [0.5, 1.0, 1.5], "every": 5}, apply=apply)
    cfg = EnvConfig(id="Walker2d-v5", friction=friction, envs_per_run=2, max_episode_steps=3)
    envs = [WarpTaskVecEnv(cfg, num_runs=2, device=WARP_DEVICE, capture=capture) for capture in (True, False)]
    own = torch.as_tensor(envs[0].task.model.geom_friction[:, 0], dtype=torch.float32)  # Walker2d's differ
    check_friction_follows_clock(envs, random_actions(4, 12, dim=6), lambda env: env._geom_friction, own)


@pytest.mark.parametrize(("env_id", "qvel_noise"), [("Hopper-v5", "uniform"), ("HalfCheetah-v5", "norm")])
def test_autoreset_draws_the_tasks_reset_noise(env_id, qvel_noise):
    from scipy import stats

    # episodes of one step: every world resets at every step, with a fresh draw each episode
    cfg = EnvConfig(id=env_id, friction=CONSTANT, envs_per_run=100, max_episode_steps=1)
    env = WarpTaskVecEnv(cfg, num_runs=2, device=WARP_DEVICE)
    scale = env.spec.reset_noise_scale
    nq = env.task.model.nq
    qpos0 = env.task.model.qpos0[1:]  # the observation leaves out x
    first = env.reset([11, 12]).cpu().numpy()
    res = on_cpu(env.step(torch.zeros(200, env.act_dim)))
    assert res.truncated.all() and (res.info["episode_length"] == 1).all()
    for obs in (first, res.obs.numpy()):
        qpos_noise, qvel = obs[:, : nq - 1] - qpos0, obs[:, nq - 1 :] / scale
        assert np.abs(qpos_noise).max() <= scale * (1 + 1e-4)
        assert stats.kstest(qpos_noise.ravel(), "uniform", args=(-scale, 2 * scale)).pvalue > 1e-3
        args = (-1, 2) if qvel_noise == "uniform" else ()
        assert stats.kstest(qvel.ravel(), qvel_noise, args=args).pvalue > 1e-3
        assert len(np.unique(obs, axis=0)) == len(obs)
    assert not np.isclose(first, res.obs.numpy()).all(axis=1).any()  # a new draw per episode
    np.testing.assert_array_equal(env.reset([11, 12]).cpu().numpy(), first)  # seeded
    alone = WarpTaskVecEnv(cfg, num_runs=1, device=WARP_DEVICE).reset([12]).cpu().numpy()
    np.testing.assert_array_equal(alone, first[100:])  # run 1 of the group draws what it draws alone


def test_state_dict_continues_exactly():
    friction = {"schedule": {"kind": "piecewise", "every": 7}}
    cfg = EnvConfig(id="Hopper-v5", friction=friction, envs_per_run=2, max_episode_steps=4)
    envs = [WarpTaskVecEnv(cfg, num_runs=2, device=WARP_DEVICE) for _ in range(2)]
    check_resumes_exactly(envs, [1, 2], random_actions(4, 10, seed=2, dim=3))
    other = WarpTaskVecEnv(cfg.model_copy(update={"id": "Walker2d-v5"}), num_runs=2, device=WARP_DEVICE)
    with pytest.raises(ValueError, match="state is for backend 'warp' on 'Hopper-v5'"):
        other.load_state_dict(envs[0].state_dict())
    # a saved buffer of another shape is named, and nothing after it is written
    state = envs[0].state_dict()
    state["sim"]["qvel"] = state["sim"]["qvel"][:, :-1]
    with pytest.raises(ValueError, match=r"state 'qvel' has shape \(4, 5\), expected \(4, 6\)"):
        envs[1].load_state_dict(state)


def test_nonfinite_actions_and_overflow_are_errors():
    # device checks every step (on CUDA they are deferred by default); an env of its own for each
    # error, since on CUDA both are flagged on the device and the overflow is reported first
    cfg = EnvConfig(id="Hopper-v5", friction=CONSTANT)
    env = WarpTaskVecEnv(cfg, 1, device=WARP_DEVICE, check_every=1)
    env.reset([0])
    with pytest.raises(ValueError, match="actions must be finite"):
        env.step(torch.tensor([[0.0, float("nan"), 0.0]]))
    env = WarpTaskVecEnv(cfg, 1, device=WARP_DEVICE, check_every=1, njmax=1)
    env.reset([0])
    with pytest.raises(RuntimeError, match=r"raise it, WarpTaskVecEnv\(..., njmax=...\)"):
        for _ in range(20):  # the hopper stands on its foot from the start
            env.step(torch.zeros(1, 3))


def test_training_runs_on_warp(tmp_path):
    from rlplast import runner
    from rlplast.config import load_config

    cfg = load_config("slippery_hopper", "ppo", [*OVERRIDES, "env.envs_per_run=2"])
    runner.train_group(cfg, [0, 1], tmp_path, steps=3 * UPDATE, backend="warp", device=WARP_DEVICE)
    for seed in (0, 1):
        assert (tmp_path / f"seed{seed}" / "done.json").is_file()
