"""Atomic file writes: a crash leaves either the old file or the new one, never a torn one.

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over
the target with ``os.replace``. The new file gets the permissions a plain ``open()`` would give
it (``0o666`` less the umask), not the owner-only mode of a temporary file, so results on a
shared filesystem stay readable by the group.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    """The process's umask: from /proc where Linux shows it, else by setting and restoring it
    (which briefly changes it for every thread, so it is done once, at import)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return int(next(line.split()[1] for line in f if line.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0)
        os.umask(mask)
        return mask


FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: Path, write: Callable[[IO[Any]], None], mode: str = "w") -> None:
    """Replace ``path`` by what ``write(file)`` writes, atomically (``mode``: ``"w"`` or ``"wb"``).

    Raises:
        OSError: the folder cannot be created or written to; the target is then untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with contextlib.suppress(OSError):  # a filesystem without modes (some network mounts)
            os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically."""
    atomic_write(path, lambda f: f.write(text), "w")


def atomic_write_json(path: Path, obj: Any) -> None:
    """Replace ``path`` by ``obj`` as indented, key-sorted JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
