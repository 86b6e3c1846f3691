"""Planning an experiment: what to train, resume or skip, and conflicts with results on disk.

:func:`plan_experiment` resolves each method's config and checks every run folder already on disk
under ``results/<experiment>/<method>/seed<k>/``: a finished run (done.json) is skipped, an
interrupted one is resumed, and a folder whose saved config differs from the planned one stops the
experiment (or sends it to a new folder), so results of different configs are never mixed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from rlplast.cli_types import format_seeds
from rlplast.compare.experiment import ExperimentConfig
from rlplast.report.aggregate import EXPERIMENT_FILE, load_yaml, read_done_steps

RunStatus = Literal["new", "resume", "done"]


@dataclass
class RunPlan:
    """One seed of one method: its folder and what to do with it."""

    seed: int
    path: Path
    status: RunStatus


@dataclass
class GroupPlan:
    """One method's run group: its resolved config and its runs."""

    method: str
    config: Any
    out_dir: Path
    runs: list[RunPlan]

    @property
    def pending(self) -> list[int]:
        """Seeds still to train (new or resumed), in order."""
        return [r.seed for r in self.runs if r.status != "done"]


@dataclass
class ExperimentPlan:
    """Every run group of an experiment and the folder they write to."""

    experiment: ExperimentConfig
    exp_dir: Path
    groups: list[GroupPlan]


class ConfigConflict(ValueError):
    """A results folder holds runs of another config than the one planned."""


def _run_status(run_dir: Path, steps: int) -> RunStatus:
    """``done`` when done.json says the run reached ``steps``; ``resume`` when the folder has
    anything (an interrupted run, or a finished one to continue to more steps); else ``new``."""
    if (read_done_steps(run_dir) or 0) >= steps:
        return "done"
    return "resume" if run_dir.is_dir() and any(run_dir.iterdir()) else "new"


def run_conflicts(
    exp: ExperimentConfig,
    exp_dir: Path,
    planned: dict[str, dict],
) -> list[str]:
    """Why the runs already in ``exp_dir`` cannot be continued by ``exp`` (empty: they can).

    Compares each existing run's config.yaml (every seed folder of a planned method, since a
    method folder holds runs of one config) with the planned training config of its method
    (``planned``: method -> ``Config.training_dict()``), and the saved experiment.yaml's task, backend and
    overrides with ``exp``'s. Steps may differ: the runner continues finished runs to more
    steps, and a report of fewer steps reads each run's first ``steps``.
    """
    from rlplast.checkpoint import run_config_diffs

    problems = []
    saved = load_yaml(exp_dir / EXPERIMENT_FILE)
    now = exp.model_dump(mode="json")
    for key in ("task", "backend", "overrides"):
        if key in saved and saved[key] != now[key]:
            problems.append(f"{EXPERIMENT_FILE}: {key} is {saved[key]!r} there, {now[key]!r} now")
    for method, want in planned.items():
        # every run of the method folder, not only the planned seeds: a folder holds one config
        for diff, runs in run_config_diffs(exp_dir / method, want).items():
            problems.append(f"{method}/{', '.join(runs)} (saved -> planned): {diff}")
    return problems


def _free_folder(root: Path, name: str, fits: Callable[[Path], bool]) -> Path:
    """``root/name`` if ``fits`` it, else the first of ``name_2``, ``name_3``, ... that does."""
    candidate, k = root / name, 2
    while not fits(candidate):
        candidate, k = root / f"{name}_{k}", k + 1
    return candidate


def plan_experiment(
    exp: ExperimentConfig,
    results_root: Path,
    on_conflict: Literal["error", "new_folder"] = "error",
    load: Callable[[str, str, Sequence[str]], Any] | None = None,
) -> ExperimentPlan:
    """Resolve every method's config and decide, per run, whether to train, resume or skip it.

    Args:
        exp: the experiment.
        results_root: the folder holding experiment folders (``results``).
        on_conflict: when existing runs have another config: ``error`` raises, ``new_folder``
            plans into ``<name>_2`` (or the first free ``<name>_<k>``).
        load: ``load_config(task, method, overrides)``; the project's by default.

    Raises:
        ValueError: an unknown task or method (naming the known ones), or a bad override.
        ConfigConflict: existing runs disagree with the plan and ``on_conflict`` is ``error``.
    """
    if load is None:
        from rlplast.config import load_config as load
    configs = {method: load(exp.task, method, exp.override_args()) for method in exp.methods}
    planned = {method: cfg.training_dict() for method, cfg in configs.items()}  # steps may differ
    home = Path(results_root) / exp.name

    def conflicts(folder: Path) -> list[str]:
        return run_conflicts(exp, folder, planned)

    problems = conflicts(home)
    if problems and on_conflict == "error":
        raise ConfigConflict(
            f"{home} holds runs of another config; refusing to mix them:\n  - "
            + "\n  - ".join(problems)
            + "\nRerun with --on-conflict new-folder, pick another --name, or delete the folder."
        )
    exp_dir = _free_folder(home.parent, exp.name, lambda d: not conflicts(d)) if problems else home
    groups = [
        GroupPlan(
            method=method,
            config=configs[method],
            out_dir=exp_dir / method,
            runs=[RunPlan(s, p, _run_status(p, exp.steps)) for s in exp.seeds for p in [exp_dir / method / f"seed{s}"]],
        )
        for method in exp.methods
    ]
    return ExperimentPlan(experiment=exp, exp_dir=exp_dir, groups=groups)


def write_experiment_file(plan: ExperimentPlan) -> Path:
    """Save the experiment (experiment.yaml) in its folder, keeping the methods and seeds of
    earlier invocations, so ``rlplast plot`` knows the order, the steps and the task."""
    from rlplast.atomic import atomic_write_text

    path = plan.exp_dir / EXPERIMENT_FILE
    saved = load_yaml(path)
    data = plan.experiment.model_dump(mode="json")
    data["name"] = plan.exp_dir.name
    data["methods"] = list(dict.fromkeys([*saved.get("methods", []), *data["methods"]]))
    data["seeds"] = sorted({*saved.get("seeds", []), *data["seeds"]})
    plan.exp_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path


def describe_plan(plan: ExperimentPlan) -> list[tuple[str, str, str, str]]:
    """Rows (method, seeds to train, seeds to resume, seeds done) for a table of the plan."""

    def seeds(group: GroupPlan, status: RunStatus) -> str:
        return format_seeds([r.seed for r in group.runs if r.status == status]) or "-"

    return [(g.method, seeds(g, "new"), seeds(g, "resume"), seeds(g, "done")) for g in plan.groups]
