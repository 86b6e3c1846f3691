"""Evaluating a results folder's trained policies: which runs, at which frictions, and the table.

``evaluate_folder(path, ...)`` finds the runs under an experiment folder, a method folder or a
run folder, loads each run group's checkpoint once, and plays ``episodes`` deterministic episodes
per run and friction (rlplast.evaluation). The rows, one per episode, go to ``evaluation.csv``
beside the results (written atomically); :func:`format_table` summarises them per run and friction.

Frictions are numbers, ``final`` (the friction of the run's last step trained) or ``schedule``
(each value its schedule took over the steps trained: one per piece of a piecewise or cycle
schedule).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np

from rlplast.atomic import atomic_write_text
from rlplast.envs.vec import EnvConfig
from rlplast.evaluation import run_episodes, trained_friction
from rlplast.policy import (
    GaussianActor,
    PolicyNotFound,
    find_group,
    load_run_config,
    read_group_actor,
    seed_of_folder,
)
from rlplast.report.aggregate import seed_dirs

RESULTS_NAME = "evaluation.csv"


@dataclass(frozen=True)
class EpisodeRow:
    """One deterministic episode of one run."""

    method: str
    seed: int
    step: int
    friction: float
    episode: int
    episode_return: float
    length: int


def find_runs(path: Path) -> list[tuple[Path, int]]:
    """``(method folder, seed)`` of every run under ``path``: a run folder, a method folder or an
    experiment folder.

    Raises:
        PolicyNotFound: no run folder there.
    """
    path = Path(path)
    if (seed := seed_of_folder(path)) is not None:
        return [(path.parent, seed)]
    if found := seed_dirs(path):
        return [(path, seed) for seed, _ in found]
    runs = [(m, seed) for m in sorted(p for p in path.glob("*") if p.is_dir()) for seed, _ in seed_dirs(m)]
    if not runs:
        raise PolicyNotFound(f"{path} holds no runs (an experiment, <method> or seed<k> folder of rlplast)")
    return runs


def frictions_of(spec: Sequence[str | float], env_cfg: EnvConfig, seed: int, step: int) -> list[float]:
    """The frictions ``spec`` names for the run seeded ``seed`` that trained ``step`` steps (in order, once each).

    Raises:
        ValueError: ``schedule`` for a schedule without pieces (linear, sine).
    """
    schedule = env_cfg.friction.schedule
    values: list[float] = []
    for item in spec:
        if item == "final":
            values.append(trained_friction(env_cfg, seed, step))
        elif item == "schedule":
            if schedule.kind == "constant":
                values.append(schedule.at(seed, 0))
            elif hasattr(schedule, "every"):
                values += [schedule.at(seed, k * schedule.every) for k in range(max(1, -(-step // schedule.every)))]
            else:
                raise ValueError(
                    f"--friction schedule needs a constant, piecewise or cycle schedule; this run's is "
                    f"{schedule.kind}: give friction values instead"
                )
        else:
            values.append(float(item))
    return list(dict.fromkeys(values))


def evaluate_folder(
    path: Path,
    seeds: Sequence[int] | None,
    episodes: int,
    frictions: Sequence[str | float],
    backend: str = "auto",
    on_skip=print,
) -> tuple[list[EpisodeRow], list[tuple[GaussianActor, EnvConfig, float, int]]]:
    """Evaluate every run under ``path`` (only ``seeds``, if given).

    Returns:
        The episode rows, and per run and friction ``(actor, env config, friction, seed)`` in
        the same order (for a video of one of them).

    Raises:
        PolicyNotFound: no run to evaluate.
    """
    runs = [(m, s) for m, s in find_runs(path) if seeds is None or s in seeds]
    if not runs:
        raise PolicyNotFound(f"{path} holds none of seeds {list(seeds or [])}")
    rows: list[EpisodeRow] = []
    played: list[tuple[GaussianActor, EnvConfig, float, int]] = []
    loaded: dict[Path, tuple] = {}  # checkpoint -> (group actor, step): each group read once
    for method_dir, seed in runs:
        try:
            cfg = load_run_config(method_dir, seed)
            ckpt, group = find_group(method_dir, seed)
        except PolicyNotFound as err:
            on_skip(f"skipped: {err}")
            continue
        if ckpt not in loaded:
            loaded[ckpt] = read_group_actor(ckpt, group, cfg)
        group_actor, step = loaded[ckpt]
        actor = GaussianActor.from_group(group_actor, group.index(seed))
        for friction in frictions_of(frictions, cfg.env, seed, step):
            result = run_episodes(actor, cfg.env, friction, episodes, seed, backend)
            rows += [
                EpisodeRow(method_dir.name, seed, step, friction, e, float(ret), int(length))
                for e, (ret, length) in enumerate(zip(result.returns, result.lengths, strict=True))
            ]
            played.append((actor, cfg.env, friction, seed))
    if not rows:
        raise PolicyNotFound(f"{path}: no run with a checkpoint of rlplast to evaluate")
    return rows, played


def results_path(path: Path) -> Path:
    """Where the rows of an evaluation of ``path`` go by default: ``path/evaluation.csv``."""
    return Path(path) / RESULTS_NAME


def write_rows(path: Path, rows: Sequence[EpisodeRow]) -> None:
    """The rows as CSV (header: the field names, ``return`` for the episode's), atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([f.name.replace("episode_return", "return") for f in fields(EpisodeRow)])
    writer.writerows(astuple(row) for row in rows)
    atomic_write_text(path, text.getvalue())


def format_table(rows: Sequence[EpisodeRow]) -> str:
    """One line per (method, seed, friction): episodes, mean and std of the return, mean length."""
    groups: dict[tuple, list[EpisodeRow]] = {}
    for row in rows:
        groups.setdefault((row.method, row.seed, row.friction), []).append(row)
    header = f"{'method':<16} {'seed':>4} {'step':>10} {'friction':>8} {'episodes':>8} {'return':>20} {'length':>7}"
    lines = [header, "-" * len(header)]
    for (method, seed, friction), group in groups.items():
        returns = np.array([r.episode_return for r in group])
        lengths = np.array([r.length for r in group])
        spread = f"{returns.mean():.1f} +- {returns.std(ddof=1) if len(returns) > 1 else 0.0:.1f}"
        lines.append(
            f"{method:<16} {seed:>4} {group[0].step:>10} {friction:>8.3f} {len(group):>8} {spread:>20} "
            f"{lengths.mean():>7.0f}"
        )
    return "\n".join(lines)
