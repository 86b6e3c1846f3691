"""Running an experiment's plan on this machine: one run group per method, in this process or in
several worker processes at once.

:func:`run_plan` trains the pending runs of a plan (from :func:`rlplast.compare.plan.plan_experiment`)
and shows one progress display for the whole experiment; a group that fails does not stop the
others. :func:`train_worker` and :func:`group_kwargs` are shared with the other launchers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlplast.compare.display import GroupProgress, Overall, QueueProgress, overall_progress, replay
from rlplast.compare.experiment import ExperimentConfig
from rlplast.compare.plan import ExperimentPlan, GroupPlan, write_experiment_file

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


def train_worker(train_fn: TrainFn, kwargs: dict, queue: Any, worker: int) -> None:
    """One run group in a worker process (a local one, or a Ray task), reporting progress over
    ``queue`` (anything with ``put``; None: silent)."""
    train_fn(**kwargs, progress=QueueProgress(queue, worker) if queue is not None else None)


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
        shown = GroupProgress(progress, overall, i) if overall is not None else progress
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
    overall: Overall | None,
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
