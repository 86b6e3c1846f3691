"""AutoResetVecEnv: what the CPU-side backends share around their simulator.

A backend (``cpu``: Ant-v5 on MuJoCo C; ``gym``: a list of Gymnasium envs) supplies four hooks:
simulate one env step of all N envs, reset some envs, set some envs' friction, and save/restore
its simulator state. This class does the rest, the same way for both: the action check,
episode returns and lengths, truncation, the friction clock (per run, seeded), same-step autoreset
with final observations, recovery from a simulator that produced NaN/inf (the env ends as
terminated with reward 0 and is reset; ``nonfinite_resets`` counts it), and the state dict.

Internally everything is float64 on the CPU, as Gymnasium computes it; outputs are cast to
float32 on ``device`` at the end.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlplast.envs.clock import FrictionClock
from rlplast.envs.seeding import env_rng
from rlplast.envs.vec import EnvConfig, StepResult, VecEnv


class AutoResetVecEnv(VecEnv):
    """Same-step autoreset, episode bookkeeping, friction schedule and exact state for CPU backends."""

    backend = "base"

    def __init__(self, cfg: EnvConfig, num_runs: int, obs_dim: int, act_dim: int, device: str | torch.device):
        super().__init__(num_runs, cfg.envs_per_run, obs_dim, act_dim, device)
        self.cfg = cfg
        self.clock = FrictionClock(cfg.friction, self.num_runs, self.envs_per_run)
        n = self.num_envs
        self.rngs: list[np.random.Generator] = [env_rng(0, 0) for _ in range(n)]
        self.episode_return = np.zeros(n)
        self.episode_length = np.zeros(n, dtype=np.int64)
        self.nonfinite_resets = np.zeros(n, dtype=np.int64)
        self._started = False
        self._all = np.arange(n)
        self._no_returns, self._no_lengths = np.zeros(n), np.zeros(n, dtype=np.int64)

    # ---- backend hooks -------------------------------------------------------------------------

    @abc.abstractmethod
    def _simulate(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One env step of all envs with ``actions [N, act_dim]`` (float64).

        Returns:
            obs ``[N, obs_dim]`` float64, reward ``[N]`` float64, terminated ``[N]`` bool,
            truncated ``[N]`` bool (the env's own time limit, if any), bad ``[N]`` bool (the
            simulator flagged a NaN/inf state; MuJoCo resets such data itself and warns).
        """

    @abc.abstractmethod
    def _reset_envs(self, idx: np.ndarray) -> np.ndarray:
        """Reset envs ``idx`` (noise from ``self.rngs[n]``); returns their obs ``[len(idx), obs_dim]``."""

    @abc.abstractmethod
    def _set_friction(self, idx: np.ndarray) -> None:
        """Give envs ``idx`` the friction ``self.clock.friction[idx]``."""

    @abc.abstractmethod
    def _sim_state_dict(self) -> dict[str, Any]:
        """The simulator state of every env (tensors)."""

    @abc.abstractmethod
    def _load_sim_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_sim_state_dict` returned."""

    def _bind_rngs(self) -> None:
        """Hand ``self.rngs`` to the simulator if it draws its own reset noise (default: nothing)."""

    # ---- the contract --------------------------------------------------------------------------

    def _out(self, x: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
        out = torch.from_numpy(x)
        if out.dtype == dtype and self.device.type == "cpu":  # as it is: a .to() costs a dispatch
            return out
        return out.to(device=self.device, dtype=dtype)

    def _pack(self, parts: Sequence[np.ndarray], dtype: np.dtype) -> list[Tensor]:
        """Arrays as tensors on ``device`` through one flat buffer: a few calls per step whatever
        the number of outputs (torch calls are slow right after the simulator has filled the
        caches). Each tensor is a contiguous view of a fresh buffer."""
        flat = np.concatenate([p.ravel() for p in parts], dtype=dtype, casting="unsafe")
        ends = list(itertools.accumulate(p.size for p in parts))
        if self.device.type == "cpu":  # slice in numpy: cheaper than torch.split and its wrappers
            return [torch.from_numpy(flat[e - p.size : e].reshape(p.shape)) for p, e in zip(parts, ends, strict=True)]
        flat_t = torch.from_numpy(flat).to(self.device)
        return [flat_t[e - p.size : e].view(p.shape) for p, e in zip(parts, ends, strict=True)]

    def reset(self, seeds: Sequence[int]) -> Tensor:
        """Reset every env; env e of run r draws its noise from (seeds[r], e). Returns obs ``[N, obs_dim]``."""
        self.clock.reset(seeds)
        e_count = self.envs_per_run
        self.rngs = [env_rng(int(self.clock.seeds[n // e_count]), n % e_count) for n in range(self.num_envs)]
        self._bind_rngs()
        self._set_friction(self._all)
        self.episode_return[:] = 0.0
        self.episode_length[:] = 0
        self.nonfinite_resets[:] = 0
        self._started = True
        return self._out(self._reset_envs(self._all))

    def _actions_array(self, actions: Tensor) -> np.ndarray:
        """``[N, act_dim]`` float64 numpy copy of checked actions."""
        if not self._started:
            raise RuntimeError("call reset(seeds) before step()")
        actions = torch.as_tensor(actions)
        if actions.shape != (self.num_envs, self.act_dim) or not actions.is_floating_point():
            self.check_actions(actions)  # raises with the details
        actions = actions.detach().cpu()
        if actions.dtype == torch.bfloat16:  # the one float type numpy lacks
            actions = actions.double()
        act = np.array(actions.numpy(), dtype=np.float64)  # numpy's cast: cheaper than torch's here
        if not np.isfinite(act.sum()):  # a NaN or inf anywhere makes the sum non-finite
            self.check_actions(actions)
        return act

    def step(self, actions: Tensor) -> StepResult:
        """Step all envs; envs that end are reset in the same call (see rlplast.envs.vec)."""
        obs, reward, terminated, truncated, bad = self._simulate(self._actions_array(actions))
        bad |= ~np.isfinite(reward) | ~np.isfinite(obs).all(axis=1)
        if bad.any():
            terminated = terminated | bad
            reward = np.where(bad, 0.0, reward)
            obs = np.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0)
            self.nonfinite_resets += bad
        self.episode_return += reward
        self.episode_length += 1
        truncated = truncated | (self.episode_length >= self.cfg.max_episode_steps)
        done = terminated | truncated
        any_done = bool(done.any())  # rare: most steps skip the episode-end work
        ep_return, ep_length = self._no_returns, self._no_lengths  # read-only zeros (packed = copied)
        changed = self.clock.tick()
        if any_done:
            ep_return = np.where(done, self.episode_return, 0.0)
            ep_length = np.where(done, self.episode_length, 0)
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
            changed = changed | self.clock.episode_end(done)
        if changed.any():
            self._set_friction(np.flatnonzero(changed))
        next_obs = obs
        if any_done:
            idx = np.flatnonzero(done)
            next_obs = obs.copy()
            next_obs[idx] = self._reset_envs(idx)
        next_obs_t, final_obs, reward_t, ep_return_t, friction = self._pack(
            (next_obs, obs, reward, ep_return, self.clock.friction), np.float32
        )
        ep_length_t, run_steps, nonfinite = self._pack(
            (ep_length, self.clock.run_steps, self.nonfinite_resets), np.int64
        )
        terminated_t, truncated_t = (self._out(np.array(flags), torch.bool) for flags in (terminated, truncated))
        info = {
            "final_obs": final_obs,
            "episode_return": ep_return_t,
            "episode_length": ep_length_t,
            "friction": friction,
            "run_steps": run_steps,
            "nonfinite_resets": nonfinite,
        }
        return StepResult(next_obs_t, reward_t, terminated_t, truncated_t, info)

    def state_dict(self) -> dict[str, Any]:
        """Simulator state, reset-noise generators, schedule clock and episode counters."""
        if not self._started:
            raise RuntimeError("call reset(seeds) before state_dict()")
        return {
            "backend": self.backend,
            "num_envs": self.num_envs,
            "sim": self._sim_state_dict(),
            "rngs": [rng.bit_generator.state for rng in self.rngs],
            "clock": self.clock.state_dict(),
            "episode_return": torch.from_numpy(self.episode_return.copy()),
            "episode_length": torch.from_numpy(self.episode_length.copy()),
            "nonfinite_resets": torch.from_numpy(self.nonfinite_resets.copy()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of an env with the same config and number of runs."""
        if state.get("backend") != self.backend or state.get("num_envs") != self.num_envs:
            raise ValueError(
                f"state is for backend {state.get('backend')!r} with {state.get('num_envs')} envs; "
                f"this env is {self.backend!r} with {self.num_envs} envs"
            )
        self.clock.load_state_dict(state["clock"])
        self._load_sim_state_dict(state["sim"])
        self.rngs = []
        for rng_state in state["rngs"]:
            rng = np.random.Generator(np.random.PCG64())
            rng.bit_generator.state = rng_state
            self.rngs.append(rng)
        self._bind_rngs()
        self._set_friction(self._all)
        for key in ("episode_return", "episode_length", "nonfinite_resets"):
            getattr(self, key)[:] = np.asarray(state[key])
        self._started = True
