"""The warp backend on Warp's CPU device (or the device RLPLAST_WARP_TEST_DEVICE names, see
tests/envs/envtools.py), checked against Gymnasium's Ant-v5 on MuJoCo C.

Kernel compiles are cached by Warp (under the user's cache directory); worlds are few and steps
are one or a handful, so the file stays within a few minutes on a cold cache.

Tolerances. mujoco_warp computes in float32, MuJoCo C in float64. With Ant's pyramidal friction
cones, the two agree to float32 precision except when a capsule touches the floor while steeper
than 60 degrees: mujoco_warp 4.0 then orients the contact's tangent frame (and so the friction
pyramid) differently from MuJoCo C (see rlplast.envs.warp_ant). The tests detect those states on
the MuJoCo C side and check the rest tightly; with elliptic cones (no tangent frame dependence)
every state agrees.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import torch

pytest.importorskip("mujoco_warp")

from rlplast.envs import ant_math, warp_ant, warp_runtime
from rlplast.envs.friction import FrictionConfig, FrictionSetter
from rlplast.envs.vec import EnvConfig, make_vec_env
from rlplast.envs.warp_ant import WarpAntVecEnv
from rlplast.envs.warp_model import contact_capacity, load_ant_model, parse_ant_spec
from tests.envs.envtools import WARP_DEVICE, check_friction_follows_clock, check_resumes_exactly, on_cpu

pytestmark = pytest.mark.warp

CONSTANT = {"schedule": {"kind": "constant", "value": 1.0}}
FULL_OBS = {"include_cfrc_ext_in_observation": True}
STEEP = 0.5  # mujoco_warp aligns a capsule-plane frame with the capsule when |axis_xy| >= this


def f32(rows) -> torch.Tensor:
    return torch.tensor(np.array(rows), dtype=torch.float32)


def has_steep_capsule_contact(model: mujoco.MjModel, data: mujoco.MjData) -> bool:
    """A capsule-plane contact whose frame mujoco_warp orients differently from MuJoCo C."""
    for con in data.contact[: data.ncon]:
        g = con.geom[1] if model.geom_bodyid[con.geom[0]] == 0 else con.geom[0]
        axis = data.geom_xmat[g].reshape(3, 3)[:, 2]
        if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_CAPSULE and np.hypot(axis[0], axis[1]) < STEEP:
            return True
    return False


def c_step_is_steep(model: mujoco.MjModel, state: tuple, frame_skip: int = 5) -> bool:
    """Whether any substep of MuJoCo C's env step from ``state`` has a steep capsule contact."""
    qpos, qvel, warm, action = state
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:], data.qacc_warmstart[:], data.ctrl[:] = qpos, qvel, warm, action
    steep = False
    for _ in range(frame_skip):
        mujoco.mj_step(model, data)
        steep |= has_steep_capsule_contact(model, data)
    return steep


def gym_step(env: gym.Env, state: tuple):
    """Gymnasium Ant-v5's step from ``state`` = (qpos, qvel, qacc_warmstart, action)."""
    qpos, qvel, warm, action = state
    env.unwrapped.set_state(qpos, qvel)
    env.unwrapped.data.qacc_warmstart[:] = warm
    return env.unwrapped.step(action)


@pytest.fixture(scope="module")
def gym_ant() -> gym.Env:
    env = gym.make("Ant-v5", include_cfrc_ext_in_observation=True)
    env.reset(seed=3)
    return env


@pytest.fixture(scope="module")
def states(gym_ant) -> list[tuple]:
    """48 states (qpos, qvel, warm start, action) of a random Ant-v5 rollout; most touch the floor."""
    rng = np.random.default_rng(0)
    u, out = gym_ant.unwrapped, []
    for t in range(240):
        action = rng.uniform(-1, 1, 8)
        if t % 5 == 0:
            out.append((u.data.qpos.copy(), u.data.qvel.copy(), u.data.qacc_warmstart.copy(), action))
        _, _, terminated, _, _ = u.step(action)
        if terminated:
            gym_ant.reset()
    return out


@pytest.fixture(scope="module")
def ant(states) -> WarpAntVecEnv:
    """One world per state, friction 1.0, 105-dim observation, episodes of 3 steps; device checks
    every step (the default on the CPU; on CUDA, so that non-finite actions raise at once)."""
    cfg = EnvConfig(kwargs=FULL_OBS, friction=CONSTANT, max_episode_steps=3)
    return WarpAntVecEnv(cfg, num_runs=len(states), device=WARP_DEVICE, check_every=1)


