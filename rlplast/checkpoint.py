"""Atomic checkpoints and result files, and the config check on resume.

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over
the target with ``os.replace``, so a crash leaves either the old file or the new one, never a
torn one. Checkpoints hold only tensors, numbers, strings, lists and dicts, and are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1


class CheckpointMismatch(ValueError):
    """A checkpoint that belongs to another config or seed list."""


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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
    _atomic_write(path, lambda f: f.write(text), "w")


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def config_hash(resolved: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a resolved config (a plain dict)."""
    return hashlib.sha256(canonical_json(resolved).encode()).hexdigest()


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [2]} -> {"a.b": 1, "c.0": 2}``."""
    if isinstance(obj, Mapping):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        return {prefix: obj}
    out: dict[str, Any] = {}
    for key, value in items:
        out |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable differences, ``key: old -> new``, sorted by key."""
    a, b = flatten(old), flatten(new)
    missing = object()
    return [
        f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}"
        for key in sorted(a.keys() | b.keys())
        if a.get(key, missing) != b.get(key, missing)
    ]


def save_checkpoint(path: Path, state: Mapping[str, Any], resolved_config: Mapping[str, Any]) -> None:
    """Write ``state`` with the config's hash and contents, atomically."""
    payload = {
        "format": FORMAT_VERSION,
        "config_hash": config_hash(resolved_config),
        "config_json": canonical_json(resolved_config),
        **state,
    }
    _atomic_write(path, lambda f: torch.save(payload, f), "wb")


def load_checkpoint(path: Path, resolved_config: Mapping[str, Any]) -> dict[str, Any]:
    """Read a checkpoint (``weights_only=True``, onto the CPU) and refuse one from another config.

    Raises:
        CheckpointMismatch: the checkpoint's config hash differs from ``resolved_config``'s; the
            message lists the keys that differ.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointMismatch(f"{path}: checkpoint format {state.get('format')!r}, expected {FORMAT_VERSION}")
    if state["config_hash"] != config_hash(resolved_config):
        diff = config_diff(json.loads(state["config_json"]), resolved_config)
        raise CheckpointMismatch(
            f"{path} was written with a different config; refusing to resume it. Differences "
            f"(checkpoint -> now): {'; '.join(diff) or 'none visible'}. Use another --out folder, or "
            "delete the folder to start over."
        )
    return state
