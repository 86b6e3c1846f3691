"""rlplast's PPO against stable-baselines3's PPO with the same hyperparameters, side by side.

* :func:`measure_ppo_speed`: end-to-end env steps per second on the CPU (simulator, acting,
  updates, and for rlplast its logging, metrics and checkpoint) on a task such as slippery Ant.
  The two trainers alternate ``repeats`` times in one process, so load from other processes hits
  both alike; the ratio is taken within each repeat.
* :func:`compare_learning`: final returns of both after the same number of steps on a task they
  should solve (InvertedPendulum-v5 by default).

Both use the config's numbers: actor and critic MLPs (separate, same widths and activation),
Gaussian policy with state-independent log_std, Adam (lr, betas, eps), rollout length, epochs,
minibatch size, clip, gamma, GAE lambda, advantage normalisation, value coefficient, no entropy
bonus, no gradient clipping (SB3: a huge max_grad_norm), bootstrapped time-limit ends (SB3 does
this too). Differences left: SB3 initialises with torch's default (Kaiming-uniform) rather than
LeCun uniform, clips actions to the action space itself, and steps a Gymnasium env
(``DummyVecEnv``) where rlplast steps its own VecEnv.

Run ``python -m rlplast.bench.ppo --steps 6144 --repeats 3`` for the speed table, or
``python -m rlplast.bench.ppo --learning --steps 150000`` for the learning comparison.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from rlplast.bench import Timer
from rlplast.config import Config, apply_override, deep_merge, load_config, read_yaml, validate
from rlplast.config_files import resolve
from rlplast.runner import torch_threads, train_group


def sb3_ppo(cfg: Config, seed: int, device: str = "cpu"):
    """A stable-baselines3 PPO with ``cfg``'s network and hyperparameters on ``cfg``'s env (one env).

    The same constructor as ``rlplast train --agent sb3`` (rlplast.sb3.model), so the speed and
    learning comparisons measure the SB3 agent that the reference rows use.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlplast.sb3.env import make_env
    from rlplast.sb3.model import build_sb3_ppo

    return build_sb3_ppo(cfg, DummyVecEnv([lambda: make_env(cfg.env, seed)]), seed, device)


Episodes = list[tuple[int, float]]  # (env step at the episode's end, return)


def _episode_returns(run_dir: Path) -> Episodes:
    with (run_dir / "metrics.csv").open() as f:
        return [(int(r["step"]), float(r["value"])) for r in csv.DictReader(f) if r["tag"] == "charts/episodic_return"]


def steps_to_reach(episodes: Episodes, threshold: float, window: int = 10) -> int | None:
    """The first env step at which the mean return of the last ``window`` episodes is >= threshold."""
    returns = [ret for _, ret in episodes]
    for i in range(window - 1, len(episodes)):
        if sum(returns[i - window + 1 : i + 1]) / window >= threshold:
            return episodes[i][0]
    return None


def run_rlplast(cfg: Config, seeds: list[int], steps: int, backend: str = "cpu") -> tuple[Timer, Episodes]:
    """Train one run group end to end (setup, logging, checkpoint included) in a temporary folder.

    Returns:
        The timer (``wall``, ``cpu`` seconds) and the first run's episode returns.
    """
    with tempfile.TemporaryDirectory() as tmp:
        with Timer() as timer:
            train_group(cfg, seeds, Path(tmp), steps, backend=backend, device="cpu")
        return timer, _episode_returns(Path(tmp) / f"seed{seeds[0]}")


def run_sb3(cfg: Config, seed: int, steps: int) -> tuple[Timer, Episodes]:
    """Build and train SB3's PPO for ``steps``: the timer and the episodes."""
    with Timer() as timer:
        model = sb3_ppo(cfg, seed)
        model.learn(total_timesteps=steps)
    monitor = model.get_env().envs[0]
    ends = itertools.accumulate(monitor.get_episode_lengths())
    return timer, [(int(end), float(ret)) for end, ret in zip(ends, monitor.get_episode_rewards(), strict=True)]


