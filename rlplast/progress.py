"""A progress display for training run groups: steps, SPS, ETA, mean return, friction.

One display can hold several groups (``rlplast compare`` trains many); each group gets a task
whose extra fields ``sps``, ``ret`` and ``friction`` the runner updates after every PPO update::

    with make_progress() as progress:
        train_group(cfg, seeds, out_dir, steps, progress=progress)

On a terminal it is a rich progress bar; where output goes to a file or a pipe (a batch job,
``make demo > log``), where a bar shows nothing until the end, it is :class:`PlainProgress`: one
plain line per task every ``PLAIN_EVERY_S`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from rlplast.cli_types import format_steps


class _FieldsColumn(ProgressColumn):
    """SPS, mean return and friction of a task, from its fields (blank until the first update)."""

    def render(self, task: Task) -> Text:
        fields = task.fields
        if "sps" not in fields:
            return Text("")
        parts = [f"{fields['sps']:,.0f} sps"]
        if fields.get("ret") is not None:
            parts.append(f"return {fields['ret']:,.1f}")
        if fields.get("friction") is not None:
            parts.append(f"friction {fields['friction']:.3g}")
        return Text("  ".join(parts), style="cyan")


class _StepsColumn(ProgressColumn):
    """``1.2M/20M steps`` (per run)."""

    def render(self, task: Task) -> Text:
        total = format_steps(int(task.total)) if task.total else "?"
        done = format_steps(int(task.completed)) if task.completed else "0"
        return Text(f"{done}/{total} steps", style="green")


PLAIN_EVERY_S = 30.0  # seconds between two plain lines of a task


def make_progress(console: Console | None = None, quiet: bool = False) -> Progress | PlainProgress:
    """The training display (use it as a context manager): a :class:`rich.progress.Progress` with
    the training columns on a terminal, else a :class:`PlainProgress`; ``quiet``: no progress at
    all, only the messages (a resume, a stop)."""
    console = console or Console()
    if quiet or not console.is_terminal:
        return PlainProgress(console, every=None if quiet else PLAIN_EVERY_S)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        _StepsColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        _FieldsColumn(),
        console=console,
        refresh_per_second=2,
    )


class GroupProgress:
    """The runner's handle on one task of a progress display (does nothing without a display).

    Args:
        progress: the display, or None for silent training.
        description: the task's label, e.g. ``"ppo seeds 0-3"``.
        total: env steps per run to reach.
        completed: env steps per run already done (on resume).
    """

    def __init__(self, progress: Progress | None, description: str, total: int, completed: int = 0):
        self.progress = progress
        self.task = progress.add_task(description, total=total, completed=completed) if progress else None

    def update(self, steps: int, sps: float, mean_return: float | None, friction: float | None) -> None:
        """After an update: env steps per run so far, group SPS (all runs), current means."""
        if self.progress is not None:
            self.progress.update(self.task, completed=steps, sps=sps, ret=mean_return, friction=friction)

    def message(self, text: str) -> None:
        """A line above the display (or nothing when silent)."""
        if self.progress is not None:
            self.progress.console.print(text)

    def finish(self) -> None:
        if self.progress is not None:
            self.progress.stop_task(self.task)


class PlainProgress:
    """Progress as plain lines, for output that is not a terminal: the subset of
    :class:`rich.progress.Progress` the runner and compare use (``add_task``, ``update``,
    ``stop_task``, ``remove_task``, ``console``).

    A task prints ``<label>: <steps>/<total> steps (<pct>%), <sps> sps, eta <h:mm:ss>, return <r>``
    at its first update, then at most once every ``every`` seconds, and when it ends.

    Args:
        console: where lines go.
        every: seconds between two lines of a task; None: no progress lines (messages only).
        clock: seconds, monotonic (a test's fake clock).
    """

    def __init__(
        self, console: Console, every: float | None = PLAIN_EVERY_S, clock: Callable[[], float] = time.monotonic
    ):
        self.console = console
        self.every = every
        self.clock = clock
        self._tasks: dict[int, dict[str, Any]] = {}
        self._next = 0

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        task, self._next = self._next, self._next + 1
        now = self.clock()
        self._tasks[task] = {
            "description": description,
            "total": total,
            "completed": completed,
            "start": (now, completed),  # the rate counts only this process's steps (not a resume's)
            "printed": None,  # the time of the last line; None: none yet
            "shown": None,  # the steps of the last line
            **fields,
        }
        return task

    def update(self, task: int, completed: float | None = None, **fields: Any) -> None:
        state = self._tasks.get(task)
        if state is None:
            return
        if completed is not None:
            state["completed"] = completed
        state.update(fields)
        now = self.clock()
        done = state["total"] is not None and state["completed"] >= state["total"]
        due = state["printed"] is None or now - state["printed"] >= (self.every or 0)
        if self.every is not None and (due or done) and state["shown"] != state["completed"]:
            self._print(state, now)

    def stop_task(self, task: int) -> None:
        """The task ended: its last state, unless already shown."""
        state = self._tasks.get(task)
        if state is not None and self.every is not None and state["shown"] not in (None, state["completed"]):
            self._print(state, self.clock())

    def remove_task(self, task: int) -> None:
        self._tasks.pop(task, None)

    def _print(self, state: dict[str, Any], now: float) -> None:
        state["printed"], state["shown"] = now, state["completed"]
        self.console.print(plain_line(state, now), markup=False, highlight=False, soft_wrap=True)


def plain_line(state: dict[str, Any], now: float) -> str:
    """One task's progress as a line (see :class:`PlainProgress`)."""
    done, total = int(state["completed"]), state["total"]
    steps = f"{format_steps(done)}/{format_steps(int(total))}" if total else format_steps(done)
    parts = [f"{steps} steps ({100 * done / total:.0f}%)" if total else f"{steps} steps"]
    if state.get("sps") is not None:
        parts.append(f"{state['sps']:,.0f} sps")
    t0, done0 = state["start"]
    rate = (done - done0) / (now - t0) if now > t0 else 0.0
    if total and rate > 0:
        parts.append(f"eta {_clock(max(total - done, 0) / rate)}")
    if state.get("ret") is not None:
        parts.append(f"return {state['ret']:,.1f}")
    return f"{state['description']}: " + ", ".join(parts)


def _clock(seconds: float) -> str:
    """``3725 -> "1:02:05"``."""
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
