"""The log writer: every scalar goes to TensorBoard and to ``metrics.csv`` of its run.

``metrics.csv`` is in long format, header ``step,tag,value``, one row per scalar, step = env
steps of that run. Tags are grouped by prefix: ``charts/`` (episodes, speed), ``losses/``
(PPO diagnostics), ``plasticity/`` (the tracker and plug-ins) and ``env/`` (friction).

Resuming from a checkpoint taken at step S keeps the rows with step <= S, drops the rest, and
opens TensorBoard with ``purge_step = S + 1``, so no curve gets duplicate points. A torn last
line (a crash mid-write) is dropped too; any other line that is not a ``step,tag,value`` row
stops the resume with an error naming it (:class:`DamagedLog`), before any file is changed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from rlplast.atomic import NO_SPACE, DiskFull

CSV_NAME = "metrics.csv"
CSV_HEADER = "step,tag,value\n"

# tag names shared with the report and the tracker
EPISODIC_RETURN = "charts/episodic_return"
EPISODIC_LENGTH = "charts/episodic_length"
SPS = "charts/sps"
FRICTION = "env/friction"
NONFINITE_RESETS = "env/nonfinite_resets"


def loss_tag(name: str) -> str:
    """``losses/<name>``."""
    return f"losses/{name}"


def _row_step(line: str) -> int | None:
    """The step of a complete, well-formed ``step,tag,value`` row, else None."""
    parts = line.rstrip("\n").split(",")
    if not line.endswith("\n") or len(parts) != 3 or not parts[1]:
        return None
    try:
        float(parts[2])
        return int(parts[0])
    except ValueError:
        return None


class DamagedLog(ValueError):
    """A run's metrics.csv holds a line that is neither a row nor the torn end of a crashed write."""


def rows_to_keep(path: Path, max_step: int) -> list[str] | None:
    """The rows of ``path`` with step <= ``max_step`` (None: no file). The last line may be torn
    (no newline: a write cut short by a crash) and is left out.

    Raises:
        DamagedLog: the header or another line is not a ``step,tag,value`` row, or the file is
            not UTF-8; the message names the file and the line.
    """
    if not path.exists():
        return None
    try:
        with path.open(encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError as err:
        raise DamagedLog(f"{path} is not UTF-8 text ({err}); restore it from a copy, or delete the run") from None
    if lines and lines[0] != CSV_HEADER and lines[0].endswith("\n"):
        raise DamagedLog(f"{path}:1: the header must be {CSV_HEADER.strip()!r}, got {lines[0].strip()!r}")
    kept = []
    for lineno, line in enumerate(lines[1:], start=2):
        step = _row_step(line)
        if step is None and line.endswith("\n"):
            raise DamagedLog(
                f"{path}:{lineno}: {line.strip()!r} is not a 'step,tag,value' row (the file was edited or "
                "damaged); fix or delete that line, then run the same command again"
            )
        if step is not None and step <= max_step:
            kept.append(line)
    return kept


def truncate_csv(path: Path, max_step: int, kept: list[str] | None = None) -> None:
    """Keep the header and the rows of ``path`` with step <= ``max_step`` (atomically); ``kept``:
    those rows, when :func:`rows_to_keep` already read them.

    Raises:
        DamagedLog: see :func:`rows_to_keep`; the file is then unchanged.
    """
    kept = rows_to_keep(path, max_step) if kept is None else kept
    if kept is None:
        return
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w") as f:
        f.write(CSV_HEADER)
        f.writelines(kept)
    os.replace(tmp, path)


class RunLog:
    """TensorBoard + CSV writer of one run, in ``run_dir``.

    Args:
        run_dir: the run's folder (created).
        resume_step: the step of the checkpoint being resumed, or None for a fresh start (which
            removes any events and CSV left by an earlier attempt that never checkpointed).
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None, kept: list[str] | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        csv_path = self.run_dir / CSV_NAME
        if resume_step is None:
            for old in self.run_dir.glob("events.out.tfevents.*"):
                old.unlink()
            csv_path.unlink(missing_ok=True)
            purge_step = None
        else:
            truncate_csv(csv_path, resume_step, kept)
            purge_step = resume_step + 1
        fresh = not csv_path.exists()
        self._csv = csv_path.open("a")
        if fresh:
            self._csv.write(CSV_HEADER)
        self._rows: list[str] = []
        self.tb = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge_step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        value = float(value)
        self._rows.append(f"{int(step)},{tag},{value!r}\n")
        self.tb.add_scalar(tag, value, int(step))

    def text(self, tag: str, text: str) -> None:
        self.tb.add_text(tag, text)

    def flush(self, durable: bool = False) -> None:
        """Write buffered CSV rows and TensorBoard events to disk (``durable``: and wait until
        the CSV is on the disk, as before a checkpoint, which must never be ahead of the logs)."""
        text = "".join(self._rows)
        self._rows.clear()
        try:
            self._csv.write(text)
            self._csv.flush()
            if durable:
                os.fsync(self._csv.fileno())
        except OSError as err:
            if err.errno in NO_SPACE:  # rows past the last checkpoint: a resume writes them again
                raise DiskFull.writing(self._csv.name, len(text.encode())) from err
            raise
        self.tb.flush()

    def close(self) -> None:
        self.flush()
        self._csv.close()
        self.tb.close()


class GroupLog:
    """One :class:`RunLog` per run of a group; values arrive as ``[R]`` tensors."""

    def __init__(self, run_dirs: Sequence[Path], resume_step: int | None = None):
        # every run's CSV is checked before any is truncated: a damaged one changes no file
        kept = [rows_to_keep(Path(d) / CSV_NAME, resume_step) if resume_step is not None else None for d in run_dirs]
        self.runs = [RunLog(d, resume_step, rows) for d, rows in zip(run_dirs, kept, strict=True)]

    def scalars(self, values: Mapping[str, Tensor | Sequence[float]], step: int) -> None:
        """Log ``{tag: [R]}`` for every run at the same ``step``."""
        for tag, per_run in values.items():
            row = per_run.tolist() if isinstance(per_run, Tensor) else list(per_run)
            for run, value in zip(self.runs, row, strict=True):
                run.scalar(tag, value, step)

    def text(self, tag: str, texts: Sequence[str]) -> None:
        for run, text in zip(self.runs, texts, strict=True):
            run.text(tag, text)

    def flush(self, durable: bool = False) -> None:
        for run in self.runs:
            run.flush(durable)

    def close(self) -> None:
        for run in self.runs:
            run.close()
