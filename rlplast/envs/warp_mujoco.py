"""WarpTaskVecEnv: any locomotion task of rlplast.envs.tasks on mujoco_warp, N worlds in one batch.

The task's own functions (observation, healthy, reward, terminated, reset_state, position),
the ones the cpu backend calls with numpy, run here on torch views of mujoco_warp's arrays
(``wp.to_torch``: no copies) on the env's device. The VecEnv contract is rlplast.envs.vec's.

One env step:

1. ``ctrl = action``; ``frame_skip`` x ``mjw.step``, then ``mjw.rne_postconstraint`` where the
   task reads ``cfrc_ext`` (Gymnasium's ``MujocoEnv`` step), then the next episode's reset noise
   of every world (rlplast.envs.warp_noise): one captured graph (a CUDA graph on a GPU, Warp's
   replay on its CPU device).
2. reward, termination, observation by the task (torch, on the device); a NaN/inf state or
   reward ends the episode with reward 0 and is counted, as on the cpu backend.
3. ended worlds take their run's scheduled friction (``apply: episode_end``; with ``immediate``
   every world takes it at once), then are reset as Gymnasium resets: ``qpos``/``qvel`` from the
   task's ``reset_state`` on the device noise, warm start, time, ctrl and contact forces zeroed,
   and ``mjw.forward`` (a second captured graph) where the task reads more than qpos and qvel.

Nothing waits for the host but the device checks (every ``check_every`` steps: buffer overflow,
and on CUDA non-finite actions), as in rlplast.envs.warp_ant. Friction is per world (mujoco_warp's
batched ``geom_friction [N, ngeom]``), written in place; the schedule value multiplies each geom's
own sliding friction, or replaces it where the task says so (``friction_scales_own``: Ant).

Reset noise is the task's distribution drawn from a stream keyed by (run seed, env index, episode
count): reproducible for a seed, but not the cpu backend's numbers. mujoco_warp computes in
float32 (MuJoCo C in float64); the tests measure the differences per task.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np
import torch
from torch import Tensor

from rlplast.envs.friction import FrictionSetter
from rlplast.envs.seeding import check_seeds
from rlplast.envs.tasks import LocomotionTask, task_class
from rlplast.envs.vec import EnvConfig, StepResult, VecEnv
from rlplast.envs.warp_runtime import (
    GraphStep,
    ScheduleTargets,
    batched_simulator,
    import_warp,
    noise_keys,
    raise_on_overflow,
    resolve_device,
    restore_tensors,
)

# Simulator state that state_dict saves; per-world buffers of this env that it saves too.
SIM_STATE = ("qpos", "qvel", "qacc_warmstart", "time")
STATE_BUFFERS = ("x_prev", "ep_len", "ep_ret", "reset_count", "friction", "nonfinite")


class _PerWorld:
    """A simulator field ``[N, ...]`` as a task's ``views`` indexes one env's: ``field[i]`` is
    ``[N, ...][:, i]`` (Ant reads ``data.xpos[main_body]``)."""

    def __init__(self, tensor: Tensor):
        self.tensor = tensor

    def __getitem__(self, index: Any) -> _PerWorld:
        return _PerWorld(self.tensor[:, index])


class _WorldsData:
    """mujoco_warp's Data seen as one ``MjData`` by :meth:`LocomotionTask.views` (torch views)."""

    def __init__(self, wp: Any, data: Any):
        self._wp, self._data = wp, data

    def __getattr__(self, name: str) -> _PerWorld:
        return _PerWorld(self._wp.to_torch(getattr(self._data, name)))


