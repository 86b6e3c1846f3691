"""Warp kernels of the GPU Ant: actions in, Ant-v5's reward, termination and observation out,
same-step autoreset with reset noise, and per-world friction written into the model.

One thread per world n (N = R runs x E envs, run-major, so run r = n // E). Kernels take the
persistent buffers grouped in the structs :class:`Worlds` and :class:`StepOut`, which live as long
as the env, so a captured graph of them stays valid; the friction targets ``Worlds.target [R]``
are the one input the host rewrites between launches.

The math follows ``gymnasium.envs.mujoco.ant_v5.AntEnv``:

* reward = forward_weight * (x_after - x_before) / dt + healthy_reward * healthy
  - ctrl_weight * |a|^2 - contact_weight * |clip(cfrc_ext[1:], lo, hi)|^2, with x the main body's
  ``xpos`` (as left by the integrator, like ``data.body(...).xpos`` after ``mj_step``) and ``a``
  the action as given (MuJoCo clamps ``ctrl`` to ``ctrlrange`` itself, the cost does not).
* healthy: qpos and qvel finite and z_min <= torso z <= z_max; terminated = not healthy (when
  ``terminate_when_unhealthy``). As on the CPU backend, a NaN/inf in the state, the contact
  forces or the reward always terminates, is counted, and gives reward 0; observation entries
  that are NaN (or inf, outside the clipped forces) are written as 0.
* reset: qpos = qpos0 + U(-s, s), qvel = s * N(0, 1), warm start and time zeroed; the reset
  observation has zero contact forces, as after Gymnasium's ``reset`` (``mj_forward`` does not
  compute ``cfrc_ext``).
"""

from __future__ import annotations

import warp as wp


@wp.struct
class AntTask:
    """Ant-v5's constants, as one kernel argument.

    Attributes:
        dt: env step duration (timestep x frame_skip).
        root_qadr: qpos address of the main body's free joint (its xy after a reset is the body's xpos).
        main_body: body whose x velocity is rewarded.
        qpos_start: first qpos entry observed (2 when x, y are excluded).
        include_forces: 1 to append clip(cfrc_ext[1:]) to the observation.
        adopt_at_episode_end: 1 if a world takes its run's target friction when its episode ends.
    """

    dt: float
    forward_weight: float
    ctrl_weight: float
    contact_weight: float
    healthy_reward: float
    z_min: float
    z_max: float
    terminate_unhealthy: int
    force_lo: float
    force_hi: float
    noise_scale: float
    max_steps: int
    envs_per_run: int
    root_qadr: int
    main_body: int
    qpos_start: int
    include_forces: int
    adopt_at_episode_end: int


@wp.struct
class Worlds:
    """Per-world state (N worlds) that persists across steps; simulator arrays are mujoco_warp's.

    Attributes:
        qpos0: ``[nq]`` the model's reference pose. rng_key: ``[N]`` reset-noise stream keys.
        reset_count: ``[N]`` resets so far (the noise stream's offset).
        qpos, qvel, qacc_warmstart: ``[N, nq]``, ``[N, nv]``, ``[N, nv]``. sim_time: ``[N]``.
        x_prev: ``[N]`` main body's xy after the previous step (or reset), "x before".
        ep_len, ep_ret: ``[N]`` running episode length and return.
        target: ``[R]`` each run's scheduled friction. friction: ``[N]`` each world's friction.
        friction_geoms: ``[G]`` geoms the schedule sets. geom_friction: ``[N, ngeom]`` the model's.
        nonfinite: ``[N]`` resets caused by a NaN/inf state.
    """

    qpos0: wp.array[float]
    rng_key: wp.array[int]
    reset_count: wp.array[int]
    qpos: wp.array2d[float]
    qvel: wp.array2d[float]
    qacc_warmstart: wp.array2d[float]
    sim_time: wp.array[float]
    x_prev: wp.array[wp.vec2]
    ep_len: wp.array[int]
    ep_ret: wp.array[float]
    target: wp.array[float]
    friction: wp.array[float]
    friction_geoms: wp.array[int]
    geom_friction: wp.array2d[wp.vec3]
    nonfinite: wp.array[int]


