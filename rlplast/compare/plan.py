"""An experiment: several methods x several seeds on one task, trained as one run group per method.

An experiment file (``configs/experiments/*.yaml``) names the task, the methods, the seeds, the
env steps per run, the simulator backend and dotted config overrides applied to every method.
:func:`plan_experiment` resolves each method's config and checks every run folder already on disk
under ``results/<experiment>/<method>/seed<k>/``: a finished run (done.json) is skipped, an
interrupted one is resumed, and a folder whose saved config differs from the planned one stops the
experiment (or sends it to a new folder), so results of different configs are never mixed.
:func:`run_plan` then trains the pending runs, one run group per method, and shows one progress
display for the whole experiment.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rlplast.cli_types import format_seeds, parse_seeds, parse_steps
from rlplast.report.aggregate import CONFIG_FILE, DONE_FILE, EXPERIMENT_FILE, load_yaml

RunStatus = Literal["new", "resume", "done"]


class ExperimentConfig(BaseModel):
    """One experiment file.

    Attributes:
        name: the results folder name (``results/<name>``).
        task: a task of configs/tasks (e.g. ``slippery_ant``).
        methods: methods of configs/methods, trained in this order (one run group each).
        seeds: run seeds, a list or a string such as ``"0-9"`` or ``"0,3,5"``.
        steps: env steps per run, an integer or a string such as ``"20M"``, ``"2e6"``, ``"300k"``.
        backend: the simulator: ``cpu`` (MuJoCo C), ``warp`` (mujoco_warp on a GPU) or ``gym``
            (the Gymnasium adapter).
        device: where the networks live; ``auto`` is ``cuda`` for the warp backend, else ``cpu``.
        parallel: run groups trained at once; ``auto`` is 1 on the CPU, and on a GPU as many as
            fit ``gpu_memory_per_group_gb`` each into the free memory.
        gpu_memory_per_group_gb: the memory one run group is assumed to need on a GPU.
        overrides: dotted config keys applied to every method, e.g.
            ``{"env.friction.schedule.every": 200000}``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    task: str = Field(min_length=1)
    methods: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    steps: int = Field(gt=0)
    backend: Literal["cpu", "warp", "gym"] = "cpu"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    parallel: int | Literal["auto"] = "auto"
    gpu_memory_per_group_gb: float = Field(4.0, gt=0)
    overrides: dict[str, Any] = Field(default_factory=dict)

    @field_validator("methods", mode="before")
    @classmethod
    def _split_methods(cls, value: Any) -> Any:
        methods = [m.strip() for m in value.split(",")] if isinstance(value, str) else value
        if isinstance(methods, list):
            repeated = sorted({m for m in methods if methods.count(m) > 1})
            if repeated:
                raise ValueError(f"methods repeat {repeated}")
        return methods

    @field_validator("seeds", mode="before")
    @classmethod
    def _parse_seeds(cls, value: Any) -> Any:
        if isinstance(value, str | int) and not isinstance(value, bool):
            return parse_seeds(str(value))
        if isinstance(value, list) and all(isinstance(s, int) for s in value):
            return parse_seeds(",".join(map(str, value)))  # same checks (non-negative, no repeats)
        return value

    @field_validator("steps", mode="before")
    @classmethod
    def _parse_steps(cls, value: Any) -> Any:
        return parse_steps(value) if isinstance(value, str) else value

    @field_validator("parallel")
    @classmethod
    def _positive_parallel(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"parallel must be 'auto' or a positive integer, got {value}")
        return value

    @field_validator("overrides")
    @classmethod
    def _dotted_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not key or any(not part for part in key.split(".")) or "=" in key:
                raise ValueError(f"override key {key!r} must be a dotted config key like 'agent.lr'")
        return value

    def resolved_device(self) -> str:
        """The device the networks train on."""
        if self.device != "auto":
            return self.device
        return "cuda" if self.backend == "warp" else "cpu"

    def override_args(self) -> list[str]:
        """The overrides as ``key=value`` strings for ``load_config`` (values as JSON, which YAML
        reads back unchanged)."""
        return [f"{key}={json.dumps(value)}" for key, value in self.overrides.items()]


