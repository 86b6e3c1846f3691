"""The Gymnasium env that stable-baselines3 trains on: a task's env config as one env.

``make_env(cfg, seed)`` is ``gym.make(cfg.id, max_episode_steps=..., **kwargs)`` wrapped in
:class:`ResumableFriction` (rlplast's friction wrapper with the task's schedule, seeded by the run's
seed, so SB3 run k sees the same friction sequence as rlplast's run k) and SB3's ``Monitor``
(episode returns and lengths in ``info["episode"]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor

import rlplast  # noqa: F401  (registers the rlplast ids)
from rlplast.envs.friction import ChangingFriction
from rlplast.envs.vec import EnvConfig


class ResumableFriction(ChangingFriction):
    """:class:`ChangingFriction` whose schedule position can be saved and restored.

    SB3 does not save its env, so a resumed SB3 run starts a new episode; these methods carry
    the schedule over (env steps so far and the friction in effect).
    """

    def schedule_state(self) -> dict[str, Any]:
        """The schedule's seed, env steps so far and current friction (CPU tensors)."""
        return self._clock.state_dict()

    def load_schedule_state(self, state: Mapping[str, Any]) -> float:
        """Continue the schedule from ``state``, as at an episode start; returns the friction now.

        Call after ``reset()``: the reset restarted the schedule, this puts it back where it was
        and applies any change due at an episode end.
        """
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before load_schedule_state()")
        self._clock.load_state_dict(dict(state))
        self._clock.episode_end(np.ones(1, dtype=bool))  # a new episode starts now
        self._setter.set(self._clock.friction[0])
        return self.friction


def make_env(cfg: EnvConfig, seed: int, monitor: bool = True) -> gym.Env:
    """One env of ``cfg`` (id, kwargs, time limit, friction) whose schedule is seeded by ``seed``.

    Args:
        cfg: the task's env config.
        seed: the run seed (the schedule's; the Ant's reset noise follows the seed SB3 resets with).
        monitor: wrap in SB3's ``Monitor`` (needed for episode statistics).
    """
    env = gym.make(cfg.id, max_episode_steps=cfg.max_episode_steps, **cfg.env_kwargs())
    env = ResumableFriction(env, cfg.friction, schedule_seed=seed)
    return Monitor(env) if monitor else env
