"""Non-stationary environments: friction schedules, the Gymnasium wrapper, batched VecEnvs.

The public names below are imported on first use, so that ``import rlplast`` (which registers the
Gymnasium ids) stays cheap: ``ChangingFriction``, ``FrictionConfig``, ``EnvConfig``, ``VecEnv``,
``StepResult``, ``make_vec_env``, ``parse_schedule``.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym

ENV_IDS = {
    "rlplast/SlipperyAnt-v0": "rlplast.envs.friction:make_slippery_ant",
    "rlplast/Ant-v0": "rlplast.envs.friction:make_constant_ant",
}

_LAZY = {
    "ChangingFriction": "rlplast.envs.friction",
    "FrictionConfig": "rlplast.envs.friction",
    "EnvConfig": "rlplast.envs.vec",
    "VecEnv": "rlplast.envs.vec",
    "StepResult": "rlplast.envs.vec",
    "make_vec_env": "rlplast.envs.factory",
    "parse_schedule": "rlplast.envs.schedules",
}

__all__ = ["ENV_IDS", "register_envs", *_LAZY]


def register_envs() -> None:
    """Register the rlplast Gymnasium ids (idempotent; entry points import lazily)."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=1000)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlplast.envs' has no attribute {name!r}")
