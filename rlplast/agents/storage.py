"""Rollout storage: preallocated tensors laid out run-major, ``[R, T, E, ...]``.

A rollout of one update holds T env steps of E envs for each of R runs. Keeping the run
dimension first makes a run's whole batch, ``[R, T*E, ...]``, a free view, so minibatches are
gathered per run with one advanced index.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gae(
    rewards: Tensor,
    values: Tensor,
    ended: Tensor,
    bootstrap: Tensor,
    last_value: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over a rollout, with episode ends inside it.

    At step t, with V_{T} = ``last_value``::

        delta_t = r_t + gamma * (1 - ended_t) * V_{t+1} + gamma * bootstrap_t - V_t
        A_t     = delta_t + gamma * lam * (1 - ended_t) * A_{t+1}

    ``bootstrap_t`` is V(final obs) of an episode that was truncated at step t (0 elsewhere and
    for terminations), so a time-limit end keeps its tail value while the GAE recursion still
    stops at the episode boundary.

    Args:
        rewards: ``[R, T, E]``.
        values: V(obs_t), ``[R, T, E]``.
        ended: episode ended at step t (terminated or truncated), ``[R, T, E]`` bool.
        bootstrap: ``[R, T, E]``.
        last_value: V of the observation after the last step, ``[R, E]``.
        gamma: discount.
        lam: GAE lambda.

    Returns:
        ``(advantages, returns)``, both ``[R, T, E]``; returns = advantages + values.
    """
    not_ended = (~ended).to(values.dtype)
    # the per-step terms are independent of A: compute them for all t at once
    next_values = torch.cat([values[:, 1:], last_value.unsqueeze(1)], dim=1)
    deltas = rewards + gamma * (not_ended * next_values + bootstrap) - values
    carry = gamma * lam * not_ended
    advantages = torch.empty_like(values)
    running = torch.zeros_like(last_value)
    for t in range(values.shape[1] - 1, -1, -1):
        running = deltas[:, t] + carry[:, t] * running
        advantages[:, t] = running
    return advantages, advantages + values


ACTION_FIELDS = ("obs", "actions", "logprobs", "values")
OUTCOME_FIELDS = ("rewards", "terminated", "truncated", "final_obs")


