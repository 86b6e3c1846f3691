"""CpuVecEnv: any locomotion task (rlplast.envs.tasks) for N envs on MuJoCo C, stepped in threads.

Each env has its own ``MjModel`` (its friction may differ) and ``MjData``, and is stepped with the
calls Gymnasium's ``MujocoEnv`` makes (``mj_step`` x frame_skip, then ``mj_rnePostConstraint``),
so a run matches ``gym.make(task.env_id)`` with the friction wrapper step for step. The calling
thread and a pool of helpers take envs one at a time from a shared queue; ``mj_step`` releases
the GIL, so envs simulate in parallel, and the Python cost per env is a ctrl copy and one copy
per array the task reads. Observation, reward and termination are then computed for all N envs
at once by the task.

Why not ``mujoco.rollout``: it keeps one MjData per thread and copies the state in and out, which
loses the solver warm start between env steps (so it would not match Gymnasium exactly), and it
cannot run ``mj_rnePostConstraint``, which contact costs and observations need.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mujoco
import numpy as np
import torch

from rlplast.envs.autoreset import AutoResetVecEnv
from rlplast.envs.friction import FrictionSetter
from rlplast.envs.tasks import LocomotionTask, task_class
from rlplast.envs.vec import EnvConfig

# MuJoCo's warnings for a NaN/inf (or huge) qpos, qvel or qacc; it resets the data when they fire.
# (consecutive in mjtWarning, so a slice of ``data.warning.number`` is a live view of the three)
BAD_STATE_WARNINGS = slice(int(mujoco.mjtWarning.mjWARN_BADQPOS), int(mujoco.mjtWarning.mjWARN_BADQACC) + 1)
STATE_SPEC = int(mujoco.mjtState.mjSTATE_INTEGRATION)
# What mj_rnePostConstraint computes; nothing the next mj_step reads (force sensors, which would,
# make mj_step call it itself).
RNE_POST_CONSTRAINT_OUTPUTS = ("cacc", "cfrc_int", "cfrc_ext")


def reads_rne_outputs(views: dict[str, np.ndarray], data: mujoco.MjData) -> bool:
    """Whether any of a task's views of ``data`` is (part of) an array mj_rnePostConstraint fills."""
    outputs = [getattr(data, name) for name in RNE_POST_CONSTRAINT_OUTPUTS]
    return any(np.shares_memory(view, out) for view in views.values() for out in outputs)


