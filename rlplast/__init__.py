"""rlplast: a benchmark suite for loss of plasticity in non-stationary control.

Importing the package registers the Gymnasium ids ``rlplast/SlipperyAnt-v0`` and ``rlplast/Ant-v0``.
``rlplast.load_policy`` and ``rlplast.train_group`` are imported on first use (they bring torch).
"""

from typing import Any

from rlplast.envs import register_envs

register_envs()

__version__ = "0.1.0"

_LAZY = {"load_policy": "rlplast.policy", "train_group": "rlplast.runner", "load_config": "rlplast.config"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlplast' has no attribute {name!r}")
