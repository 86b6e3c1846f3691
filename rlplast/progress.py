"""A rich progress display for training run groups: steps, SPS, ETA, mean return, friction.

One display can hold several groups (``rlplast compare`` trains many); each group gets a task
whose extra fields ``sps``, ``ret`` and ``friction`` the runner updates after every PPO update::

    with make_progress() as progress:
        train_group(cfg, seeds, out_dir, steps, progress=progress)
"""

from __future__ import annotations

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


def make_progress(console: Console | None = None) -> Progress:
    """A :class:`rich.progress.Progress` with the training columns (use it as a context manager)."""
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