def available_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class CpuVecEnv(AutoResetVecEnv):
    """A locomotion task x N on MuJoCo C (see the module docstring).

    Args:
        cfg: the env config (``id``: an env id of rlplast.envs.tasks.TASKS).
        num_runs: R; N = R * cfg.envs_per_run.
        device: where returned tensors live.
        num_threads: simulator threads (default ``cfg.num_threads``, else every available core).
    """

    backend = "cpu"

    def __init__(
        self, cfg: EnvConfig, num_runs: int, device: str | torch.device = "cpu", num_threads: int | None = None
    ):
        self.task: LocomotionTask = task_class(cfg.id)(cfg.env_kwargs())
        self.spec = self.task.spec
        base = self.task.model
        n = num_runs * cfg.envs_per_run
        super().__init__(cfg, num_runs, self.task.obs_dim, base.nu, device)
        self.dt = self.task.dt
        self._scales_own = self.task.friction_scales_own
        FrictionSetter(base, cfg.friction.mode)  # floor mode: raise the floor's priority once
        self._base = base
        # envs with the same friction share one model (fewer models in the caches: faster)
        self._model_cache: dict[float, mujoco.MjModel] = {}
        self.models = [base] * n
        self.datas = [mujoco.MjData(base) for _ in range(n)]
        self._qpos0 = self.datas[0].qpos.copy()
        self._qvel0 = self.datas[0].qvel.copy()
        # batched arrays the threads fill, from live views into every MjData (made once: cheap per step)
        views = [self.task.views(d) for d in self.datas]
        self._sim = {key: np.zeros((n, *np.shape(view))) for key, view in views[0].items()}
        self._ctrl = np.zeros((n, base.nu))
        self._ctrl_views = [d.ctrl for d in self.datas]
        self._warnings = np.zeros((n, BAD_STATE_WARNINGS.stop - BAD_STATE_WARNINGS.start), dtype=np.int32)
        # per env: (batched array, live view) pairs copied after each step or reset
        self._copies = [
            [*((self._sim[key], view) for key, view in v.items()), (self._warnings, warnings)]
            for v, warnings in zip(views, (d.warning.number[BAD_STATE_WARNINGS] for d in self.datas), strict=True)
        ]
        self._x = np.zeros(n)  # the task's forward position after each env's last step or reset
        self._rne = reads_rne_outputs(views[0], self.datas[0])
        threads = max(1, min(num_threads or cfg.num_threads or available_cores(), n))
        # the calling thread steps envs too, with threads - 1 helpers
        self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="rlplast-mj") if threads > 1 else None
        self.num_threads = threads

    # ---- simulation ----------------------------------------------------------------------------

    def _gather(self, n: int) -> None:
        for batch, view in self._copies[n]:
            batch[n] = view

    def _step_envs(self, queue: Iterator[int]) -> None:
        """Step envs taken one by one from ``queue``, shared by all threads (dynamic balancing)."""
        # the only per-env Python: a ctrl copy, one or two MuJoCo calls (GIL released) and the copies
        step, rne, nsub = mujoco.mj_step, mujoco.mj_rnePostConstraint, self.spec.frame_skip
        models, datas, ctrl_views, ctrl, copies = self.models, self.datas, self._ctrl_views, self._ctrl, self._copies
        with_rne = self._rne
        for n in queue:
            m, d = models[n], datas[n]
            ctrl_views[n][:] = ctrl[n]
            step(m, d, nsub)
            if with_rne:
                rne(m, d)
            for batch, view in copies[n]:
                batch[n] = view

    def _simulate(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self._ctrl[:] = actions
        # A range iterator hands out each index once even when threads share it (its next() runs
        # under the GIL), so a thread that the OS pauses leaves its envs to the others.
        queue = iter(range(self.num_envs))
        helpers = [self._pool.submit(self._step_envs, queue) for _ in range(self.num_threads - 1)] if self._pool else []
        self._step_envs(queue)
        for helper in helpers:
            helper.result()
        task, sim = self.task, self._sim
        x_before, self._x = self._x, np.array(task.position(sim))
        healthy = task.healthy(sim)
        reward = task.reward(sim, x_before, self._x, actions, healthy)
        obs = task.observation(sim)
        bad = self._warnings.any(axis=1)
        return obs, reward, task.terminated(healthy), np.zeros(self.num_envs, dtype=bool), bad

    def _reset_envs(self, idx: np.ndarray) -> np.ndarray:
        for n in idx:
            m, d = self.models[n], self.datas[n]
            mujoco.mj_resetData(m, d)  # also clears the warning counters
            # the same draws, in the same order, as the Gymnasium env's reset_model
            d.qpos[:], d.qvel[:] = self.task.reset_state(self.rngs[n], self._qpos0, self._qvel0)
            mujoco.mj_forward(m, d)
            self._gather(n)
        sim = {key: batch[idx] for key, batch in self._sim.items()}
        self._x[idx] = self.task.position(sim)
        return self.task.observation(sim)

    def _model_for(self, friction: float) -> mujoco.MjModel:
        """The shared model with this friction (made on first use)."""
        model = self._model_cache.get(friction)
        if model is None:
            if len(self._model_cache) >= 2 * self.num_envs:  # forget the frictions no env has now
                in_use = set(self.clock.friction.tolist())
                self._model_cache = {f: m for f, m in self._model_cache.items() if f in in_use}
            model = copy.copy(self._base)
            FrictionSetter(model, self.cfg.friction.mode, scales_own=self._scales_own).set(friction)
            self._model_cache[friction] = model
        return model

    def _set_friction(self, idx: np.ndarray) -> None:
        for n in idx:
            self.models[n] = self._model_for(float(self.clock.friction[n]))

    # ---- state ---------------------------------------------------------------------------------

    def _sim_state_dict(self) -> dict[str, Any]:
        size = mujoco.mj_stateSize(self.models[0], STATE_SPEC)
        state = np.empty((self.num_envs, size))
        for m, d, row in zip(self.models, self.datas, state, strict=True):
            mujoco.mj_getState(m, d, row, STATE_SPEC)
        # x_after: the forward position after the last step, the next step's "before" (derived)
        return {"state": torch.from_numpy(state), "x_after": torch.from_numpy(self._x.copy())}

    def _load_sim_state_dict(self, state: dict[str, Any]) -> None:
        sim = np.ascontiguousarray(np.asarray(state["state"], dtype=np.float64))
        size = mujoco.mj_stateSize(self.models[0], STATE_SPEC)
        if sim.shape != (self.num_envs, size):
            raise ValueError(f"simulator state has shape {sim.shape}, expected {(self.num_envs, size)}")
        for m, d, row in zip(self.models, self.datas, sim, strict=True):
            mujoco.mj_setState(m, d, row, STATE_SPEC)
        self._x[:] = np.asarray(state["x_after"])

    def close(self) -> None:
        """Stop the simulator threads."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
