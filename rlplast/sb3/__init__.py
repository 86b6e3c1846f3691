"""stable-baselines3 interop: SB3's PPO as a reference row, and CBP for SB3 users.

* :class:`CBPCallback` / :class:`PolicyCBP`: continual backprop on an SB3 PPO policy's MLPs,
  after every optimizer step (rlplast.sb3.cbp).
* :func:`make_env`: a task's env config as one Gymnasium env for SB3 (rlplast.sb3.env).
* :func:`build_sb3_ppo`: SB3's PPO with an rlplast config's network and hyperparameters
  (rlplast.sb3.model).
* :func:`train_sb3`: SB3's PPO into rlplast's results layout; ``rlplast train --agent sb3`` and
  methods with ``implementation: sb3`` use it (rlplast.sb3.trainer).

Names are imported on first use, so that ``import rlplast.sb3`` costs nothing until then.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "CBPCallback": "rlplast.sb3.cbp",
    "PolicyCBP": "rlplast.sb3.cbp",
    "make_env": "rlplast.sb3.env",
    "ResumableFriction": "rlplast.sb3.env",
    "build_sb3_ppo": "rlplast.sb3.model",
    "policy_networks": "rlplast.sb3.layers",
    "train_sb3": "rlplast.sb3.trainer",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlplast.sb3' has no attribute {name!r}")