@wp.struct
class StepOut:
    """What a step returns: obs and final_obs ``[N, obs_dim]``; the rest ``[N]``."""

    obs: wp.array2d[float]
    final_obs: wp.array2d[float]
    reward: wp.array[float]
    terminated: wp.array[wp.bool]
    truncated: wp.array[wp.bool]
    episode_return: wp.array[float]
    episode_length: wp.array[int]


@wp.func
def finite_or_zero(x: float) -> float:
    if wp.isfinite(x):
        return x
    return 0.0


@wp.func
def clip_or_zero(x: float, lo: float, hi: float) -> float:
    """clip(x, lo, hi), and 0 for NaN (as np.clip then nan_to_num on the CPU backend)."""
    if wp.isnan(x):
        return 0.0
    return wp.clamp(x, lo, hi)


@wp.func
def write_obs(
    task: AntTask,
    n: int,
    qpos: wp.array2d[float],
    qvel: wp.array2d[float],
    cfrc_ext: wp.array2d[wp.spatial_vector],
    zero_forces: bool,
    obs: wp.array2d[float],
):
    """obs[n] = [qpos[qpos_start:], qvel, clip(cfrc_ext[1:]).flatten()] (forces 0 if zero_forces)."""
    k = wp.int32(0)  # dynamic: mutated in loops
    for i in range(task.qpos_start, qpos.shape[1]):
        obs[n, k] = finite_or_zero(qpos[n, i])
        k += 1
    for i in range(qvel.shape[1]):
        obs[n, k] = finite_or_zero(qvel[n, i])
        k += 1
    if task.include_forces != 0:
        for b in range(1, cfrc_ext.shape[1]):
            f = cfrc_ext[n, b]
            for j in range(6):
                value = wp.float32(0.0)
                if not zero_forces:
                    value = clip_or_zero(f[j], task.force_lo, task.force_hi)
                obs[n, k] = value
                k += 1


@wp.func
def set_friction(n: int, value: float, worlds: Worlds):
    """World n's friction = value: the sliding coefficient of the schedule's geoms."""
    worlds.friction[n] = value
    for i in range(worlds.friction_geoms.shape[0]):
        g = worlds.friction_geoms[i]
        f = worlds.geom_friction[n, g]
        worlds.geom_friction[n, g] = wp.vec3(value, f[1], f[2])


