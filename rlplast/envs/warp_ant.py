"""WarpAntVecEnv: Gymnasium's Ant-v5 rebuilt on mujoco_warp, N worlds in one batch (``--backend warp``).

The same MJCF (Gymnasium's ant.xml), observation, reward, termination, truncation and reset
noise distribution as Ant-v5 (see ``rlplast.envs.ant_math`` and ``warp_kernels``), with the
VecEnv contract of ``rlplast.envs.vec``: torch tensors in and out on the env's device, shared
with Warp without copies (``wp.from_torch`` / ``wp.to_torch``).

One env step (frame_skip physics steps, contact forces, reward, termination, autoreset with
noise, friction changes at episode ends) is one captured graph: a CUDA graph on a GPU, Warp's
replay on its CPU device (where the tests run). Friction is per world (mujoco_warp's batched
``geom_friction [N, ngeom]``), written in place, so the graph stays valid; the host only
evaluates each run's schedule (R calls of ``schedule.at`` per step) and copies the R targets to
the device when they change.

Checks that need the device's answer run every ``check_every`` steps (default 1 on the CPU, 100
on CUDA), so a GPU step never waits for the host: contact/constraint buffer overflow (an error
naming ``nconmax`` or ``njmax``) and, on CUDA, non-finite actions. Results since the previous
check are not to be trusted when one fires.

Reset noise: qpos0 + U(-s, s) and s * N(0, 1) as Ant-v5, drawn on the device from a stream keyed
by (run seed, env index, episode count): reproducible for a seed, but not the CPU backend's
numbers. Known difference from MuJoCo C (measured in tests/envs/test_warp_ant.py): mujoco_warp
4.0 orients a capsule-plane contact's tangent frame along the capsule only when the capsule is
less than 60 degrees from the plane (MuJoCo C always does), so with Ant's pyramidal friction
cones a steep leg on the floor gets a rotated friction pyramid and the step differs from MuJoCo C
by more than float precision (typically 1e-3 in qpos over one env step).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlplast.envs.seeding import check_seeds
from rlplast.envs.vec import EnvConfig, StepResult, VecEnv
from rlplast.envs.warp_model import load_ant_model, parse_ant_spec
from rlplast.envs.warp_runtime import (
    GraphStep,
    ScheduleTargets,
    batched_simulator,
    import_warp,
    noise_keys,
    raise_on_overflow,
    resolve_device,
    restore_tensors,
    warp_available,
)

__all__ = ["SUPPORTED_IDS", "WarpAntVecEnv", "warp_available"]

SUPPORTED_IDS = ("Ant-v5",)
# Per-world buffers that state_dict saves (besides the simulator's qpos, qvel, warm start, time).
STATE_BUFFERS = ("x_prev", "ep_len", "ep_ret", "reset_count", "friction", "nonfinite")


class WarpAntVecEnv(VecEnv):
    """Ant-v5 x N on mujoco_warp (see the module docstring).

    Args:
        cfg: the env config (``id`` must be ``Ant-v5``).
        num_runs: R; N = R * cfg.envs_per_run worlds.
        device: ``cuda[:k]`` (the point of this backend) or ``cpu`` (Warp's CPU device: slow, for tests).
        nconmax: contacts allocated per world (pooled over worlds); default: Ant's worst case.
        njmax: constraint rows per world; default: Ant's worst case.
        check_every: env steps between the device checks (overflow, non-finite actions).
        capture: run each step as a captured graph (False: plain kernel launches).
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
        if cfg.id not in SUPPORTED_IDS:
            raise ValueError(f"the warp backend supports env ids {', '.join(SUPPORTED_IDS)}; got {cfg.id!r}")
        wp, mjw = import_warp()
        torch_device, self.wp_device = resolve_device(device)
        self.spec = parse_ant_spec(cfg.env_kwargs())
        self.ant = load_ant_model(self.spec, cfg.friction.mode)
        mjm = self.ant.mjm
        super().__init__(num_runs, cfg.envs_per_run, self.spec.obs_dim(mjm.nq, mjm.nv, mjm.nbody), mjm.nu, torch_device)
        self.cfg = cfg
        n = self.num_envs
        self.model, self.data, sizes = batched_simulator(mjm, n, self.wp_device, nconmax, njmax, check_every)
        self.nconmax, self.njmax, self.check_every = sizes["nconmax"], sizes["njmax"], sizes["check_every"]
        self._wp, self._mjw = wp, mjw
        self._K = importlib.import_module("rlplast.envs.warp_kernels")  # imports warp: only once it is there
        self._alloc_buffers()
        self._task = self._make_task()
        self._worlds, self._out = self._make_structs()
        self._runner = GraphStep(wp, self.wp_device, torch_device, self._step_body, capture)
        self.seeds: list[int] = [0] * self.num_runs
        self.run_steps = np.zeros(self.num_runs, dtype=np.int64)
        self._since_check = 0
        self._started = False
        wp.synchronize_device(self.wp_device)

    # ---- construction ----------------------------------------------------------------------------

    def _alloc_buffers(self) -> None:
        wp, n, dev = self._wp, self.num_envs, self.device
        f32, i32 = torch.float32, torch.int32

        def zeros(*shape: int, dtype: torch.dtype = f32) -> Tensor:
            return torch.zeros(shape, dtype=dtype, device=dev)

        self._targets = ScheduleTargets(self.cfg.friction.schedule, self.num_runs, dev)
        self._t: dict[str, Tensor] = {
            "target": self._targets.target,
            "actions": zeros(n, self.act_dim),
            "ctrl_cost": zeros(n),
            "bad_action": zeros(n, dtype=i32),
            "friction": zeros(n),
            "rng_key": zeros(n, dtype=i32),
            "reset_count": zeros(n, dtype=i32),
            "x_prev": zeros(n, 2),
            "ep_len": zeros(n, dtype=i32),
            "ep_ret": zeros(n),
            "nonfinite": zeros(n, dtype=i32),
            "obs": zeros(n, self.obs_dim),
            "final_obs": zeros(n, self.obs_dim),
            "reward": zeros(n),
            "terminated": zeros(n, dtype=torch.bool),
            "truncated": zeros(n, dtype=torch.bool),
            "episode_return": zeros(n),
            "episode_length": zeros(n, dtype=i32),
            "qpos0": torch.as_tensor(self.ant.mjm.qpos0, dtype=f32, device=dev),
            "friction_geoms": torch.as_tensor(self.ant.friction_geoms, dtype=i32, device=dev),
        }
        self._w = {k: wp.from_torch(v, dtype=wp.vec2 if k == "x_prev" else None) for k, v in self._t.items()}
        d = self.data
        # torch views of the simulator's state (shared memory)
        self._sim = {k: wp.to_torch(getattr(d, k)) for k in ("qpos", "qvel", "qacc_warmstart", "time", "overflow")}
        self._run_steps_dev = torch.zeros(self.num_runs, dtype=torch.int64, device=dev)

    def _make_task(self) -> Any:
        s, ant = self.spec, self.ant
        task = self._K.AntTask()
        values = {
            "dt": ant.dt,
            "forward_weight": s.forward_reward_weight,
            "ctrl_weight": s.ctrl_cost_weight,
            "contact_weight": s.contact_cost_weight,
            "healthy_reward": s.healthy_reward,
            "z_min": s.healthy_z_range[0],
            "z_max": s.healthy_z_range[1],
            "terminate_unhealthy": int(s.terminate_when_unhealthy),
            "force_lo": s.contact_force_range[0],
            "force_hi": s.contact_force_range[1],
            "noise_scale": s.reset_noise_scale,
            "max_steps": self.cfg.max_episode_steps,
            "envs_per_run": self.envs_per_run,
            "root_qadr": ant.root_qadr,
            "main_body": ant.main_body,
            "qpos_start": 2 if s.exclude_current_positions_from_observation else 0,
            "include_forces": int(s.include_cfrc_ext_in_observation),
            "adopt_at_episode_end": int(self.cfg.friction.apply == "episode_end"),
        }
        for name, value in values.items():
            setattr(task, name, value)
        return task

    def _make_structs(self) -> tuple[Any, Any]:
        """The kernels' views of the buffers: Worlds (persistent state) and StepOut."""
        K, w, d = self._K, self._w, self.data
        worlds, out = K.Worlds(), K.StepOut()
        sim = {"qpos": d.qpos, "qvel": d.qvel, "qacc_warmstart": d.qacc_warmstart, "sim_time": d.time}
        sources = {**w, **sim, "geom_friction": self.model.geom_friction}
        for name in K.Worlds.vars:
            setattr(worlds, name, sources[name])
        for name in K.StepOut.vars:
            setattr(out, name, w[name])
        return worlds, out

    # ---- the step, as launched (and captured) ----------------------------------------------------

    def _step_body(self) -> None:
        K, wp, mjw, m, d, n = self._K, self._wp, self._mjw, self.model, self.data, self.num_envs
        ctrl_cost = self._w["ctrl_cost"]
        wp.launch(K.prepare_step, n, inputs=[self._task, self._w["actions"], d.ctrl, ctrl_cost, self._w["bad_action"]])
        for _ in range(self.spec.frame_skip):
            mjw.step(m, d)
        if self.spec.contact_cost_weight != 0 or self.spec.include_cfrc_ext_in_observation:
            mjw.rne_postconstraint(m, d)  # cfrc_ext, as Gymnasium's mj_rnePostConstraint
        wp.launch(K.finish_step, n, inputs=[self._task, self._worlds, d.xpos, d.cfrc_ext, ctrl_cost, self._out])
        if self.cfg.friction.apply == "immediate":
            wp.launch(K.adopt_target, n, inputs=[self._task, self._worlds])

    # ---- host side: schedule, checks -------------------------------------------------------------

    def _upload_targets(self) -> None:
        self._targets.update(self.seeds, self.run_steps)

    def check_device(self) -> None:
        """Raise now on a buffer overflow or non-finite actions flagged on the device (a host sync).

        ``step`` calls this every ``check_every`` steps; call it to check at a point of your choice.
        """
        self._since_check = 0
        flags = self._sim["overflow"].cpu().numpy()
        bad_actions = self._t["bad_action"].cpu().numpy()
        sizes = {"nconmax": self.nconmax, "njmax": self.njmax}
        raise_on_overflow(self._mjw, flags, sizes, type(self).__name__, self.check_every)
        if bad_actions.any():
            bad = np.flatnonzero(bad_actions)[:10].tolist()
            raise ValueError(
                f"actions must be finite; NaN/inf in envs {bad} (within the last {self.check_every} steps)"
            )

    def _load_actions(self, actions: Tensor) -> None:
        if self.device.type == "cpu":
            actions = self.check_actions(actions)  # the finite check costs nothing here
        else:
            actions = torch.as_tensor(actions)
            if actions.shape != (self.num_envs, self.act_dim) or not actions.is_floating_point():
                self.check_actions(actions)  # raises with the contract's message; no sync on success
        self._t["actions"].copy_(actions)

    # ---- the contract ----------------------------------------------------------------------------

    def reset(self, seeds: Sequence[int]) -> Tensor:
        """Reset every world; env e of run r draws its noise from (seeds[r], e). Returns obs ``[N, obs_dim]``."""
        seeds = check_seeds(seeds, self.num_runs)
        if self._started:
            self.check_device()
        self.seeds = seeds
        self.run_steps[:] = 0
        self._run_steps_dev.zero_()
        for key in ("reset_count", "nonfinite", "bad_action"):
            self._t[key].zero_()
        self._sim["overflow"].zero_()
        self._t["rng_key"].copy_(torch.tensor(noise_keys(seeds, self.envs_per_run), dtype=torch.int32))
        self._targets.forget()
        self._upload_targets()
        with self._runner.on_torch_stream():
            self._wp.launch(
                self._K.reset_all, self.num_envs, inputs=[self._task, self._worlds, self.data.cfrc_ext, self._w["obs"]]
            )
        self._started = True
        self._since_check = 0
        return self._t["obs"].clone()

    def step(self, actions: Tensor) -> StepResult:
        """Step all worlds; worlds that end are reset in the same call (see rlplast.envs.vec)."""
        if not self._started:
            raise RuntimeError("call reset(seeds) before step()")
        self._load_actions(actions)
        self.advance()
        t = self._t
        info = {
            "final_obs": t["final_obs"].clone(),
            "episode_return": t["episode_return"].clone(),
            "episode_length": t["episode_length"].to(torch.int64),
            "friction": t["friction"].clone(),
            "run_steps": self._run_steps_dev.clone(),
            "nonfinite_resets": t["nonfinite"].to(torch.int64),
        }
        return StepResult(t["obs"].clone(), t["reward"].clone(), t["terminated"].clone(), t["truncated"].clone(), info)

    def advance(self) -> None:
        """One env step of every world with the actions of the last :meth:`step`, outputs left on
        the device (``step`` without its copies; for benchmarks)."""
        if not self._started:
            raise RuntimeError("call reset(seeds) before advance()")
        self.run_steps += self.envs_per_run
        self._run_steps_dev.add_(self.envs_per_run)
        self._upload_targets()
        self._runner()
        self._since_check += 1
        if self._since_check >= self.check_every:
            self.check_device()

    def set_state(self, qpos: Tensor, qvel: Tensor, qacc_warmstart: Tensor | None = None) -> None:
        """Put every world in state ``qpos [N, nq]``, ``qvel [N, nv]``, as Gymnasium's ``set_state``.

        The next step's "x before" is the main body's position, as after ``mj_forward``; the solver
        warm start is ``qacc_warmstart [N, nv]`` if given, else kept. Episode counters are kept.
        """
        if not self._started:
            raise RuntimeError("call reset(seeds) before set_state()")
        self._sim["qpos"].copy_(qpos)
        self._sim["qvel"].copy_(qvel)
        if qacc_warmstart is not None:
            self._sim["qacc_warmstart"].copy_(qacc_warmstart)
        adr = self.ant.root_qadr
        self._t["x_prev"].copy_(self._sim["qpos"][:, adr : adr + 2])

    def state_dict(self) -> dict[str, Any]:
        """Simulator state, schedule position, reset-noise counters and episode counters (CPU tensors)."""
        if not self._started:
            raise RuntimeError("call reset(seeds) before state_dict()")
        self.check_device()
        sim = {k: v.detach().cpu().clone() for k, v in self._sim.items() if k != "overflow"}
        return {
            "backend": self.backend,
            "num_envs": self.num_envs,
            "seeds": list(self.seeds),
            "run_steps": torch.from_numpy(self.run_steps.copy()),
            "sim": sim,
            **{k: self._t[k].detach().cpu().clone() for k in STATE_BUFFERS},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of an env with the same config and number of runs."""
        if state.get("backend") != self.backend or state.get("num_envs") != self.num_envs:
            raise ValueError(
                f"state is for backend {state.get('backend')!r} with {state.get('num_envs')} envs; "
                f"this env is {self.backend!r} with {self.num_envs} envs"
            )
        saved = [*state["sim"].items(), *((k, state[k]) for k in STATE_BUFFERS)]
        restore_tensors(saved, lambda key: self._sim[key] if key in self._sim else self._t[key])
        self.seeds = check_seeds(state["seeds"], self.num_runs)
        self.run_steps[:] = np.asarray(state["run_steps"])
        self._run_steps_dev.copy_(torch.as_tensor(self.run_steps))
        self._t["rng_key"].copy_(torch.tensor(noise_keys(self.seeds, self.envs_per_run), dtype=torch.int32))
        self._targets.forget()
        self._upload_targets()
        with self._runner.on_torch_stream():
            self._wp.launch(self._K.write_friction, self.num_envs, inputs=[self._worlds])
        self._started = True

    def close(self) -> None:
        """Drop the captured graph; the env then needs ``reset`` (or ``load_state_dict``) again."""
        self._runner.release()
        self._started = False
