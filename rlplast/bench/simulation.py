"""Simulator throughput, measured side by side: raw ``mj_step``, the cpu VecEnv, the Gymnasium wrapper.

On one task (``--env-id``, default Ant-v5; any id of rlplast.envs.tasks):

* ``raw_mj_step``: the ceiling. The VecEnv's N models, stepped from copies of its states with the
  same actions by ``mj_step(nstep=frame_skip)`` in a tight loop, split over the same threads in
  fixed chunks with no synchronisation between steps; no observation, reward, reset. Hopper,
  Walker2d and Humanoid do not end episodes when the body falls here (``terminate_when_unhealthy:
  false``; Ant, which random actions rarely fell, keeps its settings): random actions fell them in
  about 20 steps, and a fallen body, which raw keeps simulating, costs more than the fresh one a
  reset gives, so raw and the VecEnv would not simulate the same states.
* ``cpu_vecenv``: ``make_vec_env(backend="cpu")`` stepped with random actions (observation, reward,
  autoreset, friction schedule, torch tensors in and out).
* ``gym_wrapper``: N Gymnasium envs with the friction wrapper (``rlplast/SlipperyAnt-v0`` on Ant)
  stepped one by one in a plain Python loop.

The variants run interleaved, ``repeats`` times, so that load from other processes on a shared
machine hits them alike; ratios are taken within each repeat, then summarised.

Run: ``python -m rlplast.bench.simulation --num-envs 64 --steps 200 --threads 2 --repeats 5``
(``--envs-per-run 8``: 8 runs of 8 envs instead of 64 runs of one env).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
import mujoco
import numpy as np
import torch

import rlplast  # noqa: F401  (registers the ids)
from rlplast.bench import Timer
from rlplast.envs.cpu_mujoco import available_cores
from rlplast.envs.factory import make_vec_env
from rlplast.envs.friction import ChangingFriction
from rlplast.envs.tasks import task_class
from rlplast.envs.vec import ANT_IDS, EnvConfig


def bench_kwargs(env_id: str) -> dict[str, bool]:
    """The env's keyword arguments here: no episode end at a fall, but on Ant (see the docstring)."""
    falls_end = "terminate_when_unhealthy" in task_class(env_id).Spec.model_fields and env_id not in ANT_IDS
    return {"terminate_when_unhealthy": False} if falls_end else {}


def _vec_and_raw_runners(num_envs: int, envs_per_run: int, threads: int, seed: int, env_id: str = "Ant-v5"):
    """The cpu VecEnv and the raw loop over the same models, starting each repeat from the same states.

    Raw keeps its own MjData, copied from the VecEnv's before each repeat, and applies the same
    actions, so both simulate the same trajectories (until the VecEnv resets an env): the only
    difference is what the VecEnv does besides ``mj_step``.
    """
    num_runs = num_envs // envs_per_run
    cfg = EnvConfig(id=env_id, kwargs=bench_kwargs(env_id), num_threads=threads, envs_per_run=envs_per_run)
    env = make_vec_env(cfg, num_runs=num_runs, backend="cpu")
    frame_skip = env.spec.frame_skip
    env.reset(list(range(seed, seed + num_runs)))
    gen = torch.Generator().manual_seed(seed)
    models = env.models  # read-only while stepping; raw and VecEnv never run at the same time
    datas = [mujoco.MjData(m) for m in models]
    ctrls = [d.ctrl for d in datas]
    bounds = np.linspace(0, num_envs, threads + 1).astype(int)
    chunks = [range(lo, hi) for lo, hi in itertools.pairwise(bounds)]
    pool = ThreadPoolExecutor(threads)
    actions: list[torch.Tensor] = []

    def chunk_loop(chunk: range, ctrl: np.ndarray) -> None:
        step = mujoco.mj_step
        for batch in ctrl:
            for n in chunk:
                ctrls[n][:] = batch[n]
                step(models[n], datas[n], frame_skip)

    def raw(steps: int) -> Timer:
        actions[:] = [torch.rand(num_envs, env.act_dim, generator=gen) * 2 - 1 for _ in range(steps)]
        ctrl = torch.stack(actions).double().numpy()
        for m, src, dst in zip(models, env.datas, datas, strict=True):
            mujoco.mj_copyData(dst, m, src)
        with Timer() as t:
            list(pool.map(chunk_loop, chunks, [ctrl] * len(chunks)))
        return t

    def vec(steps: int) -> Timer:
        with Timer() as t:
            for a in actions[:steps]:
                env.step(a)
        return t

    def close() -> None:
        pool.shutdown()
        env.close()

    return raw, vec, close


def _gym_runner(num_envs: int, seed: int, env_id: str = "Ant-v5"):
    if env_id in ANT_IDS:
        envs = [gym.make("rlplast/SlipperyAnt-v0") for _ in range(num_envs)]
    else:
        envs = [ChangingFriction(gym.make(env_id, **bench_kwargs(env_id))) for _ in range(num_envs)]
    for i, env in enumerate(envs):
        env.reset(seed=seed + i)
    rng = np.random.default_rng(seed)

    def run(steps: int) -> Timer:
        actions = rng.uniform(-1, 1, size=(steps, num_envs, *envs[0].action_space.shape)).astype(np.float32)
        with Timer() as t:
            for batch in actions:
                for env, a in zip(envs, batch, strict=True):
                    _, _, terminated, truncated, _ = env.step(a)
                    if terminated or truncated:
                        env.reset()
        return t

    return run


