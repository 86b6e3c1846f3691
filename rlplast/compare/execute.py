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


def train_worker(train_fn: TrainFn, kwargs: dict, queue: Any, worker: int, stopped: Any = None) -> None:
    """One run group in a worker process (a local one, or a Ray task), reporting progress over
    ``queue`` (anything with ``put``; None: silent). ``stopped`` (an Event, or None): when set
    before the group starts, it does not start (a stop came while it waited in the pool's queue)."""
    if stopped is not None and stopped.is_set():
        from rlplast.runner import Interrupted

        raise Interrupted(f"{kwargs['cfg'].method}: not started, the experiment was stopped")
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
    """Run groups in ``workers`` spawned processes; their progress is replayed on ``progress``.

    A SIGINT or SIGTERM to this process (Ctrl-C, ``kill``, a batch scheduler) is passed on to the
    workers as SIGTERM: each saves a checkpoint at the end of its update and stops, groups not
    started yet are cancelled, and then :class:`~rlplast.runner.Interrupted` is raised here. The
    workers ignore stop signals outside training (a worker that died idle would break the pool
    and take the others down mid-save), so the request is repeated until every group has ended,
    for a worker that was still setting its group up when it came.
    """
    import math
    import multiprocessing
    import queue as queue_module
    import time
    from concurrent.futures import ProcessPoolExecutor, wait
    from multiprocessing.managers import SyncManager

    from rlplast.runner import Interrupted, stop_on_signals

    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be shared with forked children
    failures: list[str] = []
    futures: dict[Any, GroupPlan] = {}
    manager = SyncManager(ctx=ctx)
    manager.start(_ignore_stop_signals)  # the queue's server must outlive a stop while workers save
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_ignore_stop_signals)
    with manager, pool, stop_on_signals() as stop:
        queue = manager.Queue() if progress is not None else None
        stopped = manager.Event()
        for i, g in enumerate(todo):
            futures[pool.submit(train_worker, train_fn, group_kwargs(plan, g), queue, i, stopped)] = g
        task_ids: dict[tuple[int, int], Any] = {}

        def apply(message: tuple) -> None:
            replay(progress, task_ids, overall, message)

        # the signal handler only sets stop.requested; the workers are told from this loop (a
        # manager call from inside the handler could interleave with one it interrupted)
        running, asked = set(futures), -math.inf
        while running:
            if stop.requested and time.monotonic() - asked > STOP_REPEAT_S:
                _stop_workers(pool, futures, stopped)
                asked = time.monotonic()
            if queue is not None:
                try:
                    apply(queue.get(timeout=0.2))
                    continue
                except queue_module.Empty:
                    pass
            else:
                wait(running, timeout=0.2)
            done = {f for f in running if f.done()}
            for future in done:
                err = None if future.cancelled() else future.exception()
                if err is not None and not isinstance(err, Interrupted):
                    failures.append(f"{futures[future].method}: {type(err).__name__}: {err}")
            running -= done
        while queue is not None and not queue.empty():
            apply(queue.get())
    if stop.requested:
        raise Interrupted(
            f"stopped; every started run saved a checkpoint in {plan.exp_dir}. Run the same command again to resume.",
            stop.signum,
        )
    return failures


STOP_REPEAT_S = 0.5  # how often a stop request is repeated to the workers


def _ignore_stop_signals() -> None:
    """In the queue's server and in idle workers: ignore SIGINT and SIGTERM (the server must keep
    serving while the workers save; a worker's training installs its own handlers)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _stop_workers(pool: Any, futures: dict, stopped: Any) -> None:
    """Keep the groups not started yet from starting and ask the running workers to save and stop
    (SIGTERM; a second SIGTERM, or one after the terminal's Ctrl-C, only repeats the request)."""
    import contextlib
    import os
    import signal

    if not stopped.is_set():
        stopped.set()
    for future in list(futures):
        future.cancel()
    for process in list(getattr(pool, "_processes", {}).values()):  # the executor's worker processes
        if process.is_alive():
            with contextlib.suppress(OSError):  # it exited in between
                os.kill(process.pid, signal.SIGTERM)
