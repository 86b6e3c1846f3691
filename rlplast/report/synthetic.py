"""Synthetic results folders in the on-disk format, to test and preview the report without training.

The curves are made up but shaped like the paper's: returns rise, then methods without a
plasticity fix lose return, stable rank and active units as training goes on, and every friction
change knocks the return down for a while. Nothing here is a result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from rlplast.report.aggregate import CONFIG_FILE, DONE_FILE, EXPERIMENT_FILE, FRICTION_TAG, METRICS_FILE, RETURN_TAG

# How fast each made-up method loses plasticity (0: not at all).
DECAY = {"ppo": 1.0, "ppo_tuned": 0.6, "ppo_l2": 0.1, "ppo_cbp": 0.0, "ppo_upgd_protocol": 0.2}


def _friction(seed: int, step: np.ndarray, every: int) -> np.ndarray:
    values = np.exp(np.random.default_rng(seed).uniform(np.log(0.02), np.log(2.0), int(step.max()) // every + 2))
    return np.where(step < every, 1.0, values[step // every])


def write_synthetic_run(
    run_dir: Path,
    method: str,
    seed: int,
    steps: int,
    friction_every: int | None = None,
    done: bool = True,
    metric_every: int | None = None,
) -> Path:
    """Write metrics.csv, config.yaml and (if ``done``) done.json for one made-up run.

    Args:
        run_dir: the run folder (created).
        method: shapes the curves (see ``DECAY``; unknown methods decay at 0.5).
        seed: seeds the noise, episode lengths and friction values.
        steps: env steps the run reached.
        friction_every: env steps between friction changes (None: constant friction 1.0).
        done: write done.json.
        metric_every: env steps between plasticity metric rows (default steps / 200).

    Returns:
        ``run_dir``.
    """
    rng = np.random.default_rng(seed * 7919 + sum(map(ord, method)))
    decay = DECAY.get(method, 0.5)
    lengths = rng.integers(200, 1001, size=steps // 200 + 1)
    ends = np.cumsum(lengths)
    ends = ends[ends <= steps]
    frac = ends / steps
    every = friction_every or steps + 1
    since_change = (ends % every) / min(every, steps)
    ret = 3000 * (1 - np.exp(-frac * 8)) * (1 - decay * np.clip(frac * 1.3 - 0.2, 0, 1))
    if friction_every:
        ret *= 1 - 0.5 * decay * np.exp(-since_change * 6)
    # A per-seed offset, so seeds differ as real ones do and the bands have a width.
    ret += rng.normal(0, 150) + rng.normal(0, 250, size=len(ends))
    rows = [(int(s), RETURN_TAG, float(r)) for s, r in zip(ends, ret, strict=True)]
    m_steps = np.arange(metric_every or max(steps // 200, 1), steps + 1, metric_every or max(steps // 200, 1))
    mfrac = m_steps / steps
    noise = rng.normal(0, 1, len(m_steps))
    metrics = {
        "plasticity/actor/stable_rank_pct": 93 - 70 * decay * mfrac * rng.uniform(0.8, 1.2) + 1.5 * noise,
        "plasticity/actor/dormant_fraction": np.clip(0.02 + 0.55 * decay * mfrac + 0.01 * noise, 0, 1),
        "plasticity/actor/weight_magnitude": 0.055 + 0.06 * decay * mfrac - 0.03 * (decay < 0.2) * mfrac,
        FRICTION_TAG: _friction(seed, m_steps, every) if friction_every else np.ones(len(m_steps)),
    }
    rows += [(int(s), tag, float(v)) for tag, values in metrics.items() for s, v in zip(m_steps, values, strict=True)]
    rows.sort(key=lambda r: r[0])
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / METRICS_FILE, "w", encoding="utf-8") as fh:
        fh.write("step,tag,value\n")
        fh.writelines(f"{s},{t},{v!r}\n" for s, t, v in rows)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump({"method": method, "seed": seed, "steps": steps}))
    if done:
        (run_dir / DONE_FILE).write_text(json.dumps({"steps": steps}))
    return run_dir


def write_synthetic_experiment(
    exp_dir: Path,
    methods: Sequence[str],
    seeds: Sequence[int],
    steps: int,
    friction_every: int | None = None,
    task: str = "slippery_ant",
) -> Path:
    """A whole made-up experiment folder: every method x seed run and experiment.yaml."""
    exp_dir = Path(exp_dir)
    for method in methods:
        for seed in seeds:
            write_synthetic_run(exp_dir / method / f"seed{seed}", method, seed, steps, friction_every)
    meta = {"name": exp_dir.name, "task": task, "methods": list(methods), "seeds": list(seeds), "steps": steps}
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))
    return exp_dir
