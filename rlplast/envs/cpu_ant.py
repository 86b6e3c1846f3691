"""CpuAntVecEnv: Gymnasium's Ant-v5 rebuilt for N envs on MuJoCo C, stepped in threads.

Each env has its own ``MjModel`` (its friction may differ) and ``MjData``, and is stepped with the
same calls Gymnasium makes (``mj_step`` x frame_skip, then ``mj_rnePostConstraint``), so a run
matches ``gym.make("rlplast/SlipperyAnt-v0")`` step for step. The calling thread and a pool of
helpers take envs one at a time from a shared queue; ``mj_step`` releases the GIL, so envs
simulate in parallel, and the Python cost per env is a few array copies. Observation, reward and
termination are then computed for all N envs at once by ``rlplast.envs.ant_math``.

Why not ``mujoco.rollout``: it keeps one MjData per thread and copies the state in and out, which
loses the solver warm start between env steps (so it would not match Gymnasium exactly), and it
cannot run ``mj_rnePostConstraint``, which the contact cost needs.
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
from gymnasium.envs.mujoco.mujoco_env import expand_model_path
from pydantic import ValidationError

from rlplast.envs import ant_math
from rlplast.envs.ant_math import AntSpec
from rlplast.envs.autoreset import AutoResetVecEnv
from rlplast.envs.friction import FrictionSetter
from rlplast.envs.vec import EnvConfig

# MuJoCo's warnings for a NaN/inf (or huge) qpos, qvel or qacc; it resets the data when they fire.
# (consecutive in mjtWarning, so a slice of ``data.warning.number`` is a live view of the three)
BAD_STATE_WARNINGS = slice(int(mujoco.mjtWarning.mjWARN_BADQPOS), int(mujoco.mjtWarning.mjWARN_BADQACC) + 1)
STATE_SPEC = int(mujoco.mjtState.mjSTATE_INTEGRATION)


def available_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parse_ant_kwargs(kwargs: dict[str, Any]) -> AntSpec:
    """AntSpec from Ant-v5 keyword arguments, or a ValueError naming the bad key and the allowed ones."""
    try:
        return AntSpec.model_validate(kwargs)
    except ValidationError as err:
        allowed = ", ".join(AntSpec.model_fields)
        raise ValueError(f"bad Ant-v5 kwargs for the cpu backend: {err}\nallowed keys: {allowed}") from None


class CpuAntVecEnv(AutoResetVecEnv):
    """Ant-v5 x N on MuJoCo C (see the module docstring).

    Args:
        cfg: the env config (``id`` must be ``Ant-v5``).
        num_runs: R; N = R * cfg.envs_per_run.
        device: where returned tensors live.
        num_threads: simulator threads (default ``cfg.num_threads``, else every available core).
    """

    backend = "cpu"

    def __init__(
        self, cfg: EnvConfig, num_runs: int, device: str | torch.device = "cpu", num_threads: int | None = None
    ):
        self.spec = parse_ant_kwargs(cfg.env_kwargs())
        base = mujoco.MjModel.from_xml_path(expand_model_path(self.spec.xml_file))
        n = num_runs * cfg.envs_per_run
        super().__init__(cfg, num_runs, self.spec.obs_dim(base.nq, base.nv, base.nbody), base.nu, device)
        body = self.spec.main_body
        self.main_body = body if isinstance(body, int) else mujoco.mj_name2id(base, mujoco.mjtObj.mjOBJ_BODY, body)
        if not 0 <= self.main_body < base.nbody:
            raise ValueError(f"main_body {body!r} is not a body of {self.spec.xml_file}")
        self.dt = base.opt.timestep * self.spec.frame_skip
        FrictionSetter(base, cfg.friction.mode)  # floor mode: raise the floor's priority once
        self._base = base
        # envs with the same friction share one model (fewer models in the caches: faster)
        self._model_cache: dict[float, mujoco.MjModel] = {}
        self.models = [base] * n
        self.datas = [mujoco.MjData(base) for _ in range(n)]
        self._qpos0 = self.datas[0].qpos.copy()
        self._qvel0 = self.datas[0].qvel.copy()
        # batched buffers the threads fill, and views into every MjData (made once: cheap per step)
        self._ctrl = np.zeros((n, base.nu))
        self._qpos = np.zeros((n, base.nq))
        self._qvel = np.zeros((n, base.nv))
        self._cfrc = np.zeros((n, base.nbody, 6))
        self._x_before = np.zeros(n)
        self._x_after = np.zeros(n)
        self._warnings = np.zeros((n, BAD_STATE_WARNINGS.stop - BAD_STATE_WARNINGS.start), dtype=np.int32)
        self._views = [
            (d.ctrl, d.qpos, d.qvel, d.cfrc_ext, d.xpos[self.main_body], d.warning.number[BAD_STATE_WARNINGS])
            for d in self.datas
        ]
        threads = max(1, min(num_threads or cfg.num_threads or available_cores(), n))
        # the calling thread steps envs too, with threads - 1 helpers
        self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="rlplast-mj") if threads > 1 else None
        self.num_threads = threads

    # ---- simulation ----------------------------------------------------------------------------

    def _gather(self, n: int) -> None:
        _, qpos, qvel, cfrc, xpos, warnings = self._views[n]
        self._qpos[n] = qpos
        self._qvel[n] = qvel
        self._cfrc[n] = cfrc
        self._x_after[n] = xpos[0]
        self._warnings[n] = warnings

    def _step_envs(self, queue: Iterator[int]) -> None:
        """Step envs taken one by one from ``queue``, shared by all threads (dynamic balancing)."""
        # the only per-env Python: a ctrl copy, two MuJoCo calls (GIL released) and five copies
        step, rne, nsub = mujoco.mj_step, mujoco.mj_rnePostConstraint, self.spec.frame_skip
        models, datas, views, ctrl, gather = self.models, self.datas, self._views, self._ctrl, self._gather
        for n in queue:
            m, d = models[n], datas[n]
            views[n][0][:] = ctrl[n]
            step(m, d, nsub)
            rne(m, d)
            gather(n)

    def _simulate(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self._ctrl[:] = actions
        self._x_before[:] = self._x_after
        # A range iterator hands out each index once even when threads share it (its next() runs
        # under the GIL), so a thread that the OS pauses leaves its envs to the others.
        queue = iter(range(self.num_envs))
        helpers = [self._pool.submit(self._step_envs, queue) for _ in range(self.num_threads - 1)] if self._pool else []
        self._step_envs(queue)
        for helper in helpers:
            helper.result()
        spec = self.spec
        healthy = ant_math.is_healthy(self._qpos, self._qvel, spec)
        reward = ant_math.reward(self._x_before, self._x_after, actions, self._cfrc, healthy, spec, self.dt)
        obs = ant_math.observation(self._qpos, self._qvel, self._cfrc, spec)
        bad = self._warnings.any(axis=1)
        return obs, reward, ant_math.terminated(healthy, spec), np.zeros(self.num_envs, dtype=bool), bad

    def _reset_envs(self, idx: np.ndarray) -> np.ndarray:
        scale = self.spec.reset_noise_scale
        for n in idx:
            m, d, rng = self.models[n], self.datas[n], self.rngs[n]
            mujoco.mj_resetData(m, d)  # also clears the warning counters
            # the same draws, in the same order, as Ant-v5's reset_model
            d.qpos[:] = self._qpos0 + rng.uniform(low=-scale, high=scale, size=m.nq)
            d.qvel[:] = self._qvel0 + scale * rng.standard_normal(m.nv)
            mujoco.mj_forward(m, d)
            self._gather(n)
        return ant_math.observation(self._qpos[idx], self._qvel[idx], self._cfrc[idx], self.spec)

    def _model_for(self, friction: float) -> mujoco.MjModel:
        """The shared model with this friction (made on first use)."""
        model = self._model_cache.get(friction)
        if model is None:
            if len(self._model_cache) >= 2 * self.num_envs:  # forget the frictions no env has now
                in_use = set(self.clock.friction.tolist())
                self._model_cache = {f: m for f, m in self._model_cache.items() if f in in_use}
            model = copy.copy(self._base)
            FrictionSetter(model, self.cfg.friction.mode).set(friction)
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
        # x_after: main-body x of the last step, the next step's "before" (a derived quantity)
        return {"state": torch.from_numpy(state), "x_after": torch.from_numpy(self._x_after.copy())}

    def _load_sim_state_dict(self, state: dict[str, Any]) -> None:
        sim = np.ascontiguousarray(np.asarray(state["state"], dtype=np.float64))
        size = mujoco.mj_stateSize(self.models[0], STATE_SPEC)
        if sim.shape != (self.num_envs, size):
            raise ValueError(f"simulator state has shape {sim.shape}, expected {(self.num_envs, size)}")
        for m, d, row in zip(self.models, self.datas, sim, strict=True):
            mujoco.mj_setState(m, d, row, STATE_SPEC)
        self._x_after[:] = np.asarray(state["x_after"])

    def close(self) -> None:
        """Stop the simulator threads."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