def step_from(env: WarpAntVecEnv, states: list[tuple]):
    env.reset(list(range(env.num_runs)))
    env.set_state(*(f32([s[k] for s in states]) for k in range(3)))
    return on_cpu(env.step(f32([s[3] for s in states])))


def test_capacity_is_ants_worst_case():
    # 1 sphere + 12 capsules on the floor, 2 contacts per capsule; 4 pyramid rows per contact
    # and 2 rows per limited hinge (8 hinges)
    ant_model = load_ant_model(parse_ant_spec({}), "all")
    assert contact_capacity(ant_model.mjm) == (1 + 12 * 2, 25 * 4 + 8 * 2)
    floor = load_ant_model(parse_ant_spec({}), "floor")
    assert floor.friction_geoms.tolist() == [0] and floor.mjm.geom_priority[0] == 1


def test_step_matches_gymnasium_ant(ant, states, gym_ant):
    res = step_from(ant, states)
    errors, kept = [], []
    for i, state in enumerate(states):
        obs, reward, terminated, _, _ = gym_step(gym_ant, state)
        assert bool(res.terminated[i]) == terminated
        err = np.abs(res.info["final_obs"][i].numpy() - obs).max()
        errors.append(err)
        if not c_step_is_steep(gym_ant.unwrapped.model, state):
            kept.append(i)
            assert err < 1e-3, f"state {i}: obs differs by {err}"
            assert res.reward[i].item() == pytest.approx(reward, rel=1e-5, abs=1e-5)
    # measured: median 1.5e-6 over all 48; max 8.1e-5 over the 46 without a steep capsule contact
    assert np.median(errors) < 1e-5
    assert len(kept) >= 0.75 * len(states)