def _summary(name: str, unit: str, values: list[float], **extra: object) -> dict:
    return {
        "name": name,
        "unit": unit,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        **extra,
    }


def bench_simulation(
    num_envs: int = 64,
    steps: int = 200,
    threads: int | None = None,
    repeats: int = 5,
    seed: int = 0,
    envs_per_run: int = 1,
    env_id: str = "Ant-v5",
    gym_wrapper: bool = True,
) -> list[dict]:
    """Env-steps per second of raw mj_step, the cpu VecEnv and the Gymnasium wrapper, with ratios.

    Args:
        num_envs: N envs in each variant.
        steps: env steps per env per timed repeat (each env step is ``frame_skip`` = 5 mj_steps).
        threads: simulator threads of raw and cpu VecEnv (default: every available core).
        repeats: interleaved timed repeats (after one untimed warm-up of each variant).
        seed: seeds actions and resets.
        envs_per_run: E of the cpu VecEnv (N / E runs, each with its own friction; envs with the
            same friction share a model, so E > 1 is a little faster).
        env_id: the task (an id of rlplast.envs.tasks.TASKS).
        gym_wrapper: measure the Gymnasium wrapper too (the slowest variant).

    Returns:
        Rows ``{"name", "unit", "median", "min", "max", ...}``: ``raw_mj_step``, ``cpu_vecenv``,
        ``gym_wrapper`` in wall-clock env-steps/s; then per-repeat ratios to raw, of wall-clock
        rates (``cpu_vecenv/raw_mj_step``, what a user sees) and of env steps per CPU-second of
        the process (``... (cpu time)``: the cost of the work besides ``mj_step``, which load
        from other processes does not blur).
    """
    if num_envs < 1 or steps < 1 or repeats < 1:
        raise ValueError(f"num_envs, steps and repeats must be >= 1, got {num_envs}, {steps}, {repeats}")
    if envs_per_run < 1 or num_envs % envs_per_run:
        raise ValueError(f"envs_per_run must divide num_envs = {num_envs}, got {envs_per_run}")
    threads = max(1, min(threads or available_cores(), num_envs))
    raw, vec, close = _vec_and_raw_runners(num_envs, envs_per_run, threads, seed, env_id)
    runners = {"raw_mj_step": raw, "cpu_vecenv": vec}
    if gym_wrapper:
        runners["gym_wrapper"] = _gym_runner(num_envs, seed, env_id)
    wall: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    try:
        for run in runners.values():
            run(max(1, steps // 10))  # warm-up: caches, thread start
        for _ in range(repeats):
            for name, run in runners.items():  # raw first: it sets this repeat's actions
                t = run(steps)
                wall[name].append(num_envs * steps / t.wall)
                cpu[name].append(num_envs * steps / t.cpu)
    finally:
        close()
    info = {"num_envs": num_envs, "envs_per_run": envs_per_run, "threads": threads, "steps": steps, "repeats": repeats}
    info["env_id"] = env_id
    rows = [_summary(name, "env-steps/s", values, **info) for name, values in wall.items()]
    for name in [n for n in runners if n != "raw_mj_step"]:
        for clock, rates, suffix in (("wall", wall, ""), ("cpu", cpu, " (cpu time)")):
            ratios = [a / b for a, b in zip(rates[name], rates["raw_mj_step"], strict=True)]
            rows.append(_summary(f"{name}/raw_mj_step{suffix}", "ratio", ratios, clock=clock, **info))
    return rows


def format_rows(rows: list[dict]) -> str:
    """A plain-text table of :func:`bench_simulation` rows."""
    lines = [f"{'name':<37} {'unit':<12} {'median':>12} {'min':>12} {'max':>12}"]
    for r in rows:
        fmt = ".3f" if r["unit"] == "ratio" else ",.0f"
        lines.append(f"{r['name']:<37} {r['unit']:<12} {r['median']:>12{fmt}} {r['min']:>12{fmt}} {r['max']:>12{fmt}}")
    h = rows[0]
    lines.append(
        f"({h['env_id']}, {h['num_envs']} envs, {h['envs_per_run']} per run, {h['threads']} threads, "
        f"{h['steps']} steps x {h['repeats']} repeats)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--envs-per-run", type=int, default=1)
    parser.add_argument("--env-id", default="Ant-v5", help="the task's env id (Ant-v5, Hopper-v5, ...)")
    args = parser.parse_args(argv)
    rows = bench_simulation(
        args.num_envs, args.steps, args.threads, args.repeats, args.seed, args.envs_per_run, args.env_id
    )
    print(format_rows(rows))


if __name__ == "__main__":
    main()
