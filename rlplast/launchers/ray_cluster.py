"""The Ray launcher: every run group of an experiment becomes one Ray task.

Ray places the tasks on the cluster's nodes by their resource needs (CPUs, a GPU or a fraction of
one), retries a task whose worker died or whose node went away (``max_retries``), retries a task
the runner stopped on SIGTERM (:class:`rlplast.runner.Interrupted`, a preempted worker), and
retries, after a wait, a task that found its run locked (:class:`rlplast.locks.RunBusy`: on NFS
the lock of a node that died outlives it by the server's lease). A retried task reruns
``train_group`` on the same folder, which resumes from the group's last checkpoint and skips
finished seeds, so no run is trained twice and the results equal an uninterrupted run's.

The tasks write straight into ``results/<experiment>/``, which must therefore be on a filesystem
every node mounts at the same path (NFS, Lustre, a cluster home); a task that cannot see the
folder fails at once with a message saying so. Progress travels to the driver's display over a
Ray queue. Ray is imported only here, and only when this launcher is used.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlplast.compare import (
    ExperimentPlan,
    GroupPlan,
    TrainFn,
    group_kwargs,
    overall_progress,
    replay,
    train_worker,
    write_experiment_file,
)
from rlplast.locks import RunBusy
from rlplast.report.aggregate import EXPERIMENT_FILE

INSTALL_HINT = "pip install 'rlplast[ray]'"
# How long a stopped experiment waits for its tasks to save their checkpoints (one PPO update
# each, normally seconds) before leaving them to Ray, which kills them with the driver.
CANCEL_WAIT_S = 120.0
# How long a task that found its run locked waits before Ray retries it (see train_task).
BUSY_RETRY_DELAY_S = 30.0


class ResultsNotShared(RuntimeError):
    """A Ray task's node cannot see the experiment folder the driver wrote."""


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"the ray launcher needs Ray, which is not installed: {INSTALL_HINT}") from err
    return ray


@dataclass(frozen=True)
class RayOptions:
    """How the run groups go to Ray.

    Attributes:
        address: the cluster: ``auto`` (the one this machine belongs to), ``HOST:PORT`` of its
            head, or None (``RAY_ADDRESS`` if set, else a new Ray instance on this machine).
        cpus_per_group: CPUs a run group's task reserves; None: the config's
            ``run.torch_threads``, else 1. Ray sets the task's thread count (OMP_NUM_THREADS) to it.
        gpus_per_group: GPUs a run group's task reserves, a fraction (0.25: four groups share a
            GPU) or a whole number; None: 1 for an experiment on cuda, 0 on the CPU.
        max_retries: how often Ray reruns a task whose worker died, whose node was lost or that
            was stopped by SIGTERM; each rerun resumes from the group's checkpoint.
    """

    address: str | None = None
    cpus_per_group: float | None = None
    gpus_per_group: float | None = None
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.cpus_per_group is not None and self.cpus_per_group <= 0:
            raise ValueError(f"cpus_per_group must be positive, got {self.cpus_per_group}")
        gpus = self.gpus_per_group
        if gpus is not None and (gpus < 0 or (gpus > 1 and gpus != int(gpus))):
            raise ValueError(f"gpus_per_group must be a fraction up to 1 or a whole number, got {gpus}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {self.max_retries}")


def group_resources(plan: ExperimentPlan, group: GroupPlan, options: RayOptions) -> dict[str, float]:
    """``num_cpus`` and ``num_gpus`` of one run group's task.

    Raises:
        ValueError: GPUs asked for an experiment on the CPU, or none for one on cuda.
    """
    on_gpu = plan.experiment.resolved_device().startswith("cuda")
    gpus = options.gpus_per_group if options.gpus_per_group is not None else float(on_gpu)
    if on_gpu and gpus == 0:
        raise ValueError("the experiment trains on cuda: its run groups need gpus_per_group (--gpus-per-group) > 0")
    if not on_gpu and gpus > 0:
        raise ValueError(f"gpus_per_group (--gpus-per-group) is {gpus}, but the experiment trains on the CPU")
    cpus = options.cpus_per_group or group.config.run.torch_threads or 1
    return {"num_cpus": float(cpus), "num_gpus": float(gpus)}


def train_task(train_fn: TrainFn, kwargs: dict, queue: Any, worker: int) -> None:
    """The body of a run group's Ray task (on whichever node Ray picked)."""
    exp_file = Path(kwargs["out_dir"]).parent / EXPERIMENT_FILE
    if not exp_file.is_file():  # written by the driver before any task starts
        raise ResultsNotShared(
            f"{exp_file.parent} is not visible on node {socket.gethostname()}: put --results-dir on a "
            "filesystem that every Ray node mounts at the same path"
        )
    try:
        train_worker(train_fn, kwargs, queue, worker)
    except RunBusy:
        # On NFS a lock of a node that died holds until the server's lease runs out (about 90 s):
        # wait before Ray retries the task (RunBusy is one of its retry exceptions)
        time.sleep(BUSY_RETRY_DELAY_S)
        raise


