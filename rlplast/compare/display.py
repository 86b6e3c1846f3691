"""One progress display for a whole experiment, fed by run groups in this or other processes.

The display's first line sums the env steps of every method's group (:class:`Overall`). A group
trained in this process writes to the display through :class:`GroupProgress`; one trained in a
worker process (a local one, or a Ray task) writes to a :class:`QueueProgress`, whose calls travel
over a queue and are shown by :func:`replay` in the main process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from rlplast.compare.plan import ExperimentPlan, GroupPlan


class QueueProgress:
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
    def __init__(self, progress: QueueProgress):
        self._progress = progress

    def print(self, *args: Any, **kwargs: Any) -> None:
        self._progress.send("console.print", args, kwargs)


class Overall:
    """The display's first line: env steps per run summed over every method's group."""

    def __init__(self, progress: Any, description: str, total: int):
        self.progress = progress
        self.task = progress.add_task(description, total=total)
        self.completed: dict[int, int] = {}

    def set(self, group: int, completed: int) -> None:
        self.completed[group] = int(completed)
        self.progress.update(self.task, completed=sum(self.completed.values()))


class GroupProgress:
    """The display as one group's trainer sees it: calls go through, and the steps it reports
    also move the overall line."""

    def __init__(self, progress: Any, overall: Overall, group: int):
        self._progress, self._overall, self._group = progress, overall, group

    def update(self, task: Any, *args: Any, **kwargs: Any) -> None:
        self._progress.update(task, *args, **kwargs)
        if "completed" in kwargs:
            self._overall.set(self._group, kwargs["completed"])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._progress, name)


def _apply_message(progress: Any, task_ids: dict[tuple[int, int], Any], message: tuple) -> None:
    """Replay a worker's call (from :class:`QueueProgress`) on the real display."""
    worker, name, args, kwargs = message
    if name == "add_task":
        task_ids[worker, args[0]] = progress.add_task(*args[1:], **kwargs)
    elif name == "console.print":
        progress.console.print(*args, **kwargs)
    elif args and (worker, args[0]) in task_ids:
        getattr(progress, name)(task_ids[worker, args[0]], *args[1:], **kwargs)


def overall_progress(plan: ExperimentPlan, todo: list[GroupPlan], progress: Any) -> Overall | None:
    """The display's line of all methods together (None without a display or groups to train)."""
    if progress is None or not todo:
        return None
    return Overall(progress, f"{plan.exp_dir.name} (all methods)", plan.experiment.steps * len(todo))


def replay(progress: Any, task_ids: dict[tuple[int, int], Any], overall: Overall | None, message: tuple) -> None:
    """Show a worker's display call (from :class:`QueueProgress`) on ``progress`` and the overall
    line. A worker that starts again (a retried task) replaces its earlier lines."""
    worker, name, args, kwargs = message
    if name == "add_task" and (worker, args[0]) in task_ids:
        progress.remove_task(task_ids.pop((worker, args[0])))
    _apply_message(progress, task_ids, message)
    if overall is not None and name == "update" and "completed" in kwargs:
        overall.set(worker, kwargs["completed"])
