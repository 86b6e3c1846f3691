"""Cost of the plasticity metrics relative to training, per 1000 env steps of each run.

The tracker's cost is ``1000 * observe + compute * 1000 / interval + rank compute * 1000 /
rank_interval``, timed on the actor and critic MLPs of rlplast's PPO. Training is that PPO's own
network work per ``steps`` env steps: ``steps`` acting passes (``PPO.act``, one env per run)
and one ``PPO.update()`` (``epochs * steps / minibatch`` minibatch steps). The simulator is left
out, so the real share of a training run is lower.

Run ``python -m rlplast.bench.metrics`` for a table; :func:`measure_metrics_overhead` returns
the rows as dicts.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rlplast.agents.networks import Actor, Critic
from rlplast.agents.ppo import PPO, PPOConfig
from rlplast.tracking import MetricsConfig, PlasticityTracker


@dataclass(frozen=True)
class PPOShape:
    """Network and update sizes of the PPO-sized loop (defaults: PROTOCOL.md section 2)."""

    obs_dim: int = 27
    act_dim: int = 8
    width: int = 256
    steps: int = 2048  # env steps per run per update; also the observe timing's length
    epochs: int = 10
    minibatch: int = 128


Clock = Callable[[], float]


def _timed(clock: Clock, device: torch.device, fn: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    """Seconds of ``fn(*args, **kwargs)`` on ``clock``, the device's queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = clock()
    fn(*args, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return clock() - start


def ppo_agent(runs: int, shape: PPOShape, device: torch.device) -> PPO:
    """rlplast's PPO of ``shape`` (the PPO defaults otherwise: Adam, no plug-ins) for ``runs`` runs."""
    cfg = PPOConfig(
        hidden=[shape.width] * 2,
        steps_per_update=shape.steps,
        epochs=shape.epochs,
        minibatches=shape.steps // shape.minibatch,
    )
    return PPO(cfg, shape.obs_dim, shape.act_dim, list(range(runs)), device=device)


def _ppo_iteration(agent: PPO, observations: Sequence[Tensor]) -> None:
    """One PPO iteration's network work: an acting pass per env step (one env per run), then
    ``PPO.update()``. ``observations``: one ``[R, obs_dim]`` per step of the rollout."""
    never = torch.zeros(agent.num_runs, dtype=torch.bool, device=observations[0].device)
    reward = torch.ones(agent.num_runs, device=observations[0].device)
    with torch.inference_mode():
        for obs in observations:
            agent.act(obs)
            agent.process_step(reward, never, never, obs)
        agent.compute_returns(observations[0])
    agent.update()


def _observe_seconds(clock: Clock, tracker: PlasticityTracker, actor: Actor, critic: Critic, steps: int) -> float:
    """Time of ``steps`` observe() calls on the features of real acting passes.

    The passes run first (not timed); the timed loop then hands each step's features back to the
    networks and observes them. One clock reading around the whole loop, because a CPU-time
    reading costs about a microsecond, as much as observe() itself. observe() launches no device
    work (it keeps references), so no synchronisation is needed.
    """
    runs, obs_dim = actor.log_std.shape[0], actor.mlp.layers[0].in_features
    recorded = []
    with torch.inference_mode():
        for _ in range(steps):
            obs = torch.randn(runs, 1, obs_dim, device=actor.log_std.device)
            actor(obs)
            critic(obs)
            recorded.append((actor.mlp.features, critic.mlp.features))
    # vars(): a plain attribute write, not nn.Module.__setattr__'s checks, which cost more than observe
    actor_vars, critic_vars = vars(actor.mlp), vars(critic.mlp)
    start = clock()
    for actor_features, critic_features in recorded:
        actor_vars["features"], critic_vars["features"] = actor_features, critic_features
        tracker.observe()
    return clock() - start


def measure_metrics_overhead(
    num_runs: Sequence[int] = (1, 8),
    cfg: MetricsConfig | None = None,
    shape: PPOShape | None = None,
    repeats: int = 3,
    device: str = "cpu",
    cpu_time: bool = False,
) -> list[dict[str, float]]:
    """Time the tracker and a PPO-sized training loop for each run-group size.

    Each repeat times training, observe and both computes in turn, and each keeps its least time
    over the repeats, so that a busy spell on a shared machine skews neither side of the ratio.

    Args:
        num_runs: run-group sizes R to measure.
        cfg: metrics config (intervals, window); default ``MetricsConfig()``.
        shape: network and update sizes; default ``PPOShape()`` (obs 27 -> 256 -> 256 -> 8 / 1).
        repeats: timings keep the least of this many repeats.
        device: ``cpu`` or ``cuda``.
        cpu_time: time with this thread's CPU time on one torch thread instead of wall time on
            the default threads, so that other processes on a busy machine slow neither side
            (CPU only).

    Returns:
        One dict per R: ``num_runs``; ``observe_us`` (per env step); ``compute_ms`` and
        ``rank_compute_ms`` (per call, full window); ``metrics_ms_per_1000`` and
        ``train_ms_per_1000`` (per 1000 env steps of each run); ``overhead_pct`` (their ratio).
    """
    cfg, shape, dev = cfg or MetricsConfig(), shape or PPOShape(), torch.device(device)
    if cpu_time and dev.type != "cpu":
        raise ValueError(f"cpu_time needs device='cpu', got {device!r}")
    threads = torch.get_num_threads()
    if cpu_time:
        torch.set_num_threads(1)  # thread_time counts this thread only
    try:
        clock = time.thread_time if cpu_time else time.perf_counter
        return [_measure_group(clock, dev, runs, cfg, shape, repeats) for runs in num_runs]
    finally:
        torch.set_num_threads(threads)


def _measure_group(
    clock: Clock, dev: torch.device, runs: int, cfg: MetricsConfig, shape: PPOShape, repeats: int
) -> dict[str, float]:
    """One row of :func:`measure_metrics_overhead`."""
    agent = ppo_agent(runs, shape, dev)
    actor, critic = agent.actor, agent.critic
    observations = list(torch.randn(shape.steps, runs, shape.obs_dim, device=dev))
    tracker = PlasticityTracker(cfg, {"actor": actor.mlp, "critic": critic.mlp}, runs)
    _observe_seconds(clock, tracker, actor, critic, cfg.window)  # a full window for compute
    best = dict.fromkeys(("train", "observe", "compute", "rank_compute"), float("inf"))
    for _ in range(repeats):
        times = {
            "train": _timed(clock, dev, _ppo_iteration, agent, observations) / shape.steps,
            "observe": _observe_seconds(clock, tracker, actor, critic, shape.steps) / shape.steps,
            "compute": _timed(clock, dev, tracker.compute, cheap=True, ranks=False),
            "rank_compute": _timed(clock, dev, tracker.compute, cheap=False, ranks=True),
        }
        best = {k: min(best[k], times[k]) for k in best}
    per_1000 = 1000 * best["observe"] + best["compute"] * 1000 / cfg.interval
    per_1000 += best["rank_compute"] * 1000 / cfg.rank_interval
    return {
        "num_runs": runs,
        "observe_us": best["observe"] * 1e6,
        "compute_ms": best["compute"] * 1e3,
        "rank_compute_ms": best["rank_compute"] * 1e3,
        "metrics_ms_per_1000": per_1000 * 1e3,
        "train_ms_per_1000": best["train"] * 1000 * 1e3,
        "overhead_pct": 100 * per_1000 / (best["train"] * 1000),
    }


def format_rows(rows: list[dict[str, float]]) -> str:
    """The rows as a plain text table."""
    keys = list(rows[0])
    cell = lambda v: f"{v:>20.3f}" if isinstance(v, float) else f"{v:>20}"  # noqa: E731
    lines = ["  ".join(f"{k:>20}" for k in keys)]
    lines += ["  ".join(cell(row[k]) for k in keys) for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m rlplast.bench.metrics [--cpu-time] [--repeats N]``: print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-time", action="store_true", help="thread CPU time on one thread (busy machines)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device = "cpu" if args.cpu_time or not torch.cuda.is_available() else "cuda"
    clock = "thread CPU time, 1 thread" if args.cpu_time else f"wall time, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {device}, {clock}")
    print(format_rows(measure_metrics_overhead(repeats=args.repeats, device=device, cpu_time=args.cpu_time)))


if __name__ == "__main__":
    main()
