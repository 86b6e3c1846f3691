"""Advisory locks that keep two processes from writing the same runs of a results folder.

``train`` (and ``compare``, through it) holds, in the method folder:

* ``.seed<k>.lock`` for every run it trains, for the whole training: a second process asked to
  train the same run stops at once with :class:`RunBusy` instead of interleaving checkpoints
  and logs with the first.
* ``.config.lock`` only while it checks the folder's configs and writes its own: two processes
  starting on one empty folder with different configs are checked one after the other, so the
  second sees the first's config and is refused (runner.refuse_other_configs).

The locks are ``flock`` locks, which the operating system drops when the process ends, however
it ends (crash, SIGKILL): a lock file left behind locks nothing. On NFS the lock of a node that
died lasts until the server's lease on it runs out (about 90 s for NFSv4); the Ray launcher waits
and retries a task that finds its run locked. Where locking is unavailable (no ``fcntl``, as on
Windows, or a filesystem without locks) training goes on unlocked, with a warning.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

BUSY = {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK}


class RunBusy(RuntimeError):
    """Another process holds the lock of a run (it is training that run now)."""


@contextmanager
def hold(path: Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block.

    Args:
        path: the lock file.
        what: the locked thing, for the error (e.g. "run seed3 of results/x/ppo").
        wait: block until the lock is free (for short critical sections) instead of raising.

    Raises:
        RunBusy: ``wait`` is False and another process holds the lock.
    """
    if fcntl is None:
        warnings.warn(f"no file locking on this system: nothing keeps another process off {what}", stacklevel=3)
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        warnings.warn(f"cannot open {path} ({err.strerror}): nothing keeps another process off {what}", stacklevel=3)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in BUSY and not wait:
                raise RunBusy(f"{what} is being trained by another process now ({path} is locked)") from None
            message = f"cannot lock {path} ({err.strerror}): nothing keeps another process off {what}"
            warnings.warn(message, stacklevel=3)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def run_lock(method_dir: Path, seed: int) -> Path:
    """The lock file of run ``seed<seed>`` of a method folder (held while that run trains)."""
    return Path(method_dir) / f".seed{seed}.lock"


def is_held(path: Path) -> bool:
    """Whether another process holds the lock ``path`` now. Creates nothing (a missing file is a
    free lock); the probe takes a shared lock for an instant, which a holder's exclusive one refuses."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        return err.errno in BUSY
    finally:
        os.close(fd)
    return False