def measure_ppo_speed(
    task: str = "slippery_ant",
    method: str = "ppo",
    steps: int = 3 * 2048,
    repeats: int = 3,
    threads: int | None = None,
    group: int = 1,
    backend: str = "cpu",
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    """End-to-end CPU SPS of rlplast's PPO and SB3's, alternating.

    Args:
        task, method, overrides: the config (``load_config``); the reference hyperparameters by default.
        steps: env steps per run per measurement (whole updates of agent.steps_per_update).
        repeats: alternations; ratios are taken within each.
        threads: torch threads for both (None: torch's default). rlplast's runner still acts on
            ``run.act_threads`` (1 by default): that is part of what is measured.
        group: rlplast trains this many seeds as one run group (SPS counts all their steps);
            SB3 trains one run.
        backend: rlplast's VecEnv backend.

    Returns:
        Per repeat, SPS by wall clock and by process CPU time (all threads) of each trainer and
        their ratios (rlplast / SB3), plus the medians of the ratios.
    """
    cfg = load_config(task, method, overrides)
    # one untimed tiny run of both first: imports and first-call costs stay out of the first repeat
    tiny = load_config(task, method, (*overrides, "agent.steps_per_update=64", "agent.minibatches=4", "agent.epochs=1"))
    out: dict[str, Any] = {"task": task, "steps": steps, "group": group, "threads": threads or torch.get_num_threads()}
    rows: dict[str, list[float]] = {
        key: [] for key in ("rlplast_sps", "sb3_sps", "ratio", "rlplast_cpu_sps", "sb3_cpu_sps", "cpu_ratio")
    }
    with torch_threads(threads):
        run_rlplast(tiny, [0], 64, backend)
        run_sb3(tiny, 0, 64)
        for rep in range(repeats):
            ours, _ = run_rlplast(cfg, list(range(rep * group, (rep + 1) * group)), steps, backend)
            theirs, _ = run_sb3(cfg, rep, steps)
            for suffix, a, b in (("", ours.wall, theirs.wall), ("cpu_", ours.cpu, theirs.cpu)):
                rows[f"rlplast_{suffix}sps"].append(steps * group / a)
                rows[f"sb3_{suffix}sps"].append(steps / b)
                rows[f"{suffix}ratio"].append(steps * group / a / (steps / b))
    medians = {
        "median_ratio": statistics.median(rows["ratio"]),
        "median_cpu_ratio": statistics.median(rows["cpu_ratio"]),
    }
    return out | rows | medians


def compare_learning(
    env_id: str = "InvertedPendulum-v5",
    steps: int = 150_000,
    seed: int = 0,
    last: int = 20,
    threshold: float = 950.0,
    overrides: tuple[str, ...] = (),
    threads: int | None = None,
) -> dict[str, Any]:
    """Both trainers on ``env_id`` (constant friction, the PPO defaults) for ``steps`` env steps.

    Returns:
        For each: the mean return of its ``last`` finished episodes, the env step at which the
        mean of 10 consecutive episodes first reached ``threshold`` (None if never), its episode
        count and wall seconds.
    """
    # the PPO defaults on env_id, labelled with it (a task file would carry its own env and name)
    env = {"id": env_id, "friction": {"schedule": {"kind": "constant", "value": 1.0}}}
    data = deep_merge(read_yaml(resolve("ppo", "methods")), {"task": env_id, "method": "ppo", "env": env})
    for override in overrides:
        apply_override(data, override)
    cfg = validate(data, source=f"ppo on {env_id}")
    with torch_threads(threads):
        runs = {"rlplast": run_rlplast(cfg, [seed], steps, backend="gym"), "sb3": run_sb3(cfg, seed, steps)}
    out: dict[str, Any] = {"env_id": env_id, "steps": steps, "seed": seed, "threshold": threshold}
    for name, (timer, episodes) in runs.items():
        tail = [ret for _, ret in episodes[-last:]]
        out[f"{name}_return"] = sum(tail) / max(len(tail), 1)
        out[f"{name}_steps_to_threshold"] = steps_to_reach(episodes, threshold)
        out[f"{name}_episodes"] = len(episodes)
        out[f"{name}_seconds"] = timer.wall
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learning", action="store_true", help="compare learning instead of speed")
    parser.add_argument("--task", default="slippery_ant")
    parser.add_argument("--env-id", default="InvertedPendulum-v5")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--group", type=int, default=1, help="rlplast trains this many seeds as one group")
    args = parser.parse_args()
    if args.learning:
        result = compare_learning(args.env_id, args.steps or 150_000, args.seed, threads=args.threads)
    else:
        result = measure_ppo_speed(
            args.task, steps=args.steps or 3 * 2048, repeats=args.repeats, threads=args.threads, group=args.group
        )
    for key, value in result.items():
        digits = 3 if "ratio" in key else 1
        shown = [f"{v:.{digits}f}" for v in value] if isinstance(value, list) else value
        print(f"{key:>18}: {shown}")


if __name__ == "__main__":
    main()
