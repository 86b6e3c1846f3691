"""The log writer: every scalar goes to TensorBoard and to ``metrics.csv`` of its run.

``metrics.csv`` is in long format, header ``step,tag,value``, one row per scalar, step = env
steps of that run. Tags are grouped by prefix: ``charts/`` (episodes, speed), ``losses/``
(PPO diagnostics), ``plasticity/`` (the tracker and plug-ins) and ``env/`` (friction).

Resuming from a checkpoint taken at step S keeps the rows with step <= S, drops the rest, and
opens TensorBoard with ``purge_step = S + 1``, so no curve gets duplicate points. A torn last
line (a crash mid-write) is dropped too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

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


def truncate_csv(path: Path, max_step: int) -> None:
    """Keep the header and the well-formed rows of ``path`` with step <= ``max_step`` (atomically)."""
    if not path.exists():
        return
    with path.open() as f:
        lines = f.readlines()
    kept = [line for line in lines[1:] if (step := _row_step(line)) is not None and step <= max_step]
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

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        csv_path = self.run_dir / CSV_NAME
        if resume_step is None:
            for old in self.run_dir.glob("events.out.tfevents.*"):
                old.unlink()
            csv_path.unlink(missing_ok=True)
            purge_step = None
        else:
            truncate_csv(csv_path, resume_step)
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
        if self._rows:
            self._csv.write("".join(self._rows))
            self._rows.clear()
        self._csv.flush()
        self.tb.flush()
        if durable:
            os.fsync(self._csv.fileno())

    def close(self) -> None:
        self.flush()
        self._csv.close()
        self.tb.close()


class GroupLog:
    """One :class:`RunLog` per run of a group; values arrive as ``[R]`` tensors."""

    def __init__(self, run_dirs: Sequence[Path], resume_step: int | None = None):
        self.runs = [RunLog(d, resume_step) for d in run_dirs]

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
