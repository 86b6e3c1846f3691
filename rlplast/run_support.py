"""What both trainers share (rlplast's run groups in rlplast.runner, stable-baselines3's in
rlplast.sb3.trainer): the run folders' names and what they say about a run, the device, the code
version, the signal handling that stops a run after its update, and the save-and-report step of
the update loop. Kept apart so that neither trainer imports the other."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

import rlplast
from rlplast.checkpoint import CheckpointMismatch, run_config_diffs
from rlplast.cli_types import format_seeds, parse_seeds
from rlplast.config import Config
from rlplast.progress import GroupProgress
from rlplast.report.aggregate import CONFIG_FILE, DONE_FILE, read_done_steps
from rlplast.tracking import tag

CHECKPOINT_DIR = "checkpoints"
CONFIG_NAME, DONE_NAME = CONFIG_FILE, DONE_FILE  # each run folder's (the report reads them)
CONFIG_LOCK = ".config.lock"  # held while a process checks and claims runs of a method folder
# update() keys logged outside losses/ (the tracker's per-network tags)
NETWORK_TAGS = {
    "actor_grad_norm": tag("actor", "grad_norm"),
    "critic_grad_norm": tag("critic", "grad_norm"),
    "value_plasticity": tag("critic", "upgd_plasticity"),
}


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; rerun the same call to resume.

    ``exit_code`` is the shell's code for the signal: 130 for SIGINT (Ctrl-C), 143 for SIGTERM.
    """

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum

    def __reduce__(self) -> tuple:  # from a worker process with its signal (pickle passes args only)
        return type(self), (str(self), self.signum)


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; anything else as given (checked)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available; use cpu or auto")
    return dev


def run_dir(out_dir: Path, seed: int) -> Path:
    return Path(out_dir) / f"seed{seed}"


def checkpoint_path(out_dir: Path, seeds: Sequence[int]) -> Path:
    return Path(out_dir) / CHECKPOINT_DIR / f"seeds_{format_seeds(seeds)}.pt"


def finished_steps(out_dir: Path, seed: int) -> int | None:
    """Env steps a finished run reached (from its done.json), or None if it is not finished."""
    return read_done_steps(run_dir(out_dir, seed))


def reached_steps(out_dir: Path, seed: int) -> int | None:
    """Env steps a finished run reached: its done.json's, or those of its group when a stop came
    between the group's done.json writes (:func:`stopped_group_record`); None if unfinished."""
    steps = finished_steps(out_dir, seed)
    if steps is None and (record := stopped_group_record(out_dir, seed)) is not None:
        steps = int(record["steps"])
    return steps


def stopped_group_record(out_dir: Path, seed: int) -> dict[str, Any] | None:
    """The done.json a run lacks because its group was stopped between writing its runs' done.json
    files (the last step of a finished group), or None when the run is not in that state.

    Told by a sibling of the same group whose done.json names that group, at the step of the
    group's checkpoint: the group finished there, so this run did too. The record is the
    sibling's (the writes share one)."""
    if finished_steps(out_dir, seed) is not None:
        return None
    for path, group in saved_groups(out_dir):
        if seed not in group:
            continue
        for sibling in (s for s in group if s != seed and finished_steps(out_dir, s) is not None):
            record = json.loads((run_dir(out_dir, sibling) / DONE_NAME).read_text(encoding="utf-8"))
            if record.get("group_seeds") == group and _checkpoint_step(path) == int(record["steps"]):
                return record
    return None


