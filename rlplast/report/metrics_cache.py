"""A cache of a parsed ``metrics.csv``: ``metrics.cache.npz`` next to it.

Parsing the CSV of a long run takes seconds (50M env steps log ~2M rows), and a report reads every
run of an experiment each time it is drawn. The cache holds every tag's columns as arrays, with
the size and modification time (ns) the CSV had when it was parsed: once the CSV changes (a
resumed run appends rows) the cache no longer matches it and is ignored, then rewritten. A cache
that cannot be read (torn, of another format version, not a cache at all) is ignored too: it is
only ever a shortcut, never the data.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Container
from pathlib import Path

import numpy as np

from rlplast.atomic import atomic_write

CACHE_SUFFIX = ".cache.npz"
# Bump when the layout below changes, so that old caches are ignored.
_FORMAT = 1

# tag -> (steps [n] int64, values [n] float64)
Columns = dict[str, tuple[np.ndarray, np.ndarray]]


def cache_path(csv_path: Path) -> Path:
    """The cache of ``csv_path``: ``metrics.cache.npz`` for ``metrics.csv``."""
    return csv_path.with_name(csv_path.stem + CACHE_SUFFIX)


def _key(stat: os.stat_result) -> np.ndarray:
    """What ties a cache to one state of its CSV: ``[format, size, mtime_ns]``, int64 ``[3]``."""
    return np.array([_FORMAT, stat.st_size, stat.st_mtime_ns], dtype=np.int64)


def load_cache(csv_path: Path, tags: Container[str] | None = None) -> Columns | None:
    """The cached columns of ``csv_path`` as it is now, only ``tags`` (None: all), in the CSV's
    order of first appearance; None when there is no cache, or it is stale or unreadable."""
    try:
        key = _key(csv_path.stat())
        with np.load(cache_path(csv_path), allow_pickle=False) as npz:
            if not np.array_equal(npz["key"], key):
                return None
            return {
                tag: (npz[f"steps_{i}"], npz[f"values_{i}"])
                for i, tag in enumerate(npz["tags"].tolist())
                if tags is None or tag in tags
            }
    except Exception:  # a missing, torn or foreign file: parse the CSV instead
        return None


def save_cache(csv_path: Path, stat: os.stat_result, columns: Columns) -> None:
    """Cache ``columns`` (every tag of ``csv_path`` when it had ``stat``).

    The cache is written atomically (a reader sees the old cache or the new one, never a torn
    one). A folder that cannot be written to (read-only, full) just goes without a cache.
    """
    arrays = {"key": _key(stat), "tags": np.array(list(columns), dtype=str)}
    for i, (steps, values) in enumerate(columns.values()):
        arrays[f"steps_{i}"], arrays[f"values_{i}"] = steps, values
    with contextlib.suppress(OSError):  # read-only folder, full disk: the next read parses the CSV again
        atomic_write(cache_path(csv_path), lambda fh: np.savez(fh, **arrays), "wb")  # uncompressed: a plain read