def _failure(method: str, err: BaseException, ray: Any) -> str:
    """``"<method>: <error>"``, naming the task's own exception rather than Ray's wrapper."""
    if isinstance(err, ray.exceptions.RayTaskError) and err.cause is not None:
        err = err.cause
    return f"{method}: {type(err).__name__}: {err}"


def _connect(ray: Any, address: str | None) -> bool:
    """Join (or start) a Ray cluster unless the caller already did; True if this call did."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address)
    except ConnectionError as err:
        raise ConnectionError(
            f"no Ray cluster at {address or 'RAY_ADDRESS'} ({err}). Start one with `ray start --head` (and "
            "`ray start --address HEAD:6379` on the other nodes), or leave out --address to start Ray on this "
            "machine only."
        ) from None
    return True


def run_plan_ray(
    plan: ExperimentPlan,
    progress: Any = None,
    options: RayOptions | None = None,
    train_fn: TrainFn | None = None,
) -> list[str]:
    """Train every pending run group of the plan as a Ray task; like :func:`rlplast.compare.run_plan`.

    Joins the cluster of ``options.address`` (or uses the connection of an earlier
    ``ray.init``, which it then leaves open), submits one task per group with pending seeds,
    shows their progress on ``progress``, and waits for all of them.

    Args:
        plan: from :func:`rlplast.compare.plan_experiment`.
        progress: a rich display (None: silent).
        options: cluster, resources and retries (defaults: :class:`RayOptions`).
        train_fn: the trainer, ``train_group`` by default; it must be picklable.

    Returns:
        One line per failed group, ``"<method>: <error>"`` (after Ray's retries); empty when all
        finished.

    Raises:
        ValueError: resources that do not fit the experiment's device (before Ray is started).
        ImportError: Ray is not installed (the message says how to install it).
        ConnectionError: no Ray cluster at ``options.address``.
        rlplast.runner.Interrupted: Ctrl-C; the running tasks were asked to save and stop.
    """
    options = options or RayOptions()
    todo = [g for g in plan.groups if g.pending]
    resources = [group_resources(plan, g, options) for g in todo]  # bad settings fail before Ray starts
    ray = import_ray()
    from rlplast.runner import Interrupted

    if train_fn is None:
        from rlplast.runner import train_group as train_fn
    plan = dataclasses.replace(plan, exp_dir=plan.exp_dir.resolve())  # the same path on every node
    write_experiment_file(plan)
    if not todo:
        return []
    started, queue = _connect(ray, options.address), None
    try:
        from ray.util.queue import Empty, Queue

        # The queue's actor reserves no CPU, so it never takes a slot a run group could use.
        queue = Queue(actor_options={"num_cpus": 0}) if progress is not None else None
        remote = ray.remote(train_task)
        refs = {}
        for i, (group, needs) in enumerate(zip(todo, resources, strict=True)):
            kwargs = group_kwargs(plan, group) | {"out_dir": group.out_dir.resolve()}
            task = remote.options(
                **needs,
                max_retries=options.max_retries,
                retry_exceptions=[Interrupted, RunBusy],
                name=f"rlplast {plan.exp_dir.name}/{group.method}",
            )
            refs[task.remote(train_fn, kwargs, queue, i)] = group.method
        show = _display(progress, overall_progress(plan, todo, progress), queue, Empty)
        try:
            return _wait(ray, refs, show)
        except KeyboardInterrupt:
            _cancel(ray, list(refs))
            raise Interrupted(
                "stopped; the run groups saved checkpoints where they could. Run the same command again to resume."
            ) from None
    finally:
        if queue is not None:
            queue.shutdown()
        if started:
            ray.shutdown()


def _display(progress: Any, overall: Any, queue: Any, empty: type[Exception]) -> Callable[[float], None]:
    """A function that shows the tasks' queued progress calls, waiting up to its argument (s)."""
    task_ids: dict[tuple[int, int], Any] = {}

    def show(timeout: float) -> None:
        if queue is None:
            time.sleep(timeout)
            return
        messages = queue.get_nowait_batch(queue.qsize())
        if not messages and timeout > 0:
            try:
                messages = [queue.get(timeout=timeout)]
            except empty:
                return
        for message in messages:
            replay(progress, task_ids, overall, message)

    return show


def _wait(ray: Any, refs: dict[Any, str], show: Callable[[float], None]) -> list[str]:
    """Wait for every task, showing progress meanwhile; the failures in submission order."""
    failures: dict[Any, str] = {}
    running = list(refs)
    while running:
        show(0.2)
        done, running = ray.wait(running, num_returns=len(running), timeout=0)
        for ref in done:
            try:
                ray.get(ref)
            except ray.exceptions.RayError as err:  # after Ray's retries
                failures[ref] = _failure(refs[ref], err, ray)
    show(0)  # the last updates of the last task
    return [failures[ref] for ref in refs if ref in failures]


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Ask every task to stop: Ray raises SIGINT in it, the runner saves after its current update."""
    for ref in refs:
        ray.cancel(ref)
    ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)