def _validation_message(err: ValidationError) -> str:
    """One line per bad field: ``field: problem (got value)``."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown field; allowed: {', '.join(ExperimentConfig.model_fields)}")
        elif e["type"] == "missing":
            lines.append(f"  {key}: required")
        else:
            lines.append(f"  {key}: {e['msg'].removeprefix('Value error, ')} (got {e['input']!r})")
    return "\n".join(lines)


def load_experiment(path: Path | None = None, **changes: Any) -> ExperimentConfig:
    """An experiment from a file, from ``changes`` alone (``path`` None), or a file with
    ``changes`` (e.g. command-line flags; None values are ignored) replacing its fields; changed
    ``overrides`` are added to the file's.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not a YAML mapping or a field is bad (the message names the source
            and each bad field).
    """
    data: dict[str, Any] = {}
    source = "experiment"
    if path is not None:
        path, source = Path(path), str(path)
        if not path.is_file():
            raise FileNotFoundError(f"no experiment file at {path}")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: an experiment file is a YAML mapping with {list(ExperimentConfig.model_fields)}")
    changes = {k: v for k, v in changes.items() if v is not None}
    if isinstance(data.get("overrides"), dict) and "overrides" in changes:
        changes["overrides"] = {**data["overrides"], **changes["overrides"]}  # flags add to the file's
    data.update(changes)
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ValueError(f"invalid {source}:\n{_validation_message(err)}") from None


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


def training_config(config: Any) -> dict:
    """What must agree between a planned run and a saved one: the config minus names and the
    ``run:`` section (steps may differ: the runner continues finished runs to more steps)."""
    return config.training_dict()


def saved_training_config(data: dict) -> dict:
    """:func:`training_config` of a saved config.yaml's contents."""
    from rlplast.config import validate

    return validate(data, source="saved config.yaml").training_dict()


def _run_status(run_dir: Path, steps: int) -> RunStatus:
    """``done`` when done.json says the run reached ``steps``; ``resume`` when the folder has
    anything (an interrupted run, or a finished one to continue to more steps); else ``new``."""
    done = run_dir / DONE_FILE
    if done.is_file() and int(json.loads(done.read_text(encoding="utf-8")).get("steps", 0)) >= steps:
        return "done"
    return "resume" if run_dir.is_dir() and any(run_dir.iterdir()) else "new"


def run_conflicts(
    exp: ExperimentConfig,
    exp_dir: Path,
    planned: dict[str, dict],
    read_saved: Callable[[dict], dict] = saved_training_config,
) -> list[str]:
    """Why the runs already in ``exp_dir`` cannot be continued by ``exp`` (empty: they can).

    Compares each existing run's config.yaml (through ``read_saved``) with the planned config of
    its method (``planned``: method -> dict), and the saved experiment.yaml's task, backend and
    overrides with ``exp``'s. Steps may differ: the runner continues finished runs to more
    steps, and a report of fewer steps reads each run's first ``steps``.
    """
    from rlplast.checkpoint import config_diff

    problems = []
    saved = load_yaml(exp_dir / EXPERIMENT_FILE)
    now = exp.model_dump(mode="json")
    for key in ("task", "backend", "overrides"):
        if key in saved and saved[key] != now[key]:
            problems.append(f"{EXPERIMENT_FILE}: {key} is {saved[key]!r} there, {now[key]!r} now")
    for method, want in planned.items():
        for seed in exp.seeds:
            existing = exp_dir / method / f"seed{seed}" / CONFIG_FILE
            if not existing.is_file():
                continue
            try:
                diff = config_diff(read_saved(load_yaml(existing)), want)
            except ValueError as err:
                diff = [f"unreadable ({err})"]
            if diff:
                more = f" (and {len(diff) - 5} more)" if len(diff) > 5 else ""
                problems.append(f"{method}/seed{seed} (saved -> planned): " + "; ".join(diff[:5]) + more)
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
    resolve: Callable[[Any], dict] = training_config,
    read_saved: Callable[[dict], dict] = saved_training_config,
) -> ExperimentPlan:
    """Resolve every method's config and decide, per run, whether to train, resume or skip it.

    Args:
        exp: the experiment.
        results_root: the folder holding experiment folders (``results``).
        on_conflict: when existing runs have another config: ``error`` raises, ``new_folder``
            plans into ``<name>_2`` (or the first free ``<name>_<k>``).
        load: ``load_config(task, method, overrides)``; the project's by default.
        resolve: a loaded config -> the dict that must match between runs.
        read_saved: a saved config.yaml's contents -> the same kind of dict.

    Raises:
        ValueError: an unknown task or method (naming the known ones), or a bad override.
        ConfigConflict: existing runs disagree with the plan and ``on_conflict`` is ``error``.
    """
    if load is None:
        from rlplast.config import load_config as load
    configs = {method: load(exp.task, method, exp.override_args()) for method in exp.methods}
    planned = {method: resolve(cfg) for method, cfg in configs.items()}
    home = Path(results_root) / exp.name

    def conflicts(folder: Path) -> list[str]:
        return run_conflicts(exp, folder, planned, read_saved)

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
    from rlplast.checkpoint import atomic_write_text

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


