"""Nested configs and states as flat ``dotted.key -> value`` mappings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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
