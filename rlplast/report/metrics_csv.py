"""Reading a run's ``metrics.csv`` (long format ``step,tag,value``) into one :class:`Series` per tag.

The CSV of a long run is large (50M env steps log ~2M rows, ~100 MB). Its numbers are parsed by
numpy's C reader, and the result is cached next to the CSV (:mod:`rlplast.report.metrics_cache`),
so a report drawn again reads arrays instead. A file numpy's reader rejects is read row by row in
Python, which accepts exactly what ``float()`` does and names a bad line.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from rlplast.report.metrics_cache import load_cache, save_cache

HEADER = "step,tag,value"
_MAX_STEP = 2.0**63  # steps are stored as int64
_CHUNK_CHARS = 1 << 24  # rows parsed at once: bounds the memory their Python strings take


@dataclass(frozen=True)
class Series:
    """One scalar tag of one run: ``steps [n]`` (env steps, increasing) and ``values [n]``."""

    steps: np.ndarray
    values: np.ndarray


def read_metrics(path: Path, tags: Container[str] | None = None) -> dict[str, Series]:
    """Read a long-format ``step,tag,value`` CSV into one :class:`Series` per tag.

    A run resumed from a checkpoint logs again the steps after that checkpoint; when a tag's step
    goes backwards, the rows it had at or after the new step are dropped (the later write wins).
    Every tag is parsed and cached (``metrics.cache.npz``) while ``tags`` only filters what is
    returned, so a later read of other tags hits the cache too.

    Args:
        path: the metrics.csv file.
        tags: return only these tags (None: all), in the file's order of first appearance.

    Raises:
        ValueError: if the header is not ``step,tag,value`` or a row is malformed (names the line).
    """
    path = Path(path)
    cached = load_cache(path, tags)
    if cached is not None:
        return {tag: Series(steps, values) for tag, (steps, values) in cached.items()}
    try:
        return _read_file(path, tags)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file ({err}); the run's CSV log is damaged") from err


def _read_file(path: Path, tags: Container[str] | None) -> dict[str, Series]:
    """:func:`read_metrics` past the cache: parse the file, and cache what was parsed."""
    with open(path, encoding="utf-8") as fh:
        stat = os.fstat(fh.fileno())
        header = fh.readline().strip()
        if header != HEADER:
            raise ValueError(f"{path}: header must be '{HEADER}', got {header!r}")
        columns = _parse_columns(fh)
        if columns is None:
            fh.seek(0)
            fh.readline()
            return _parse_rows(path, fh, tags)
        after = os.fstat(fh.fileno())
    series = {tag: _series(path, steps, values) for tag, (steps, values) in columns.items()}
    # A run still training may have appended while we read: cache only what matches the stat.
    if (after.st_size, after.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns):
        save_cache(path, stat, {tag: (s.steps, s.values) for tag, s in series.items()})
    return {tag: s for tag, s in series.items() if tags is None or tag in tags}


def _parse_columns(fh: TextIO) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Every tag's ``(steps [n], values [n])`` (float, file order) from the rest of ``fh``, or None
    when numpy's reader rejects a row or a row does not have 3 fields."""
    numbers: list[np.ndarray] = []  # [rows, 2] per chunk
    codes: list[np.ndarray] = []  # [rows] per chunk: the tag's index in ids
    ids: dict[str, int] = {}  # tag -> its index, in order of first appearance
    for chunk in iter(lambda: fh.readlines(_CHUNK_CHARS), []):
        rows = [line for line in chunk if line != "\n"]
        if not rows:
            continue
        try:
            block = np.loadtxt(rows, delimiter=",", usecols=(0, 2), comments=None, ndmin=2)
        except ValueError:
            return None
        # loadtxt needs at least 3 fields per row; as many commas as 3 fields each makes it exactly 3.
        if len(block) != len(rows) or "".join(rows).count(",") != 2 * len(rows):
            return None
        numbers.append(block)
        codes.append(np.fromiter((ids.setdefault(row.split(",", 2)[1], len(ids)) for row in rows), np.int64, len(rows)))
    if not numbers:
        return {}
    steps, values = np.concatenate(numbers).T
    if not (np.abs(steps) < _MAX_STEP).all():  # NaN, inf: the row reader applies ``tags`` first
        return None
    code = np.concatenate(codes)
    order = np.argsort(code, kind="stable")  # rows grouped by tag, in file order within a tag
    bounds = np.searchsorted(code[order], np.arange(len(ids) + 1))
    steps, values = steps[order], values[order]
    return {tag: (steps[a:b], values[a:b]) for tag, a, b in zip(ids, bounds[:-1], bounds[1:], strict=True)}


def _parse_rows(path: Path, fh: TextIO, tags: Container[str] | None) -> dict[str, Series]:
    """The rest of ``fh`` row by row (only ``tags``; None: all), naming any bad line."""
    columns: dict[str, tuple[list[float], list[float]]] = {}
    for lineno, line in enumerate(fh, start=2):
        parts = line.rstrip("\n").split(",")
        if len(parts) != 3:
            if not line.strip():
                continue
            raise ValueError(f"{path}:{lineno}: expected 3 fields 'step,tag,value', got {line.strip()!r}")
        step_text, tag, value_text = parts
        if tags is not None and tag not in tags:
            continue
        try:
            step, value = float(step_text), float(value_text)
        except ValueError:
            raise ValueError(f"{path}:{lineno}: step and value must be numbers, got {line.strip()!r}") from None
        steps, values = columns.setdefault(tag, ([], []))
        steps.append(step)
        values.append(value)
    return {tag: _series(path, np.array(s), np.array(v)) for tag, (s, v) in columns.items()}


def _series(path: Path, steps: np.ndarray, values: np.ndarray) -> Series:
    """One tag's rows in file order (``steps [n]`` float, ``values [n]``) as a :class:`Series` of
    its own arrays, the rows a resumed run wrote again replacing the earlier ones."""
    if not (np.abs(steps) < _MAX_STEP).all():
        raise ValueError(f"{path}: steps must be finite and below 2**63")
    if len(steps) > 1 and not (steps[1:] >= steps[:-1]).all():
        keep = _later_rows_win(steps.tolist())
        steps, values = steps[keep], values[keep]
    return Series(steps.astype(np.int64), np.array(values, dtype=float))


def _later_rows_win(steps: list[float]) -> list[int]:
    """Indices of the rows kept when each row whose step goes backwards drops the earlier rows at
    or after its step."""
    kept: list[int] = []
    kept_steps: list[float] = []  # non-decreasing
    for i, step in enumerate(steps):
        if kept_steps and step < kept_steps[-1]:
            cut = bisect.bisect_left(kept_steps, step)
            del kept[cut:], kept_steps[cut:]
        kept.append(i)
        kept_steps.append(step)
    return kept
