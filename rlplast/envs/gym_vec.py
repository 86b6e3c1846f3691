"""GymVecEnv: any Gymnasium MuJoCo env id behind the VecEnv contract (backend ``gym``).

A plain list of N envs made by ``gym.make(id, **kwargs)``, stepped one after another in Python.
Friction, seeding, autoreset and bookkeeping are shared with the ``cpu`` backend (see
rlplast.envs.autoreset), so on Ant-v5 both backends give identical results; this one is the
slower, general route (HalfCheetah, Hopper, Walker2d, Humanoid, ...).

The state dict holds each env's MuJoCo integration state, the derived arrays that Gymnasium's
MuJoCo envs read before stepping (body positions, contact forces, ...), and the time-limit
counter: exact for envs whose whole state lives in their MjData, as Gymnasium's MuJoCo envs' does.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import torch
from torch import Tensor

from rlplast.envs.autoreset import AutoResetVecEnv
from rlplast.envs.cpu_mujoco import BAD_STATE_WARNINGS, STATE_SPEC
from rlplast.envs.friction import FrictionSetter, mujoco_model_of
from rlplast.envs.tasks import friction_scales_own
from rlplast.envs.vec import EnvConfig

# MjData arrays computed from the state that envs may read before their next mj_step.
DERIVED_FIELDS = (
    "xpos",
    "xquat",
    "xmat",
    "xipos",
    "ximat",
    "subtree_com",
    "cinert",
    "cvel",
    "cacc",
    "cfrc_int",
    "cfrc_ext",
    "qacc",
    "actuator_force",
    "sensordata",
)


def _flat_box_dim(space: gym.Space, what: str, env_id: str) -> int:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"backend 'gym' needs a 1-D Box {what} space; {env_id!r} has {space}")
    return int(space.shape[0])


class GymVecEnv(AutoResetVecEnv):
    """N Gymnasium MuJoCo envs with per-run friction schedules (see the module docstring).

    Args:
        cfg: the env config (any Gymnasium MuJoCo id).
        num_runs: R; N = R * cfg.envs_per_run.
        device: where returned tensors live.
    """

    backend = "gym"

    def __init__(self, cfg: EnvConfig, num_runs: int, device: str | torch.device = "cpu"):
        n = num_runs * cfg.envs_per_run
        kwargs = cfg.env_kwargs()
        self.envs = [
            gym.make(cfg.id, max_episode_steps=cfg.max_episode_steps, disable_env_checker=True, **kwargs)
            for _ in range(n)
        ]
        scales_own = friction_scales_own(cfg.id)
        self.setters = [
            FrictionSetter(mujoco_model_of(env), cfg.friction.mode, scales_own=scales_own) for env in self.envs
        ]
        space = self.envs[0]
        super().__init__(
            cfg,
            num_runs,
            _flat_box_dim(space.observation_space, "observation", cfg.id),
            _flat_box_dim(space.action_space, "action", cfg.id),
            device,
        )
        self._has_reset = [False] * n

    def _bind_rngs(self) -> None:
        for env, rng in zip(self.envs, self.rngs, strict=True):
            env.unwrapped.np_random = rng

    def _simulate(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = self.num_envs
        obs = np.empty((n, self.obs_dim))
        reward = np.empty(n)
        flags = np.zeros((3, n), dtype=bool)  # terminated, truncated, bad
        for i, env in enumerate(self.envs):
            obs[i], reward[i], flags[0, i], flags[1, i], _ = env.step(actions[i])
            flags[2, i] = env.unwrapped.data.warning.number[BAD_STATE_WARNINGS].any()
        return obs, reward, flags[0], flags[1], flags[2]

    def _reset_envs(self, idx: np.ndarray) -> np.ndarray:
        rows = []
        for i in idx:
            rows.append(np.asarray(self.envs[i].reset()[0], dtype=np.float64))
            self._has_reset[i] = True
        return np.stack(rows)

    def _set_friction(self, idx: np.ndarray) -> None:
        for i in idx:
            self.setters[i].set(self.clock.friction[i])

    def _sim_state_dict(self) -> dict[str, Any]:
        model = mujoco_model_of(self.envs[0])
        state = np.empty((self.num_envs, mujoco.mj_stateSize(model, STATE_SPEC)))
        derived: dict[str, list[Tensor]] = {f: [] for f in DERIVED_FIELDS}
        for env, row in zip(self.envs, state, strict=True):
            data = env.unwrapped.data
            mujoco.mj_getState(env.unwrapped.model, data, row, STATE_SPEC)
            for f in DERIVED_FIELDS:
                derived[f].append(torch.from_numpy(getattr(data, f).copy()))
        return {
            "state": torch.from_numpy(state),
            "derived": {f: torch.stack(v) for f, v in derived.items()},
            "elapsed_steps": [int(env.get_wrapper_attr("_elapsed_steps")) for env in self.envs],
        }

    def _load_sim_state_dict(self, state: dict[str, Any]) -> None:
        sim = np.asarray(state["state"], dtype=np.float64)
        if sim.shape[0] != self.num_envs:
            raise ValueError(f"simulator state is for {sim.shape[0]} envs, this env has {self.num_envs}")
        for i, env in enumerate(self.envs):
            if not self._has_reset[i]:  # Gymnasium's order check wants a reset first
                env.reset()
                self._has_reset[i] = True
            data = env.unwrapped.data
            mujoco.mj_setState(env.unwrapped.model, data, np.ascontiguousarray(sim[i]), STATE_SPEC)
            for f in DERIVED_FIELDS:
                getattr(data, f)[...] = np.asarray(state["derived"][f][i])
            env.set_wrapper_attr("_elapsed_steps", int(state["elapsed_steps"][i]))

    def close(self) -> None:
        """Close every env."""
        for env in self.envs:
            env.close()
