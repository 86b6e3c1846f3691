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

Run: ``python -m rlplast.bench.warp`` (CUDA: 1024, 4096 and 16384 worlds), or for a functional
check on Warp's CPU device: ``python -m rlplast.bench.warp --device cpu --worlds 4 --steps 5``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from rlplast.envs.vec import EnvConfig
from rlplast.envs.warp_ant import WarpAntVecEnv
from rlplast.envs.warp_runtime import warp_available

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
        ``{"worlds", "sim", "vecenv"}``: the world count and the median env steps/s of each variant.
    """
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
    finally:
        env.close()
    return {"worlds": worlds, **{name: statistics.median(r) for name, r in rates.items()}}


def format_table(rows: Sequence[dict[str, float]], device: str) -> str:
    """A plain-text table of :func:`measure` rows."""
    lines = [
        f"warp backend, Ant-v5, device {device}: env steps per second (median over repeats)",
        f"{'worlds':>8} {'sim':>14} {'vecenv':>14} {'ms/batch step':>14}",
    ]
    for row in rows:
        ms = 1e3 * row["worlds"] / row["sim"]
        lines.append(f"{row['worlds']:>8d} {row['sim']:>14,.0f} {row['vecenv']:>14,.0f} {ms:>14.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: measure the world counts given and print the table."""
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
    rows = [
        measure(n, args.steps, args.repeats, args.device, nconmax=args.nconmax, njmax=args.njmax) for n in args.worlds
    ]
    print(format_table(rows, args.device))


if __name__ == "__main__":
    main()