class WarpTaskVecEnv(VecEnv):
    """A locomotion task x N on mujoco_warp (see the module docstring).

    Args:
        cfg: the env config (``id``: a task of rlplast.envs.tasks.TASKS whose model mujoco_warp supports).
        num_runs: R; N = R * cfg.envs_per_run worlds.
        device: ``cuda[:k]`` (the point of this backend) or ``cpu`` (Warp's CPU device: slow, for tests).
        nconmax: contacts allocated per world (pooled over worlds); default: the model's worst case.
        njmax: constraint rows per world; default: the model's worst case.
        check_every: env steps between the device checks (overflow, non-finite actions).
        capture: run the simulator's part of each step as a captured graph (False: plain launches).

    Raises:
        NotImplementedError: mujoco_warp cannot simulate the model (the message says what), or the
            model has contact pairs (their friction is not batched here).
    """

    backend = "warp"

    def __init__(
        self,
        cfg: EnvConfig,
        num_runs: int,
        device: str | torch.device = "cuda",
        *,
        nconmax: int | None = None,
        njmax: int | None = None,
        check_every: int | None = None,
        capture: bool = True,
    ):
        wp, mjw = import_warp()
        torch_device, self.wp_device = resolve_device(device)
        self.task: LocomotionTask = task_class(cfg.id)(cfg.env_kwargs())
        mjm = self.task.model
        setter = FrictionSetter(mjm, cfg.friction.mode)  # floor mode: raise the floor's priority once
        if mjm.npair:
            raise NotImplementedError(f"the warp backend does not batch <pair> friction; {cfg.id} has {mjm.npair}")
        super().__init__(num_runs, cfg.envs_per_run, self.task.obs_dim, mjm.nu, torch_device)
        self.cfg, self.spec, self.dt = cfg, self.task.spec, self.task.dt
        try:
            self.model, self.data, sizes = batched_simulator(
                mjm, self.num_envs, self.wp_device, nconmax, njmax, check_every
            )
        except NotImplementedError as err:
            raise NotImplementedError(f"mujoco_warp cannot simulate {cfg.id}'s model: {err}") from None
        self.nconmax, self.njmax, self.check_every = sizes["nconmax"], sizes["njmax"], sizes["check_every"]
        self._wp, self._mjw = wp, mjw
        self._noise = importlib.import_module("rlplast.envs.warp_noise")  # imports warp: only once it is there
        self._alloc(mjm, setter)
        # what the task reads, as torch views [N, ...] of the simulator's arrays
        self._sim = {k: v.tensor for k, v in self.task.views(_WorldsData(wp, self.data)).items()}
        self._rne = "cfrc_ext" in self._sim
        # derived quantities (xpos, cfrc_ext, ...) need a forward pass after a reset; qpos, qvel do not
        self._reset_forward = not set(self._sim) <= {"qpos", "qvel"}
        self._physics = GraphStep(wp, self.wp_device, torch_device, self._physics_body, capture)
        self._forward = GraphStep(wp, self.wp_device, torch_device, lambda: mjw.forward(self.model, self.data), capture)
        self.seeds: list[int] = [0] * self.num_runs
        self.run_steps = np.zeros(self.num_runs, dtype=np.int64)
        self._since_check = 0
        self._started = False
        wp.synchronize_device(self.wp_device)

    # ---- construction ----------------------------------------------------------------------------

    def _alloc(self, mjm: mujoco.MjModel, setter: FrictionSetter) -> None:
        wp, n, dev = self._wp, self.num_envs, self.device

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
            return torch.zeros(shape, dtype=dtype, device=dev)

        # noise columns: every task draws at most nq + nv values per reset
        width = mjm.nq + mjm.nv
        self._t: dict[str, Tensor] = {
            "x_prev": zeros(n),
            "ep_len": zeros(n, dtype=torch.int64),
            "ep_ret": zeros(n),
            "reset_count": zeros(n, dtype=torch.int32),
            "rng_key": zeros(n, dtype=torch.int32),
            "friction": zeros(n),
            "nonfinite": zeros(n, dtype=torch.int64),
            "bad_action": zeros(n, dtype=torch.bool),
            "uniform": zeros(n, width),
            "normal": zeros(n, width),
        }
        self._w = {k: wp.from_torch(self._t[k]) for k in ("reset_count", "rng_key", "uniform", "normal")}
        d = self.data
        self._state = {k: wp.to_torch(getattr(d, k)) for k in (*SIM_STATE, "ctrl", "act", "cfrc_ext", "overflow")}
        self._geom_friction = wp.to_torch(self.model.geom_friction)[:, :, 0]  # [N, ngeom] sliding, a view
        self._friction_geoms = torch.as_tensor(setter.geoms, dtype=torch.int64, device=dev)
        own = setter._own_geoms if self.task.friction_scales_own else np.ones(len(setter.geoms))
        self._own_friction = torch.as_tensor(own, dtype=torch.float32, device=dev)  # [G]
        self._qpos0 = torch.as_tensor(mjm.qpos0, dtype=torch.float32, device=dev)
        self._qvel0 = torch.zeros(mjm.nv, dtype=torch.float32, device=dev)
        self._targets = ScheduleTargets(self.cfg.friction.schedule, self.num_runs, dev)
        self._run_steps_dev = zeros(self.num_runs, dtype=torch.int64)

    def _physics_body(self) -> None:
        """The captured part: frame_skip steps, contact forces, and the next reset's noise."""
        mjw, m, d = self._mjw, self.model, self.data
        for _ in range(self.spec.frame_skip):
            mjw.step(m, d)
        if self._rne:
            mjw.rne_postconstraint(m, d)  # cfrc_ext, as Gymnasium's mj_rnePostConstraint
        self._draw_noise()

    def _draw_noise(self) -> None:
        w = self._w
        inputs = [w["rng_key"], w["reset_count"], w["uniform"], w["normal"]]
        self._wp.launch(self._noise.draw_noise, self.num_envs, inputs=inputs)

    # ---- per-world updates (torch, on the device) ------------------------------------------------

    def _targets_per_world(self) -> Tensor:
        return self._targets.target.repeat_interleave(self.envs_per_run)

    def _write_friction(self) -> None:
        """geom_friction of every world from its ``friction`` value."""
        values = self._t["friction"][:, None] * self._own_friction[None, :]  # [N, G]
        self._geom_friction[:, self._friction_geoms] = values

    def _reset_worlds(self, mask: Tensor) -> Tensor:
        """Start a new episode in worlds ``mask [N]``; returns the observation ``[N, obs_dim]``
        of every world after it (the new episode's first where ``mask``)."""
        task, st, t = self.task, self._state, self._t
        noise = self._noise.DeviceNoise(t["uniform"], t["normal"])
        qpos, qvel = task.reset_state(noise, self._qpos0, self._qvel0)
        rows = mask[:, None]
        st["qpos"].copy_(torch.where(rows, qpos, st["qpos"]))
        st["qvel"].copy_(torch.where(rows, qvel, st["qvel"]))
        # what mj_resetData clears and the next step reads (cfrc_ext: the reset observation's)
        for key in ("qacc_warmstart", "ctrl", "act", "cfrc_ext", "time"):
            view = st[key]
            view.masked_fill_(mask.view(-1, *([1] * (view.dim() - 1))), 0.0)
        t["reset_count"].add_(mask.to(torch.int32))
        if self._reset_forward:
            self._forward()
        sim = self._sim
        t["x_prev"].copy_(torch.where(mask, task.position(sim), t["x_prev"]))
        return task.observation(sim)

    # ---- host side: checks -----------------------------------------------------------------------

    def check_device(self) -> None:
        """Raise now on a buffer overflow or non-finite actions flagged on the device (a host sync)."""
        since, self._since_check = self._since_check, 0
        flags = self._state["overflow"].cpu().numpy()
        raise_on_overflow(self._mjw, flags, {"nconmax": self.nconmax, "njmax": self.njmax}, type(self).__name__, since)
        bad = self._t["bad_action"]
        if bad.any():
            envs = bad.nonzero().flatten()[:10].tolist()
            raise ValueError(f"actions must be finite; NaN/inf in envs {envs} (within the last {since} steps)")

    def _checked_actions(self, actions: Tensor) -> Tensor:
        """``[N, act_dim]`` float32 on the device; on CUDA a NaN/inf is flagged (no sync) and
        simulated as 0."""
        if self.device.type == "cpu":
            return self.check_actions(actions).to(torch.float32)  # the finite check costs nothing here
        actions = torch.as_tensor(actions)
        if actions.shape != (self.num_envs, self.act_dim) or not actions.is_floating_point():
            self.check_actions(actions)  # raises with the contract's message
        actions = actions.to(self.device, torch.float32)
        finite = torch.isfinite(actions)
        self._t["bad_action"].logical_or_(~finite.all(dim=1))
        return torch.where(finite, actions, 0.0)

    # ---- the contract ----------------------------------------------------------------------------

    def reset(self, seeds: Sequence[int]) -> Tensor:
        """Reset every world; env e of run r draws its noise from (seeds[r], e). Returns obs ``[N, obs_dim]``."""
        seeds = check_seeds(seeds, self.num_runs)
        if self._started:
            self.check_device()
        self.seeds = seeds
        self.run_steps[:] = 0
        self._run_steps_dev.zero_()
        t = self._t
        for key in ("reset_count", "nonfinite", "bad_action", "ep_len", "ep_ret"):
            t[key].zero_()
        self._state["overflow"].zero_()
        t["rng_key"].copy_(torch.tensor(noise_keys(seeds, self.envs_per_run), dtype=torch.int32))
        self._targets.forget()
        self._targets.update(self.seeds, self.run_steps)
        t["friction"].copy_(self._targets_per_world())
        self._write_friction()
        with self._physics.on_torch_stream():
            self._draw_noise()
        obs = self._reset_worlds(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        self._started = True
        self._since_check = 0
        return obs

    def step(self, actions: Tensor) -> StepResult:
        """Step all worlds; worlds that end are reset in the same call (see rlplast.envs.vec)."""
        if not self._started:
            raise RuntimeError("call reset(seeds) before step()")
        actions = self._checked_actions(actions)
        task, t, sim = self.task, self._t, self._sim
        self.run_steps += self.envs_per_run
        self._run_steps_dev.add_(self.envs_per_run)
        self._targets.update(self.seeds, self.run_steps)
        self._state["ctrl"].copy_(actions)
        self._physics()

        x_after = task.position(sim).clone()  # a view of the state: the reset below rewrites it
        healthy = task.healthy(sim)
        reward = task.reward(sim, t["x_prev"], x_after, actions, healthy).to(torch.float32)
        obs = task.observation(sim)
        finite = torch.isfinite(sim["qpos"]).all(dim=1) & torch.isfinite(sim["qvel"]).all(dim=1)
        bad = ~(finite & torch.isfinite(reward) & torch.isfinite(obs).all(dim=1))
        # as the cpu backend: a NaN/inf ends the episode with reward 0, the observation's NaN/inf as 0
        terminated = task.terminated(healthy) | bad
        reward = torch.where(bad, 0.0, reward)
        obs = torch.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0)
        t["nonfinite"].add_(bad.to(torch.int64))
        t["ep_ret"].add_(reward)
        t["ep_len"].add_(1)
        # Gymnasium's TimeLimit: truncated at the limit whether or not the step also terminated
        truncated = t["ep_len"] >= self.cfg.max_episode_steps
        done = terminated | truncated
        episode_return = torch.where(done, t["ep_ret"], 0.0)
        episode_length = torch.where(done, t["ep_len"], 0)
        t["ep_ret"].masked_fill_(done, 0.0)
        t["ep_len"].masked_fill_(done, 0)
        t["x_prev"].copy_(x_after)

        target = self._targets_per_world()
        adopt = done if self.cfg.friction.apply == "episode_end" else torch.ones_like(done)
        t["friction"].copy_(torch.where(adopt, target, t["friction"]))
        self._write_friction()
        next_obs = torch.where(done[:, None], self._reset_worlds(done), obs)

        self._since_check += 1
        if self._since_check >= self.check_every:
            self.check_device()
        info = {
            "final_obs": obs,
            "episode_return": episode_return,
            "episode_length": episode_length,
            "friction": t["friction"].clone(),
            "run_steps": self._run_steps_dev.clone(),
            "nonfinite_resets": t["nonfinite"].clone(),
        }
        return StepResult(next_obs, reward, terminated, truncated, info)

    def set_state(self, qpos: Tensor, qvel: Tensor, qacc_warmstart: Tensor | None = None) -> None:
        """Put every world in state ``qpos [N, nq]``, ``qvel [N, nv]``, as Gymnasium's ``set_state``
        (which runs ``mj_forward``); the solver warm start is ``qacc_warmstart [N, nv]`` if given,
        else kept. The next step's "x before" is the task's position there. Episode counters are kept.
        """
        if not self._started:
            raise RuntimeError("call reset(seeds) before set_state()")
        st = self._state
        st["qpos"].copy_(qpos)
        st["qvel"].copy_(qvel)
        if qacc_warmstart is not None:
            st["qacc_warmstart"].copy_(qacc_warmstart)
        self._forward()
        self._t["x_prev"].copy_(self.task.position(self._sim))

    def state_dict(self) -> dict[str, Any]:
        """Simulator state, schedule position, reset-noise counters and episode counters (CPU tensors)."""
        if not self._started:
            raise RuntimeError("call reset(seeds) before state_dict()")
        self.check_device()
        return {
            "backend": self.backend,
            "env_id": self.cfg.id,
            "num_envs": self.num_envs,
            "seeds": list(self.seeds),
            "run_steps": torch.from_numpy(self.run_steps.copy()),
            "sim": {k: self._state[k].detach().cpu().clone() for k in SIM_STATE},
            **{k: self._t[k].detach().cpu().clone() for k in STATE_BUFFERS},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of an env with the same config and number of runs."""
        if (state.get("backend"), state.get("env_id"), state.get("num_envs")) != (
            self.backend,
            self.cfg.id,
            self.num_envs,
        ):
            raise ValueError(
                f"state is for backend {state.get('backend')!r} on {state.get('env_id')!r} with "
                f"{state.get('num_envs')} envs; this env is {self.backend!r} on {self.cfg.id!r} with {self.num_envs}"
            )
        saved = [*state["sim"].items(), *((k, state[k]) for k in STATE_BUFFERS)]
        restore_tensors(saved, lambda key: self._state[key] if key in SIM_STATE else self._t[key])
        self.seeds = check_seeds(state["seeds"], self.num_runs)
        self.run_steps[:] = np.asarray(state["run_steps"])
        self._run_steps_dev.copy_(torch.as_tensor(self.run_steps))
        self._t["rng_key"].copy_(torch.tensor(noise_keys(self.seeds, self.envs_per_run), dtype=torch.int32))
        self._t["bad_action"].zero_()
        self._targets.forget()
        self._write_friction()
        self._started = True
        self._since_check = 0

    def close(self) -> None:
        """Drop the captured graphs; the env then needs ``reset`` (or ``load_state_dict``) again."""
        self._physics.release()
        self._forward.release()
        self._started = False
