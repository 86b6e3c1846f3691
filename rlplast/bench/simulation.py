"""Simulator throughput, measured side by side: raw ``mj_step``, the cpu VecEnv, the Gymnasium wrapper.

* ``raw_mj_step``: the ceiling. N Ant-v5 MjData stepped by ``mj_step(nstep=frame_skip)`` in a
  tight loop, split over the same threads as the VecEnv; no observation, reward or reset.
* ``cpu_vecenv``: ``make_vec_env(backend="cpu")`` stepped with random actions (observation, reward,
  autoreset, friction schedule, torch tensors in and out).
* ``gym_wrapper``: N ``rlplast/SlipperyAnt-v0`` envs stepped one by one in a plain Python loop.

The variants run interleaved, ``repeats`` times, so that load from other processes on a shared
machine hits them alike; ratios are taken within each repeat, then summarised.

Run: ``python -m rlplast.bench.simulation --num-envs 64 --steps 200 --threads 2 --repeats 5``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
import mujoco
import numpy as np
import torch

import rlplast  # noqa: F401  (registers the ids)
from rlplast.envs.cpu_ant import available_cores
from rlplast.envs.vec import EnvConfig, make_vec_env

FRAME_SKIP = 5


def _raw_runner(num_envs: int, threads: int, seed: int):
    """A closure that steps N raw Ant MjData ``steps`` times in ``threads`` threads; returns seconds."""
    env = gym.make("Ant-v5").unwrapped
    rng = np.random.default_rng(seed)
    models = [env.model] * num_envs  # the model is read-only while stepping
    datas = []
    for _ in range(num_envs):
        d = mujoco.MjData(env.model)
        d.ctrl[:] = rng.uniform(-1, 1, env.model.nu)
        datas.append(d)
    bounds = np.linspace(0, num_envs, threads + 1).astype(int)
    chunks = [range(lo, hi) for lo, hi in itertools.pairwise(bounds)]
    pool = ThreadPoolExecutor(threads)

    def chunk_loop(chunk: range, steps: int) -> None:
        step = mujoco.mj_step
        for _ in range(steps):
            for n in chunk:
                step(models[n], datas[n], FRAME_SKIP)

    def run(steps: int) -> float:
        start = time.perf_counter()
        list(pool.map(chunk_loop, chunks, [steps] * len(chunks)))
        return time.perf_counter() - start

    return run, pool.shutdown


def _vec_runner(num_envs: int, threads: int, seed: int):
    cfg = EnvConfig(num_threads=threads)
    env = make_vec_env(cfg, num_runs=num_envs, backend="cpu")
    env.reset(list(range(seed, seed + num_envs)))
    gen = torch.Generator().manual_seed(seed)

    def run(steps: int) -> float:
        actions = [torch.rand(num_envs, env.act_dim, generator=gen) * 2 - 1 for _ in range(steps)]
        start = time.perf_counter()
        for a in actions:
            env.step(a)
        return time.perf_counter() - start

    return run, env.close


def _gym_runner(num_envs: int, seed: int):
    envs = [gym.make("rlplast/SlipperyAnt-v0") for _ in range(num_envs)]
    for i, env in enumerate(envs):
        env.reset(seed=seed + i)
    rng = np.random.default_rng(seed)

    def run(steps: int) -> float:
        actions = rng.uniform(-1, 1, size=(steps, num_envs, 8)).astype(np.float32)
        start = time.perf_counter()
        for batch in actions:
            for env, a in zip(envs, batch, strict=True):
                _, _, terminated, truncated, _ = env.step(a)
                if terminated or truncated:
                    env.reset()
        return time.perf_counter() - start

    return run, lambda: None


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
    num_envs: int = 64, steps: int = 200, threads: int | None = None, repeats: int = 5, seed: int = 0
) -> list[dict]:
    """Env-steps per second of raw mj_step, the cpu VecEnv and the Gymnasium wrapper, with ratios.

    Args:
        num_envs: N envs in each variant.
        steps: env steps per env per timed repeat (each env step is ``frame_skip`` = 5 mj_steps).
        threads: simulator threads of raw and cpu VecEnv (default: every available core).
        repeats: interleaved timed repeats (after one untimed warm-up of each variant).
        seed: seeds actions and resets.

    Returns:
        Rows ``{"name", "unit", "median", "min", "max", ...}``: ``raw_mj_step``, ``cpu_vecenv``,
        ``gym_wrapper`` in env-steps/s, then ``cpu_vecenv/raw_mj_step`` and
        ``gym_wrapper/raw_mj_step`` (per-repeat ratios).
    """
    if num_envs < 1 or steps < 1 or repeats < 1:
        raise ValueError(f"num_envs, steps and repeats must be >= 1, got {num_envs}, {steps}, {repeats}")
    threads = max(1, min(threads or available_cores(), num_envs))
    runners = {
        "raw_mj_step": _raw_runner(num_envs, threads, seed),
        "cpu_vecenv": _vec_runner(num_envs, threads, seed),
        "gym_wrapper": _gym_runner(num_envs, seed),
    }
    rates: dict[str, list[float]] = {name: [] for name in runners}
    try:
        for run, _ in runners.values():
            run(max(1, steps // 10))  # warm-up: caches, thread start, first contacts
        for _ in range(repeats):
            for name, (run, _) in runners.items():
                rates[name].append(num_envs * steps / run(steps))
    finally:
        for _, close in runners.values():
            close()
    info = {"num_envs": num_envs, "threads": threads, "steps": steps, "repeats": repeats}
    rows = [_summary(name, "env-steps/s", values, **info) for name, values in rates.items()]
    for name in ("cpu_vecenv", "gym_wrapper"):
        ratios = [a / b for a, b in zip(rates[name], rates["raw_mj_step"], strict=True)]
        rows.append(_summary(f"{name}/raw_mj_step", "ratio", ratios, **info))
    return rows


def format_rows(rows: list[dict]) -> str:
    """A plain-text table of :func:`bench_simulation` rows."""
    lines = [f"{'name':<26} {'unit':<12} {'median':>12} {'min':>12} {'max':>12}"]
    for r in rows:
        fmt = ".3f" if r["unit"] == "ratio" else ",.0f"
        lines.append(f"{r['name']:<26} {r['unit']:<12} {r['median']:>12{fmt}} {r['min']:>12{fmt}} {r['max']:>12{fmt}}")
    h = rows[0]
    lines.append(f"({h['num_envs']} envs, {h['threads']} threads, {h['steps']} steps x {h['repeats']} repeats)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = bench_simulation(args.num_envs, args.steps, args.threads, args.repeats, args.seed)
    print(format_rows(rows))


if __name__ == "__main__":
    main()