@wp.func
def new_episode(task: AntTask, n: int, worlds: Worlds, cfrc_ext: wp.array2d[wp.spatial_vector], obs: wp.array2d[float]):
    """Ant-v5's reset of world n (noise from the stream keyed by env key and reset count), its
    first observation into obs[n], and the run's target friction if it changes at episode ends."""
    # a fresh 32-bit PCG state per (env, episode): no draw depends on other worlds or launches
    state = wp.rand_init(worlds.rng_key[n], worlds.reset_count[n])
    worlds.reset_count[n] = worlds.reset_count[n] + 1
    s = task.noise_scale
    for i in range(worlds.qpos.shape[1]):
        worlds.qpos[n, i] = worlds.qpos0[i] + wp.randf(state, -s, s)
    for i in range(worlds.qvel.shape[1]):
        worlds.qvel[n, i] = s * wp.randn(state)
        worlds.qacc_warmstart[n, i] = 0.0
    worlds.sim_time[n] = 0.0
    # a free joint's body sits at its qpos: the xpos that mj_forward would give
    worlds.x_prev[n] = wp.vec2(worlds.qpos[n, task.root_qadr], worlds.qpos[n, task.root_qadr + 1])
    worlds.ep_len[n] = 0
    worlds.ep_ret[n] = 0.0
    if task.adopt_at_episode_end != 0:
        set_friction(n, worlds.target[n // task.envs_per_run], worlds)
    write_obs(task, n, worlds.qpos, worlds.qvel, cfrc_ext, True, obs)


@wp.kernel
def prepare_step(
    task: AntTask,
    actions: wp.array2d[float],
    ctrl: wp.array2d[float],
    ctrl_cost: wp.array[float],
    bad_action: wp.array[int],
):
    """ctrl = actions [N, nu]; ctrl_cost [N] = ctrl_weight * |a|^2 on the unclamped action.

    A NaN/inf action is flagged in ``bad_action [N]`` (the host raises at its next check) and
    simulated as 0, so the world's state stays finite.
    """
    n = wp.tid()
    total = wp.float32(0.0)
    for i in range(actions.shape[1]):
        a = actions[n, i]
        if not wp.isfinite(a):
            bad_action[n] = 1
            a = 0.0
        ctrl[n, i] = a
        total += a * a
    ctrl_cost[n] = task.ctrl_weight * total


@wp.kernel
def finish_step(
    task: AntTask,
    worlds: Worlds,
    xpos: wp.array2d[wp.vec3],
    cfrc_ext: wp.array2d[wp.spatial_vector],
    ctrl_cost: wp.array[float],
    out: StepOut,
):
    """Reward, termination and observation of the step just simulated; reset of ended worlds.

    ``out.final_obs[n]`` is the observation the step produced (before any reset) for every world;
    ``out.obs[n]`` is the same, or the new episode's first observation where the episode ended.
    ``episode_return`` and ``episode_length`` are the ended episode's, 0 elsewhere.
    """
    n = wp.tid()
    qpos = worlds.qpos
    qvel = worlds.qvel
    finite = wp.bool(True)
    for i in range(qpos.shape[1]):
        if not wp.isfinite(qpos[n, i]):
            finite = False
    for i in range(qvel.shape[1]):
        if not wp.isfinite(qvel[n, i]):
            finite = False

    x_after = xpos[n, task.main_body]
    x_velocity = (x_after[0] - worlds.x_prev[n][0]) / task.dt
    z = qpos[n, task.root_qadr + 2]
    healthy = finite and z >= task.z_min and z <= task.z_max

    force_sq = wp.float32(0.0)
    forces_finite = wp.bool(True)
    for b in range(1, cfrc_ext.shape[1]):
        f = cfrc_ext[n, b]
        for j in range(6):
            if wp.isnan(f[j]):
                forces_finite = False
            c = wp.clamp(f[j], task.force_lo, task.force_hi)
            force_sq += c * c

    r = task.forward_weight * x_velocity - ctrl_cost[n] - task.contact_weight * force_sq
    if healthy:
        r += task.healthy_reward
    # as the CPU backend: a NaN/inf state, observation or reward ends the episode with reward 0
    bad = not (finite and forces_finite and wp.isfinite(r))
    if bad:
        r = 0.0
    term = bad or (task.terminate_unhealthy != 0 and not healthy)
    length = worlds.ep_len[n] + 1
    # Gymnasium's TimeLimit: truncated at the limit whether or not the step also terminated
    trunc = length >= task.max_steps

    write_obs(task, n, qpos, qvel, cfrc_ext, False, out.final_obs)
    out.reward[n] = r
    out.terminated[n] = term
    out.truncated[n] = trunc
    out.episode_return[n] = 0.0
    out.episode_length[n] = 0

    if term or trunc:
        out.episode_return[n] = worlds.ep_ret[n] + r
        out.episode_length[n] = length
        if bad:
            worlds.nonfinite[n] = worlds.nonfinite[n] + 1
        new_episode(task, n, worlds, cfrc_ext, out.obs)
    else:
        worlds.ep_len[n] = length
        worlds.ep_ret[n] = worlds.ep_ret[n] + r
        worlds.x_prev[n] = wp.vec2(x_after[0], x_after[1])
        for k in range(out.obs.shape[1]):
            out.obs[n, k] = out.final_obs[n, k]


@wp.kernel
def reset_all(task: AntTask, worlds: Worlds, cfrc_ext: wp.array2d[wp.spatial_vector], obs: wp.array2d[float]):
    """Start a new episode in every world at its run's target friction; obs [N, obs_dim]."""
    n = wp.tid()
    set_friction(n, worlds.target[n // task.envs_per_run], worlds)
    new_episode(task, n, worlds, cfrc_ext, obs)


@wp.kernel
def adopt_target(task: AntTask, worlds: Worlds):
    """Every world takes its run's target friction (``apply: immediate``)."""
    n = wp.tid()
    set_friction(n, worlds.target[n // task.envs_per_run], worlds)


@wp.kernel
def write_friction(worlds: Worlds):
    """geom_friction of every world from worlds.friction (after loading a saved state)."""
    n = wp.tid()
    set_friction(n, worlds.friction[n], worlds)
