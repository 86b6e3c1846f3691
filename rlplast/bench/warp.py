"""GPU simulation throughput of the warp backend (Ant-v5 on mujoco_warp), in env steps per second.

Two numbers per world count, both after warm-up (kernel compile and graph capture excluded):

* ``sim``: ``WarpAntVecEnv.advance``, the captured env step replayed back to back (frame_skip
  physics steps, contact forces, reward, termination, autoreset, the host's schedule evaluation):
  what the simulator sustains.
* ``vecenv``: ``WarpAntVecEnv.step`` with fixed actions: adds the action copy and the output
  copies of the VecEnv contract.

Each repeat times ``steps`` env steps between two device syncs; the table gives the median over
repeats of env steps per second (worlds x env steps / seconds). Goal on an H100: at least 1M env
steps/s of ``sim`` at 4096 worlds.

On CUDA the table also gives the GPU memory of each world count: torch's peak allocation while
it ran (the env's torch buffers) and what Warp's memory pool holds after the runs (mujoco_warp's
model and data); the two allocators are separate, so the env's total is their sum.

Run: ``python -m rlplast.bench.warp`` (CUDA: 1024, 4096 and 16384 worlds), or for a functional
check on Warp's CPU device: ``python -m rlplast.bench.warp --device cpu --worlds 4 --steps 5``.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from rlplast.envs.vec import EnvConfig
from rlplast.envs.warp_ant import WarpAntVecEnv
from rlplast.envs.warp_runtime import import_warp, warp_available

DEFAULT_WORLDS = (1024, 4096, 16384)


def _timed(run: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` calls of ``run``, between two device syncs."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        run()
    sync(device)
    return time.perf_counter() - start


def _warp_pool_mib(wp_device: str) -> float:
    """MiB in use in Warp's memory pool of ``wp_device``; NaN where it cannot be read (the CPU, a
    device or Warp version without pools)."""
    try:
        wp = import_warp()[0]
        return wp.get_mempool_used_mem_current(wp_device) / 2**20
    except Exception:  # not an error of the benchmark: the column says n/a
        return math.nan


def measure(
    worlds: int,
    steps: int = 200,
    repeats: int = 3,
    device: str = "cuda",
    warmup: int = 3,
    nconmax: int | None = None,
    njmax: int | None = None,
) -> dict[str, float]:
    """Throughput of ``worlds`` Ant worlds (one run of ``worlds`` envs, the default schedule).

    Returns:
        ``{"worlds", "sim", "vecenv", "torch_mib", "warp_mib"}``: the world count, the median env
        steps/s of each variant, and on CUDA the GPU memory (see the module doc; NaN on the CPU).
    """
    cuda = torch.device(device).type == "cuda"
    if cuda:  # the previous world count's env is gone: the peak is this one's
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    cfg = EnvConfig(envs_per_run=worlds)
    env = WarpAntVecEnv(cfg, num_runs=1, device=device, nconmax=nconmax, njmax=njmax)
    try:
        env.reset([0])
        gen = torch.Generator().manual_seed(0)
        actions = (torch.rand(env.num_envs, env.act_dim, generator=gen) * 2 - 1).to(env.device)
        for _ in range(warmup):  # compile, then capture
            env.step(actions)
        variants = {"sim": env.advance, "vecenv": lambda: env.step(actions)}
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(repeats):  # interleaved, so load from elsewhere hits both alike
            for name, run in variants.items():
                rates[name].append(worlds * steps / _timed(run, steps, env.device))
        env.check_device()  # an overflow during the runs would invalidate them
        torch_mib = torch.cuda.max_memory_allocated(env.device) / 2**20 if cuda else math.nan
        warp_mib = _warp_pool_mib(env.wp_device) if cuda else math.nan
    finally:
        env.close()
    medians = {name: statistics.median(r) for name, r in rates.items()}
    return {"worlds": worlds, **medians, "torch_mib": torch_mib, "warp_mib": warp_mib}


def table_header(device: str) -> str:
    """The two header lines of :func:`format_table`."""
    return (
        f"warp backend, Ant-v5, device {device}: env steps per second (median over repeats)\n"
        f"{'worlds':>8} {'sim':>14} {'vecenv':>14} {'ms/batch step':>14} {'torch MiB':>10} {'Warp MiB':>10}"
    )


def format_row(row: dict[str, float]) -> str:
    """One :func:`measure` row as a line of the table (memory ``n/a`` where not measured)."""
    ms = 1e3 * row["worlds"] / row["sim"]
    mib = [f"{m:>10,.0f}" if not math.isnan(m) else f"{'n/a':>10}" for m in (row["torch_mib"], row["warp_mib"])]
    return f"{row['worlds']:>8d} {row['sim']:>14,.0f} {row['vecenv']:>14,.0f} {ms:>14.3f} {' '.join(mib)}"


def format_table(rows: Sequence[dict[str, float]], device: str) -> str:
    """A plain-text table of :func:`measure` rows."""
    return "\n".join([table_header(device), *map(format_row, rows)])


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: measure the world counts given and print the table, a row as soon as it is
    measured (a run stopped by a time limit keeps the rows it finished)."""
    parser = argparse.ArgumentParser(prog="python -m rlplast.bench.warp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=list(DEFAULT_WORLDS))
    parser.add_argument("--steps", type=int, default=200, help="env steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda", help="cuda[:k], or cpu (Warp's CPU device; tiny sizes only)")
    parser.add_argument("--nconmax", type=int, default=None, help="contacts per world (default: Ant's worst case)")
    parser.add_argument("--njmax", type=int, default=None, help="constraint rows per world (default: worst case)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not warp_available():
        parser.error("no CUDA GPU with mujoco_warp here (pip install 'rlplast[gpu]'); try --device cpu --worlds 4")
    cuda = args.device.startswith("cuda")
    print(table_header(f"{args.device} ({torch.cuda.get_device_name(args.device)})" if cuda else args.device))
    for n in args.worlds:
        row = measure(n, args.steps, args.repeats, args.device, nconmax=args.nconmax, njmax=args.njmax)
        print(format_row(row), flush=True)  # the header goes out with it


if __name__ == "__main__":
    main()