def _checkpoint_step(path: Path) -> int | None:
    """The step a checkpoint was saved at, or None when it cannot be read."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["run_step"])
    except Exception:  # unreadable: not evidence of a finished group (resuming names the damage)
        return None


def saved_groups(out_dir: Path) -> list[tuple[Path, list[int]]]:
    """The run-group checkpoints in ``out_dir`` with their seeds, by file name."""
    paths = sorted((Path(out_dir) / CHECKPOINT_DIR).glob("seeds_*.pt"))
    return [(path, parse_seeds(path.stem.removeprefix("seeds_"))) for path in paths]


def has_checkpoint(out_dir: Path, seed: int) -> bool:
    """Whether a checkpoint of ``seed`` is in ``out_dir`` (its group's, or an SB3 run's)."""
    if (Path(out_dir) / CHECKPOINT_DIR / f"sb3_seed{seed}.pt").exists():
        return True
    return any(seed in seeds for _, seeds in saved_groups(out_dir))


def default_rng_seed(seeds: Sequence[int]) -> int:
    """The seed of torch's default generator for a run group: from its seeds alone, so that two
    identical runs write identical checkpoints (torch seeds it per process otherwise). Nothing in
    training draws from it; it is saved and restored only so that a resume leaves it as it was."""
    digest = hashlib.sha256(f"rlplast default rng {format_seeds(seeds)}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def git_info() -> dict[str, Any]:
    """Commit and dirty flag of the code's git checkout ("unknown" outside one)."""
    root = Path(rlplast.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return {
            "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain", "--", "rlplast")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": None}


def refuse_other_configs(cfg: Config, out_dir: Path) -> None:
    """Refuse to train into a method folder that holds runs of another training config (see
    :func:`rlplast.checkpoint.run_config_diffs`; a finished run has no checkpoint left to refuse
    a change, its config.yaml says what trained it).

    Raises:
        CheckpointMismatch: listing the runs of each other config and the keys that differ.
    """
    diffs = run_config_diffs(out_dir, cfg.training_dict())
    if diffs:
        problems = " | ".join(f"{', '.join(runs)}: {diff}" for diff, runs in diffs.items())
        raise CheckpointMismatch(
            f"{out_dir} holds runs of another config; refusing to train into it. Differences "
            f"(saved -> now): {problems}. Write to another results folder, or delete those run folders."
        )


class _StopFlag:
    """Set by the first SIGINT/SIGTERM; a second SIGINT after a first SIGINT (Ctrl-C twice)
    raises KeyboardInterrupt at once. A SIGINT after a SIGTERM only repeats the request: a
    parallel compare forwards SIGTERM to its workers, which may see it before the Ctrl-C that
    the terminal sent to them as well."""

    def __init__(self) -> None:
        self.requested = False
        self.signum = signal.SIGINT  # the first signal received
        self.on_request: list = []

    def __call__(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not self.requested:
            self.signum = signum
        self.requested = True
        for callback in self.on_request:
            callback()


@contextlib.contextmanager
def torch_threads(num: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(num)`` (unchanged if None)."""
    before = torch.get_num_threads()
    if num:
        torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Run the block without Python's cyclic garbage collector (reference counting still frees
    memory). A rollout allocates many small objects and no cycles; the collector's passes over
    them cost about 3% of its time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def train_with_progress(trainer: Any, label: str, steps: int, stop: Any, progress: Any, cfg: Config) -> None:
    """Train ``trainer`` (a run group, or an SB3 run) to ``steps`` under one progress line; close it
    and its line whatever happens."""
    bar = GroupProgress(progress, label, steps, trainer.run_step)
    if 0 < trainer.run_step < steps:
        bar.message(f"resuming {label} from step {trainer.run_step}")
    stop.on_request[:] = [lambda: bar.message("stopping after this update (Ctrl-C again to abort)")]
    try:
        with torch_threads(cfg.run.torch_threads):
            trainer.train(steps, stop, bar)
    finally:
        trainer.close()
        bar.finish()


def save_after_update(trainer: Any, stop: Any, previous: int, every: int, steps: int) -> None:
    """End of an update for a trainer with ``run_step``, ``save()``, ``logs`` and ``ckpt_path``.

    Saves and raises :class:`Interrupted` when a stop was requested; saves when the step crossed a
    multiple of ``every`` or reached ``steps``; otherwise only flushes the logs.
    """
    if stop.requested:
        trainer.save()
        raise Interrupted(
            f"stopped at step {trainer.run_step} of {steps}; checkpoint saved to {trainer.ckpt_path}. "
            "Run the same command again to resume.",
            getattr(stop, "signum", signal.SIGINT),
        )
    if trainer.run_step // every > previous // every or trainer.run_step >= steps:
        trainer.save()
    else:
        trainer.logs.flush()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[_StopFlag]:
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signals reach only the main thread; the caller handles them there
        return
    previous = {s: signal.signal(s, flag) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