# -- training -----------------------------------------------------------------------------------

TrainFn = Callable[..., None]


def parallel_groups(exp: ExperimentConfig, n_groups: int) -> int:
    """How many run groups train at once: ``exp.parallel``, or for ``auto`` one on the CPU and on a
    GPU as many as fit ``gpu_memory_per_group_gb`` each into 90% of the free memory."""
    if n_groups <= 1:
        return 1
    if exp.parallel != "auto":
        return min(exp.parallel, n_groups)
    if not exp.resolved_device().startswith("cuda"):
        return 1
    import torch

    free_bytes, _ = torch.cuda.mem_get_info()
    return max(1, min(n_groups, int(0.9 * free_bytes / 2**30 // exp.gpu_memory_per_group_gb)))


class _QueueProgress:
    """Stands in for the rich display inside a worker process: every call the runner makes on it
    (``add_task``, ``update``, ``console.print``, ...) travels over a queue to the real one."""

    def __init__(self, queue: Any, worker: int):
        self._queue, self._worker, self._next_task = queue, worker, 0
        self.console = _QueueConsole(self)

    def send(self, name: str, args: tuple, kwargs: dict) -> None:
        # The display is cosmetic: a closed queue (the main process stopping) must not stop training.
        with contextlib.suppress(Exception):
            self._queue.put((self._worker, name, args, kwargs))

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        task, self._next_task = self._next_task, self._next_task + 1
        self.send("add_task", (task, *args), kwargs)
        return task

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: self.send(name, args, kwargs)


class _QueueConsole:
    def __init__(self, progress: _QueueProgress):
        self._progress = progress

    def print(self, *args: Any, **kwargs: Any) -> None:
        self._progress.send("console.print", args, kwargs)


class _Overall:
    """The display's first line: env steps per run summed over every method's group."""

    def __init__(self, progress: Any, description: str, total: int):
        self.progress = progress
        self.task = progress.add_task(description, total=total)
        self.completed: dict[int, int] = {}

    def set(self, group: int, completed: int) -> None:
        self.completed[group] = int(completed)
        self.progress.update(self.task, completed=sum(self.completed.values()))


class _GroupProgress:
    """The display as one group's trainer sees it: calls go through, and the steps it reports
    also move the overall line."""

    def __init__(self, progress: Any, overall: _Overall, group: int):
        self._progress, self._overall, self._group = progress, overall, group

    def update(self, task: Any, *args: Any, **kwargs: Any) -> None:
        self._progress.update(task, *args, **kwargs)
        if "completed" in kwargs:
            self._overall.set(self._group, kwargs["completed"])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._progress, name)


def _apply_message(progress: Any, task_ids: dict[tuple[int, int], Any], message: tuple) -> None:
    """Replay a worker's call (from :class:`_QueueProgress`) on the real display."""
    worker, name, args, kwargs = message
    if name == "add_task":
        task_ids[worker, args[0]] = progress.add_task(*args[1:], **kwargs)
    elif name == "console.print":
        progress.console.print(*args, **kwargs)
    elif args and (worker, args[0]) in task_ids:
        getattr(progress, name)(task_ids[worker, args[0]], *args[1:], **kwargs)


def train_worker(train_fn: TrainFn, kwargs: dict, queue: Any, worker: int) -> None:
    """One run group in a worker process (a local one, or a Ray task), reporting progress over
    ``queue`` (anything with ``put``; None: silent)."""
    train_fn(**kwargs, progress=_QueueProgress(queue, worker) if queue is not None else None)


def group_kwargs(plan: ExperimentPlan, group: GroupPlan) -> dict:
    """The trainer's keyword arguments for one run group (all but ``progress``)."""
    exp = plan.experiment
    return {
        "cfg": group.config,
        "seeds": group.pending,
        "out_dir": group.out_dir,
        "steps": exp.steps,
        "backend": exp.backend,
        "device": exp.resolved_device(),
    }


def overall_progress(plan: ExperimentPlan, todo: list[GroupPlan], progress: Any) -> _Overall | None:
    """The display's line of all methods together (None without a display or groups to train)."""
    if progress is None or not todo:
        return None
    return _Overall(progress, f"{plan.exp_dir.name} (all methods)", plan.experiment.steps * len(todo))


def replay(progress: Any, task_ids: dict[tuple[int, int], Any], overall: _Overall | None, message: tuple) -> None:
    """Show a worker's display call (from :class:`_QueueProgress`) on ``progress`` and the overall
    line. A worker that starts again (a retried task) replaces its earlier lines."""
    worker, name, args, kwargs = message
    if name == "add_task" and (worker, args[0]) in task_ids:
        progress.remove_task(task_ids.pop((worker, args[0])))
    _apply_message(progress, task_ids, message)
    if overall is not None and name == "update" and "completed" in kwargs:
        overall.set(worker, kwargs["completed"])


def run_plan(plan: ExperimentPlan, progress: Any = None, train_fn: TrainFn | None = None) -> list[str]:
    """Train every pending run of the plan: one run group per method, ``parallel_groups`` at once.

    A group that fails does not stop the others; the failures are returned (and the folders keep
    their checkpoints, so rerunning the experiment resumes them).

    Args:
        plan: from :func:`plan_experiment`.
        progress: a rich display the runner adds a task to per group (None: silent).
        train_fn: ``train_group(cfg, seeds, out_dir, steps, backend, device, progress)``; the
            runner's by default.

    Returns:
        One line per failed group, ``"<method>: <error>"``; empty when all finished.
    """
    from rlplast.runner import Interrupted

    if train_fn is None:
        from rlplast.runner import train_group as train_fn
    write_experiment_file(plan)
    todo = [g for g in plan.groups if g.pending]
    workers = parallel_groups(plan.experiment, len(todo))
    overall = overall_progress(plan, todo, progress)
    if workers > 1:
        return _run_parallel(plan, todo, workers, progress, overall, train_fn)
    failures: list[str] = []
    for i, group in enumerate(todo):
        shown = _GroupProgress(progress, overall, i) if overall is not None else progress
        try:
            train_fn(**group_kwargs(plan, group), progress=shown)
        except Interrupted:  # Ctrl-C: the runner saved a checkpoint; stop the whole experiment
            raise
        except Exception as err:  # one method failing (e.g. diverging) does not stop the others
            failures.append(f"{group.method}: {type(err).__name__}: {err}")
    return failures


def _run_parallel(
    plan: ExperimentPlan,
    todo: list[GroupPlan],
    workers: int,
    progress: Any,
    overall: _Overall | None,
    train_fn: TrainFn,
) -> list[str]:
    """Run groups in ``workers`` spawned processes; their progress is replayed on ``progress``."""
    import multiprocessing
    import queue as queue_module
    import signal
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.managers import SyncManager

    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be shared with forked children
    failures: list[str] = []
    manager = SyncManager(ctx=ctx)
    # Ctrl-C reaches every process; the queue's server must outlive it while workers save.
    manager.start(signal.signal, (signal.SIGINT, signal.SIG_IGN))
    with manager, ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        queue = manager.Queue() if progress is not None else None
        futures = {pool.submit(train_worker, train_fn, group_kwargs(plan, g), queue, i): g for i, g in enumerate(todo)}
        task_ids: dict[tuple[int, int], Any] = {}

        def apply(message: tuple) -> None:
            replay(progress, task_ids, overall, message)

        running = set(futures)
        while running:
            if queue is not None:
                try:
                    apply(queue.get(timeout=0.2))
                    continue
                except queue_module.Empty:
                    pass
            done = {f for f in running if f.done()}
            if queue is None and not done:
                next(iter(running)).exception()  # wait without spinning
            for future in done:
                if future.exception() is not None:
                    err = future.exception()
                    failures.append(f"{futures[future].method}: {type(err).__name__}: {err}")
            running -= done
        while queue is not None and not queue.empty():
            apply(queue.get())
    return failures
