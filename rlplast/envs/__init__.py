"""Non-stationary environments: friction schedules, the Gymnasium wrapper, batched VecEnvs."""

from __future__ import annotations

import gymnasium as gym

ENV_IDS = {
    "rlplast/SlipperyAnt-v0": "rlplast.envs.friction:make_slippery_ant",
    "rlplast/Ant-v0": "rlplast.envs.friction:make_constant_ant",
}


def register_envs() -> None:
    """Register the rlplast Gymnasium ids (idempotent; entry points import lazily)."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=1000)
