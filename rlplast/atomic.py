"""Atomic file writes: a crash leaves either the old file or the new one, never a torn one.

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over
the target with ``os.replace``. The new file gets the permissions a plain ``open()`` would give
it (``0o666`` less the umask), not the owner-only mode of a temporary file, so results on a
shared filesystem stay readable by the group.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class DiskFull(OSError):
    """A write that found no space left (or the quota spent); the message names the file, the
    space it needs and the space free."""

    @classmethod
    def writing(cls, path: Path, needed: int) -> DiskFull:
        free = _free_bytes(Path(path).parent)
        return cls(
            f"no space left to write {path}: it needs {format_bytes(needed)} and {format_bytes(free)} are free "
            "there; free some space and run the same command again (what was saved before is intact)"
        )


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def format_bytes(n: int) -> str:
    """``1536 -> "1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to the file descriptor ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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

    The content is rendered in memory first, so that a full disk can be told with the space the
    file needs.

    Raises:
        DiskFull: no space left (or the quota spent); the target is then untouched.
        OSError: the folder cannot be created or written to; the target is then untouched.
    """
    path = Path(path)
    buffer: IO[Any] = io.BytesIO() if "b" in mode else io.StringIO()
    write(buffer)
    data = buffer.getvalue() if "b" in mode else buffer.getvalue().encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with contextlib.suppress(OSError):  # a filesystem without modes (some network mounts)
                os.fchmod(fd, FILE_MODE)
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in NO_SPACE:
            raise DiskFull.writing(path, len(data)) from err
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically."""
    atomic_write(path, lambda f: f.write(text), "w")


def atomic_write_json(path: Path, obj: Any) -> None:
    """Replace ``path`` by ``obj`` as indented, key-sorted JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
