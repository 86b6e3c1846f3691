"""Atomic checkpoints, and the config check on resume.

Checkpoints are written with :func:`rlplast.atomic.atomic_write` (a crash leaves the old file or
the new one, never a torn one), hold only tensors, numbers, strings, lists and dicts, and are
read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from rlplast.atomic import atomic_write
from rlplast.config import validate
from rlplast.nested import flatten
from rlplast.report.aggregate import CONFIG_FILE, seed_dirs

FORMAT_VERSION = 1


class CheckpointMismatch(ValueError):
    """A checkpoint that belongs to another config or seed list."""


class CheckpointUnreadable(ValueError):
    """A checkpoint file that cannot be read (truncated, empty, overwritten)."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def config_hash(resolved: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a resolved config (a plain dict)."""
    return hashlib.sha256(canonical_json(resolved).encode()).hexdigest()


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable differences, ``key: old -> new``, sorted by key."""
    a, b = flatten(old), flatten(new)
    missing = object()
    return [
        f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}"
        for key in sorted(a.keys() | b.keys())
        if a.get(key, missing) != b.get(key, missing)
    ]


def summarize_diff(diff: list[str], limit: int = 5) -> str:
    """The first ``limit`` differences of :func:`config_diff` on one line, and how many more."""
    more = f" (and {len(diff) - limit} more)" if len(diff) > limit else ""
    return "; ".join(diff[:limit]) + more


def saved_training_dict(data: dict) -> dict:
    """The training part (``Config.training_dict``) of a saved config.yaml's contents."""
    return validate(data, source="saved config.yaml").training_dict()


def run_config_diffs(
    method_dir: Path, want: Mapping[str, Any], read_saved: Callable[[dict], dict] = saved_training_dict
) -> dict[str, list[str]]:
    """The runs of a method folder whose saved training config differs from ``want``.

    A report reads every ``seed<k>`` folder of a method folder as one method, so the folder must
    hold runs of one config; names and the ``run`` section (steps, threads) may differ.

    Returns:
        ``{difference (saved -> want, one line): [run folder names]}``; empty when all agree. A
        config.yaml that cannot be read or validated counts as a difference naming the file.
    """
    diffs: dict[str, list[str]] = {}
    for _, folder in seed_dirs(method_dir):
        path = folder / CONFIG_FILE
        if not path.is_file():
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a config mapping")
            diff = summarize_diff(config_diff(read_saved(data), want))
        except (OSError, ValueError, yaml.YAMLError) as err:  # ConfigError, bad UTF-8: ValueErrors
            diff = f"{path} is unreadable ({' '.join(str(err).split())})"
        if diff:
            diffs.setdefault(diff, []).append(folder.name)
    return diffs


def save_checkpoint(path: Path, state: Mapping[str, Any], resolved_config: Mapping[str, Any]) -> None:
    """Write ``state`` with the config's hash and contents, atomically."""
    payload = {
        "format": FORMAT_VERSION,
        "config_hash": config_hash(resolved_config),
        "config_json": canonical_json(resolved_config),
        **state,
    }
    atomic_write(path, lambda f: torch.save(payload, f), "wb")


def _same_config_today(state: Mapping[str, Any], resolved_config: Mapping[str, Any]) -> bool:
    """Whether the checkpoint's config, read through today's schema, is ``resolved_config``: a
    key added to the config since the checkpoint was written (at its default, which is what the
    old code did) does not make its checkpoints unresumable."""
    try:
        today = saved_training_dict(json.loads(state["config_json"]))
    except ValueError:  # no longer a valid config (ConfigError, bad JSON): a real difference
        return False
    return config_hash(today) == config_hash(resolved_config)


def load_checkpoint(path: Path, resolved_config: Mapping[str, Any]) -> dict[str, Any]:
    """Read a checkpoint (``weights_only=True``, onto the CPU) and refuse one from another config.

    Raises:
        CheckpointMismatch: the checkpoint's config hash differs from ``resolved_config``'s; the
            message lists the keys that differ.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, OSError, EOFError or UnpicklingError here
        raise CheckpointUnreadable(
            f"{path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            "rlplast writes checkpoints atomically, so a crash while saving does not do this: the file "
            "was damaged or replaced afterwards. Restore it, or delete it to train these seeds from the start."
        ) from err
    if not isinstance(state, dict) or "config_hash" not in state:
        raise CheckpointUnreadable(f"{path} is not an rlplast checkpoint (no config hash in it)")
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointMismatch(f"{path}: checkpoint format {state.get('format')!r}, expected {FORMAT_VERSION}")
    if state["config_hash"] != config_hash(resolved_config) and not _same_config_today(state, resolved_config):
        diff = config_diff(json.loads(state["config_json"]), resolved_config)
        raise CheckpointMismatch(
            f"{path} was written with a different config; refusing to resume it. Differences "
            f"(checkpoint -> now): {'; '.join(diff) or 'none visible'}. Use another --out folder, or "
            "delete the folder to start over."
        )
    return state
