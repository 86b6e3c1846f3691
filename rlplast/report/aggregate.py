"""Reading an experiment's results folder and putting every run's curves on one step grid.

An experiment folder holds ``<method>/seed<k>/`` run folders, each with ``metrics.csv`` in long
format (``step,tag,value``, read by :mod:`rlplast.report.metrics_csv`), the resolved ``config.yaml``
and ``done.json`` once finished. Nothing here trains or needs torch: plots and reports are redrawn
from these files alone.

Episodic returns arrive at irregular steps (whenever an episode ends), so each run's values are
averaged within the bins of a common step grid before runs are compared or averaged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from rlplast.report.metrics_csv import Series, read_metrics

RETURN_TAG = "charts/episodic_return"
FRICTION_TAG = "env/friction"
METRICS_FILE = "metrics.csv"
DONE_FILE = "done.json"
CONFIG_FILE = "config.yaml"
EXPERIMENT_FILE = "experiment.yaml"

_SEED_DIR = re.compile(r"^seed(\d+)$")


@dataclass
class Run:
    """One run folder (one method, one seed) and the scalars read from it."""

    method: str
    seed: int
    path: Path
    done: bool
    scalars: dict[str, Series] = field(default_factory=dict)

    @property
    def last_step(self) -> int:
        """The largest env step any tag was logged at (0 for an empty run)."""
        return max((int(s.steps[-1]) for s in self.scalars.values() if len(s.steps)), default=0)


@dataclass
class ExperimentResults:
    """Every run of an experiment, grouped by method in display order.

    Attributes:
        path: the experiment folder.
        name: the experiment's name (its folder name unless experiment.yaml says otherwise).
        methods: method names in display order (the experiment file's order when known).
        runs: method -> its runs, sorted by seed.
        total_steps: the planned steps per run (experiment.yaml), else the largest step logged.
        meta: the saved experiment config (experiment.yaml), empty when absent.
    """

    path: Path
    name: str
    methods: list[str]
    runs: dict[str, list[Run]]
    total_steps: int
    meta: dict = field(default_factory=dict)

    def all_runs(self) -> list[Run]:
        """Every run, method by method."""
        return [run for method in self.methods for run in self.runs[method]]

    def has_tag(self, tag: str) -> bool:
        """Whether any run logged ``tag``."""
        return any(tag in run.scalars for run in self.all_runs())


def load_yaml(path: Path) -> dict:
    """A YAML mapping from ``path``, or an empty dict when the file does not exist.

    Raises:
        ValueError: the file is not valid YAML (or not UTF-8); the message names it.
    """
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is damaged, not valid YAML ({err}); restore or delete it") from err
    return data if isinstance(data, dict) else {}


def read_done_steps(run_dir: Path) -> int | None:
    """The env steps a finished run reached (its done.json), or None if it is not finished.

    Raises:
        ValueError: done.json is damaged (not JSON, no step count); the message names it.
    """
    path = Path(run_dir) / DONE_FILE
    if not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["steps"])
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(
            f"{path} is damaged ({type(err).__name__}: {err}); it marks a finished run with its step "
            "count. Restore it, or delete it to resume the run from its checkpoint."
        ) from err


def seed_dirs(method_dir: Path) -> list[tuple[int, Path]]:
    """``(seed, folder)`` of every run folder (``seed<k>``) of a method folder, by seed; none if
    the folder does not exist. Other folders (``seed0.bak``) are not runs."""
    if not Path(method_dir).is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in Path(method_dir).iterdir() if (m := _SEED_DIR.match(p.name)))


def read_run(path: Path, method: str, seed: int, tags: Container[str] | None = None) -> Run:
    """Read one run folder; a folder without metrics.csv yet gives a run with no scalars."""
    metrics = path / METRICS_FILE
    scalars = read_metrics(metrics, tags) if metrics.is_file() else {}
    return Run(method=method, seed=seed, path=path, done=(path / DONE_FILE).is_file(), scalars=scalars)


def _method_order(found: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """Methods in the experiment file's order, then any others found on disk alphabetically."""
    ordered = [m for m in preferred if m in found]
    return ordered + sorted(m for m in found if m not in ordered)


def load_results(exp_dir: Path, tags: Container[str] | None = None) -> ExperimentResults:
    """Read every ``<method>/seed<k>/`` run folder under ``exp_dir``.

    Args:
        exp_dir: the experiment folder (``results/<experiment>``).
        tags: read only these tags (None: all).

    Raises:
        FileNotFoundError: if ``exp_dir`` is missing or holds no run folders.
    """
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise FileNotFoundError(f"no experiment folder at {exp_dir}")
    meta = load_yaml(exp_dir / EXPERIMENT_FILE)
    runs: dict[str, list[Run]] = {}
    for method_dir in sorted(p for p in exp_dir.iterdir() if p.is_dir()):
        found = seed_dirs(method_dir)
        if found:
            runs[method_dir.name] = [read_run(p, method_dir.name, s, tags) for s, p in found]
    if not runs:
        raise FileNotFoundError(f"{exp_dir} holds no run folders (<method>/seed<k>/)")
    methods = _method_order(list(runs), meta.get("methods", []))
    logged = max(run.last_step for method in methods for run in runs[method])
    total = int(meta.get("steps") or 0) or logged
    return ExperimentResults(
        path=exp_dir,
        name=str(meta.get("name", exp_dir.name)),
        methods=methods,
        runs={m: runs[m] for m in methods},
        total_steps=max(total, 1),
        meta=meta,
    )


def step_edges(total_steps: int, num_bins: int) -> np.ndarray:
    """Edges of ``num_bins`` equal bins over [0, total_steps], ``[num_bins + 1]``."""
    if total_steps <= 0 or num_bins <= 0:
        raise ValueError(f"total_steps and num_bins must be positive, got {total_steps} and {num_bins}")
    return np.linspace(0.0, float(total_steps), num_bins + 1)


def bin_series(series: Series, edges: np.ndarray) -> np.ndarray:
    """Mean of the values falling in each bin, ``[len(edges) - 1]``.

    Bins are closed on the right, ``(e_k, e_k+1]``: a value logged at step s summarises what
    happened up to s (an episode that ended at s, a metric window ending at s, an update whose
    rollout ended at s), so a value logged at an edge belongs to the bin that the edge closes
    (values logged at the first edge, step 0, count in the first bin). A bin without values
    between the run's first and last logged step takes the linear interpolation of its
    neighbours' means (a long episode can leave a bin empty); bins before the first or after the
    last logged step are NaN (the run had not got there). Values beyond the last edge (a run
    trained longer than the grid) are left out.
    """
    num_bins = len(edges) - 1
    out = np.full(num_bins, np.nan)
    inside_grid = (series.steps >= edges[0]) & (series.steps <= edges[-1])
    steps, values = series.steps[inside_grid], series.values[inside_grid]
    if len(steps) == 0:
        return out
    idx = np.maximum(np.searchsorted(edges, steps, side="left") - 1, 0)
    sums = np.bincount(idx, weights=values, minlength=num_bins)
    counts = np.bincount(idx, minlength=num_bins)
    filled = counts > 0
    out[filled] = sums[filled] / counts[filled]
    first, last = idx.min(), idx.max()
    inside = np.arange(first, last + 1)
    known = inside[filled[inside]]
    out[inside] = np.interp(inside, known, out[known])
    return out


def binned(runs: Sequence[Run], tag: str, edges: np.ndarray) -> np.ndarray:
    """The binned curve of ``tag`` for each run, ``[len(runs), len(edges) - 1]`` (NaN rows where
    a run did not log it)."""
    empty = Series(np.zeros(0, dtype=np.int64), np.zeros(0))
    return np.stack([bin_series(run.scalars.get(tag, empty), edges) for run in runs])


def change_steps(series: Series) -> np.ndarray:
    """Env steps at which a logged value (e.g. the friction) differs from the previous one."""
    if len(series.values) < 2:
        return np.zeros(0, dtype=np.int64)
    changed = np.flatnonzero(~np.isclose(series.values[1:], series.values[:-1], rtol=1e-9, atol=0.0)) + 1
    return series.steps[changed]