def test_elliptic_cones_match_mujoco_c_on_every_state(states, gym_ant, monkeypatch):
    def elliptic(spec, mode):
        ant_model = load_ant_model(spec, mode)
        ant_model.mjm.opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
        return ant_model

    monkeypatch.setattr(warp_ant, "load_ant_model", elliptic)
    env = WarpAntVecEnv(EnvConfig(kwargs=FULL_OBS, friction=CONSTANT), num_runs=len(states), device=WARP_DEVICE)
    res = step_from(env, states)
    model = gym_ant.unwrapped.model
    cone = model.opt.cone
    model.opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    try:
        for i, state in enumerate(states):
            obs, reward, _, _, _ = gym_step(gym_ant, state)
            # measured: relative error at most 4.5e-6 (state), 3.5e-6 (reward)
            np.testing.assert_allclose(res.info["final_obs"][i, :27].numpy(), obs[:27], rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(res.info["final_obs"][i, 27:].numpy(), obs[27:], atol=1e-2)
            assert res.reward[i].item() == pytest.approx(reward, rel=1e-4, abs=1e-4)
    finally:
        model.opt.cone = cone


def test_kernels_match_ant_math_on_identical_states(ant, states):
    states = [list(s) for s in states]
    for i, z in ((0, 1.8), (1, 1.2)):  # too high (still, after a 0.05 s fall): unhealthy
        states[i][0] = np.concatenate([states[i][0][:2], [z], states[i][0][3:]])
    states[2][1] = np.full(14, np.nan)  # non-finite: terminated, reward 0, counted
    x_before = f32([s[0][:2] for s in states])[:, 0].numpy()
    res = step_from(ant, [tuple(s) for s in states])
    wp = warp_runtime.import_warp()[0]
    x_after = wp.to_torch(ant.data.xpos)[:, ant.ant.main_body, 0].cpu().numpy()
    cfrc = wp.to_torch(ant.data.cfrc_ext).cpu().numpy()
    final = res.info["final_obs"].numpy()
    # live worlds: the simulator's state; ended ones were reset, so rebuild theirs from final_obs
    qpos, qvel = wp.to_torch(ant.data.qpos).cpu().numpy().copy(), wp.to_torch(ant.data.qvel).cpu().numpy().copy()
    assert (res.terminated | res.truncated).tolist() == [True] * 3 + [False] * (len(states) - 3)
    qpos[:3, 2:], qvel[:3] = final[:3, :13], final[:3, 13:27]
    qvel[2] = np.nan  # what the simulator held for world 2
    spec = ant.spec
    healthy = ant_math.is_healthy(qpos, qvel, spec)
    assert healthy[3:].all() and not healthy[:3].any()
    np.testing.assert_array_equal(res.terminated.numpy(), ant_math.terminated(healthy, spec))
    # the CPU backend's rule for a non-finite state: NaN/inf written as 0
    expected = np.nan_to_num(ant_math.observation(qpos, qvel, cfrc, spec), nan=0.0, posinf=0.0, neginf=0.0)
    np.testing.assert_array_equal(final, expected)
    actions = np.array([s[3] for s in states], dtype=np.float32)
    reward = ant_math.reward(x_before, x_after, actions, cfrc, healthy, spec, ant.ant.dt)
    reward[2] = 0.0
    np.testing.assert_allclose(res.reward.numpy(), reward, rtol=1e-5, atol=1e-5)
    assert res.info["nonfinite_resets"].tolist() == [0, 0, 1] + [0] * (len(states) - 3)
    # ended worlds: their first observation of a new episode, its contact forces zero
    assert torch.isfinite(res.obs).all() and (res.obs[:3, 27:] == 0).all()


def test_time_limit_truncates(ant):
    ant.reset(list(range(ant.num_runs)))
    actions = torch.zeros(ant.num_envs, ant.act_dim)
    results = [ant.step(actions) for _ in range(3)]
    live = ~(results[0].terminated | results[1].terminated | results[2].terminated)
    assert not results[1].truncated.any() and results[2].truncated[live].all()
    lengths = results[2].info["episode_length"][live]
    assert (lengths == 3).all() and results[2].info["episode_length"].dtype == torch.int64
    total = sum(r.reward for r in results)[live]
    torch.testing.assert_close(results[2].info["episode_return"][live], total)


@pytest.mark.parametrize("mode", ["all", "floor"])
def test_friction_per_world_matches_mujoco_c(mode, states, gym_ant):
    model = gym_ant.unwrapped.model
    calm = [s for s in states if not c_step_is_steep(model, s)]
    data = mujoco.MjData(model)
    contacts = []
    for s in calm:
        data.qpos[:], data.qvel[:] = s[0], s[1]
        mujoco.mj_forward(model, data)
        contacts.append(data.ncon)
    state = calm[int(np.argmax(contacts))]  # the most contacts: friction matters most
    schedule = {"kind": "piecewise", "low": 0.05, "high": 2.0}
    cfg = EnvConfig(kwargs=FULL_OBS, friction={"mode": mode, "schedule": schedule})
    env = WarpAntVecEnv(cfg, num_runs=4, device=WARP_DEVICE)
    seeds = [6, 3, 2, 4]  # frictions 0.082, 0.115, 0.849, 1.503
    env.reset(seeds)
    friction = env.state_dict()["friction"].numpy()
    expected = [cfg.friction.schedule.at(s, 0) for s in seeds]
    np.testing.assert_allclose(friction, expected, rtol=1e-6)
    env.set_state(*(f32([state[k]] * 4) for k in range(3)))
    res = on_cpu(env.step(f32([state[3]] * 4)))

    reference = gym.make("Ant-v5", include_cfrc_ext_in_observation=True)
    reference.reset(seed=0)
    setter = FrictionSetter(reference.unwrapped.model, mode)
    for i, value in enumerate(friction):
        setter.set(float(value))
        obs, reward, _, _, _ = gym_step(reference, state)
        assert not c_step_is_steep(reference.unwrapped.model, state)
        np.testing.assert_allclose(res.info["final_obs"][i].numpy(), obs, atol=1e-3)
        assert res.reward[i].item() == pytest.approx(reward, abs=1e-4)
    # and friction changes the motion far beyond that tolerance
    spread = (res.info["final_obs"][:, 13:27].amax(0) - res.info["final_obs"][:, 13:27].amin(0)).max()
    assert spread > 0.1


@pytest.mark.parametrize("apply", ["episode_end", "immediate"])
def test_friction_schedule_follows_the_cpu_backends_clock(apply):
    # run clocks advance 2 per step (E = 2): values change after steps 3, 5, 8, 10; episodes end
    # every 3 steps, so the two apply modes give different sequences
    friction = FrictionConfig(schedule={"kind": "cycle", "values": [0.5, 1.0, 1.5], "every": 5}, apply=apply)
    cfg = EnvConfig(friction=friction, envs_per_run=2, max_episode_steps=3)
    envs = [WarpAntVecEnv(cfg, num_runs=2, device=WARP_DEVICE, capture=capture) for capture in (True, False)]
    wp = warp_runtime.import_warp()[0]
    gen = torch.Generator().manual_seed(1)
    actions = [torch.rand(4, 8, generator=gen) * 2 - 1 for _ in range(12)]
    sliding = lambda env: wp.to_torch(env.model.geom_friction)[:, :, 0]  # noqa: E731
    check_friction_follows_clock(envs, actions, sliding, torch.ones(1))


def test_reset_noise_has_ant_v5_distribution_and_depends_on_the_run_only():
    from scipy import stats

    cfg = EnvConfig(friction=CONSTANT, envs_per_run=200)
    env = WarpAntVecEnv(cfg, num_runs=2, device=WARP_DEVICE)
    obs = env.reset([11, 12]).cpu().numpy()
    scale = 0.1
    qpos_noise = obs[:, :13] - env.ant.mjm.qpos0[2:]
    qvel_noise = obs[:, 13:27] / scale
    assert np.abs(qpos_noise).max() <= scale + 1e-6
    assert stats.kstest(qpos_noise.ravel(), "uniform", args=(-scale, 2 * scale)).pvalue > 1e-3
    assert stats.kstest(qvel_noise.ravel(), "norm").pvalue > 1e-3
    assert len(np.unique(obs, axis=0)) == len(obs)
    np.testing.assert_array_equal(env.reset([11, 12]).cpu().numpy(), obs)  # seeded
    alone = WarpAntVecEnv(cfg, num_runs=1, device=WARP_DEVICE).reset([12]).cpu().numpy()
    np.testing.assert_array_equal(alone, obs[200:])  # run 1 of the group draws what it draws alone


def test_state_dict_continues_exactly():
    friction = {"schedule": {"kind": "piecewise", "every": 7}}
    cfg = EnvConfig(friction=friction, envs_per_run=2, max_episode_steps=4)
    gen = torch.Generator().manual_seed(2)
    actions = [torch.rand(4, 8, generator=gen) * 2 - 1 for _ in range(10)]
    check_resumes_exactly([WarpAntVecEnv(cfg, num_runs=2, device=WARP_DEVICE) for _ in range(2)], [1, 2], actions)


@pytest.mark.parametrize(("setting", "value"), [("njmax", 2), ("nconmax", 1)])
def test_buffer_overflow_is_an_error_naming_the_setting(setting, value):
    env = WarpAntVecEnv(EnvConfig(friction=CONSTANT), num_runs=1, device=WARP_DEVICE, check_every=1, **{setting: value})
    env.reset([0])
    with pytest.raises(RuntimeError, match=f"raise it, WarpAntVecEnv\\(..., {setting}=...\\)"):
        for _ in range(20):  # the ant lands on its legs within a few steps
            env.step(torch.zeros(1, 8))


def test_bad_input_gives_clear_errors(monkeypatch, ant):
    with pytest.raises(ValueError, match="supports env ids Ant-v5"):
        WarpAntVecEnv(EnvConfig(id="Hopper-v5"), num_runs=1, device="cpu")
    with pytest.raises(ValueError, match="allowed keys: xml_file"):
        WarpAntVecEnv(EnvConfig(kwargs={"bogus": 1}), num_runs=1, device="cpu")
    with pytest.raises(ValueError, match="must be a body with a free joint; allowed: \\['torso'\\]"):
        WarpAntVecEnv(EnvConfig(kwargs={"main_body": "aux_1"}), num_runs=1, device="cpu")
    with pytest.raises(ValueError, match="'cpu'"):
        WarpAntVecEnv(EnvConfig(), num_runs=1, device="meta")
    if not torch.cuda.is_available():
        assert not warp_ant.warp_available()
        with pytest.raises(RuntimeError, match=r"finds no CUDA GPU.*pip install 'rlplast\[gpu\]'"):
            WarpAntVecEnv(EnvConfig(), num_runs=1, device="cuda")
    with pytest.raises(ValueError, match="actions must have shape"):
        ant.step(torch.zeros(ant.num_envs, 3))
    with pytest.raises(ValueError, match="actions must be finite"):
        ant.step(torch.full((ant.num_envs, 8), float("nan")))

    real_import = warp_runtime.importlib.import_module

    def no_mujoco_warp(name, *args):
        if name == "mujoco_warp":
            raise ImportError("No module named 'mujoco_warp'")
        return real_import(name, *args)

    monkeypatch.setattr(warp_runtime.importlib, "import_module", no_mujoco_warp)
    with pytest.raises(ImportError, match=r"mujoco-warp and warp-lang.*pip install 'rlplast\[gpu\]'"):
        make_vec_env(EnvConfig(), num_runs=1, backend="warp", device="cpu")