class RolloutStorage:
    """One update's worth of transitions for R runs x E envs, ``[R, T, E, ...]``.

    Steps are recorded by reference (:meth:`add_action`, :meth:`add_outcome`) and written into
    the tensors below in one batch when the last step's outcome arrives: one copy per field per
    rollout instead of per step, which at acting batch sizes costs more than the networks do.
    The tensors hold the rollout from then until :meth:`clear`.

    Attributes:
        obs: ``[R, T, E, obs_dim]``.
        actions: ``[R, T, E, act_dim]`` (unclipped samples).
        logprobs: log pi(a|s) at acting time, ``[R, T, E]``.
        values: V(s) at acting time, ``[R, T, E]``.
        rewards: ``[R, T, E]``.
        ended: ``[R, T, E]`` bool, terminated or truncated at that step.
        truncated: ``[R, T, E]`` bool, truncated and not terminated (candidates for bootstrap).
        final_obs: last observation of an episode that ended at that step, ``[R, T, E, obs_dim]``.
        advantages, returns: filled by :meth:`compute_returns`, ``[R, T, E]``.
    """

    def __init__(
        self,
        num_runs: int,
        envs_per_run: int,
        steps: int,
        obs_dim: int,
        act_dim: int,
        device: torch.device | str = "cpu",
    ):
        shape = (num_runs, steps, envs_per_run)
        kw = {"device": device, "dtype": torch.float32}
        self.num_runs, self.steps, self.envs_per_run = shape
        self.obs = torch.zeros(*shape, obs_dim, **kw)
        self.actions = torch.zeros(*shape, act_dim, **kw)
        self.logprobs = torch.zeros(shape, **kw)
        self.values = torch.zeros(shape, **kw)
        self.rewards = torch.zeros(shape, **kw)
        self.ended = torch.zeros(shape, device=device, dtype=torch.bool)
        self.truncated = torch.zeros(shape, device=device, dtype=torch.bool)
        self.final_obs = torch.zeros(*shape, obs_dim, **kw)
        self.advantages = torch.zeros(shape, **kw)
        self.returns = torch.zeros(shape, **kw)
        self._terminated = torch.zeros(shape, device=device, dtype=torch.bool)
        self._pending: dict[str, list[Tensor | None]] = {name: [] for name in ACTION_FIELDS + OUTCOME_FIELDS}
        self.full = False

    @property
    def step(self) -> int:
        """How many steps (actions) have been recorded since the last :meth:`clear`."""
        return self.steps if self.full else len(self._pending["obs"])

    def clear(self) -> None:
        self.full = False
        for tensors in self._pending.values():
            tensors.clear()

    def add_action(self, obs: Tensor, actions: Tensor, logprobs: Tensor, values: Tensor) -> None:
        """Record what the agent saw and did at the current step (``[R, E, ...]`` each, or
        ``[N, ...]`` with N = R * E run-major: the same memory order).

        The storage keeps the tensors themselves until the rollout is full: do not write into
        them afterwards.
        """
        pending = self._pending
        if self.full:
            raise RuntimeError(f"rollout storage is full ({self.steps} steps); call clear() after the update")
        if len(pending["obs"]) > len(pending["rewards"]):
            raise RuntimeError("add_action called twice for one step; record its outcome first")
        for name, value in zip(ACTION_FIELDS, (obs, actions, logprobs, values), strict=True):
            pending[name].append(value)

    def add_outcome(
        self, rewards: Tensor, terminated: Tensor, truncated: Tensor, final_obs: Tensor | None = None
    ) -> None:
        """Record the env's answer to the current step (``[R, E]`` each, ``final_obs [R, E, obs_dim]``;
        or ``[N]``, ``[N, obs_dim]``) and advance to the next step; the last step writes the rollout
        into the tensors."""
        pending = self._pending
        if self.full or len(pending["rewards"]) >= len(pending["obs"]):
            raise RuntimeError("add_outcome without an action to answer; call add_action first")
        for name, value in zip(OUTCOME_FIELDS, (rewards, terminated, truncated, final_obs), strict=True):
            pending[name].append(value)
        if len(pending["rewards"]) == self.steps:
            self._write_pending()

    def _write_pending(self) -> None:
        """Stack the recorded steps into the ``[R, T, E, ...]`` tensors: one copy per field."""
        out = {name: getattr(self, name) for name in (*ACTION_FIELDS, "rewards", "truncated", "final_obs")}
        out["terminated"] = self._terminated
        R, T, E = self.num_runs, self.steps, self.envs_per_run
        for name, tensors in self._pending.items():
            if name == "final_obs" and any(t is None for t in tensors):  # not given: zeros
                zeros = torch.zeros_like(self.final_obs[:, 0])
                tensors = [zeros if t is None else t for t in tensors]
            target = out[name]
            # [R, E, ...] and [N, ...] steps share one memory order: stack, then runs first
            target.copy_(torch.stack(tensors).view(T, R, E, *target.shape[3:]).transpose(0, 1))
            tensors.clear()
        torch.logical_or(self._terminated, self.truncated, out=self.ended)
        self.truncated &= ~self._terminated  # bootstrap candidates: truncated and not terminated
        self.full = True

    def compute_returns(self, last_value: Tensor, bootstrap: Tensor, gamma: float, lam: float) -> None:
        """Fill ``advantages`` and ``returns`` (see :func:`gae`); ``bootstrap [R, T, E]``."""
        # copy into the preallocated tensors: they stay ordinary tensors even when this runs
        # under inference_mode, so the update can backpropagate through losses that use them
        advantages, returns = gae(self.rewards, self.values, self.ended, bootstrap, last_value, gamma, lam)
        self.advantages.copy_(advantages)
        self.returns.copy_(returns)

    def flat(self, name: str) -> Tensor:
        """A field as one batch per run, ``[R, T*E, ...]`` (a view)."""
        tensor = getattr(self, name)
        return tensor.reshape(self.num_runs, self.steps * self.envs_per_run, *tensor.shape[3:])
