"""Adam whose bias correction restarts per element when a plug-in resets a unit.

Why our own Adam: ``torch.optim.Adam`` keeps one ``step`` per parameter tensor. When CBP or ReDo
reinitialises a unit and zeroes the moments of its weights, those weights restart their moment
estimates from zero but keep the tensor's large step count t, so ``m_hat = m / (1 - b1^t)`` is
under-corrected: after s steps the estimate is too small by the factor ``1 - b1^s`` (with
b1 = 0.99 the first step after a reset is 100 times too small, and ``v_hat`` likewise).

Each parameter here keeps a step count, and a reset records, per slice it restarts (a row of the
incoming weight and bias, ``dim=1``; a column of the outgoing weight, ``dim=2``), the step count
at the reset (corrections.py): an element's own step count is the one since its latest row or
column reset. Every step is torch's fused Adam kernel (the one ``torch.optim.Adam(fused=True)``
runs, checked against ``torch.optim.Adam`` in the tests) with the parameter's step count; once
units were reset, the elements reset too recently for that count to be right to float precision
are saved before it and redone after it with their own corrections (fresh.py). Plain PPO never
pays for this, CBP only for its fresh elements (both measured side by side in
rlplast/bench/plugins.py).

:class:`ResettableOptimizer` holds the shared mechanism (also used by UPGD / AdaUPGD):
``reset_units(param, dim, runs, units)`` zeroes the per-weight state of those slices and
restarts their step count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from rlplast.agents.plasticity.corrections import RESET_STEP, ResetCorrections, key
from rlplast.agents.plasticity.fresh import FreshElements


class ResettableOptimizer(torch.optim.Optimizer):
    """An optimizer whose per-weight state can be reset for slices (units) of a parameter.

    Subclasses name their per-element state tensors in ``state_keys`` (each shaped like the
    parameter, zeroed by a reset) and the decay rates whose traces need bias correction in
    :meth:`_betas`; their :meth:`_update` calls :meth:`_param_state` and :meth:`_corrections`.
    """

    state_keys: tuple[str, ...] = ()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One step (``closure`` re-evaluates the loss, as in torch optimizers)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._update()
        return loss

    def _update(self) -> None:
        """Update every parameter that has a gradient."""
        raise NotImplementedError

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As torch's; dropping the gradients is a plain loop (torch's adds ~10 us of
        bookkeeping per call, once per minibatch)."""
        if not set_to_none:
            super().zero_grad(set_to_none=False)
            return
        for group in self.param_groups:
            for param in group["params"]:
                param.grad = None

    def _betas(self, group: dict[str, Any]) -> tuple[float, ...]:
        """Decay rates of the bias-corrected traces, in the order :meth:`_corrections` returns."""
        raise NotImplementedError

    def _param_state(self, param: Tensor) -> dict[str, Any]:
        """The state of ``param``, created (zeros, step 0) on first use."""
        state = self.state[param]
        if not state:
            state["step"] = 0  # a Python int: counting costs no tensor op
            for name in self.state_keys:
                state[name] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    def _corrections(
        self, params: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]
    ) -> list[list[float] | ResetCorrections]:
        """Count one step of every parameter and return, per parameter, ``1 - beta^step`` per
        beta: floats, or once units of the parameter were reset, :class:`ResetCorrections`
        (tensors broadcastable to it)."""
        betas = self._betas(group)
        out: list[list[float] | ResetCorrections] = []
        for param, state in zip(params, states, strict=True):
            state["step"] += 1
            if state.get("reset_dims"):
                out.append(ResetCorrections(param, state, betas))
            else:
                out.append([1.0 - beta ** state["step"] for beta in betas])
        return out

    @staticmethod
    def _roots(corrections: list[list[float] | ResetCorrections], j: int) -> list[float | Tensor]:
        """Square roots of correction ``j`` of every parameter (numbers or broadcastable tensors)."""
        return [c.root(j) if isinstance(c, ResetCorrections) else math.sqrt(c[j]) for c in corrections]

    def bias_corrections(self, param: Tensor) -> list[Tensor]:
        """The current ``1 - beta^s`` of every element of ``param`` per beta, ``param``-shaped
        (s each element's own step count; for inspection)."""
        group = self._group(param)
        state, betas = self.state[param], self._betas(group)
        if not state.get("reset_dims"):
            return [torch.full_like(param, 1.0 - beta ** state["step"]) for beta in betas]
        corrections = ResetCorrections(param, state, betas)
        return [corrections[j].expand_as(param) for j in range(len(betas))]

    def _group(self, param: Tensor) -> dict[str, Any]:
        return next(g for g in self.param_groups if any(p is param for p in g["params"]))

    def _after_reset(self, param: Tensor, group: dict[str, Any]) -> None:
        """Called after units of ``param`` were reset (subclasses track them here)."""

    @torch.no_grad()
    def reset_units(self, param: Tensor, dim: int, runs: Tensor, units: Tensor) -> None:
        """Forget the per-weight state of the slices ``param[runs[k], ..., units[k], ...]`` (index
        ``units[k]`` along ``dim``) and restart their step count.

        Args:
            param: a parameter of this optimizer, ``[R, ...]``.
            dim: the dimension the units index (1: rows of ``[R, out, in]`` or entries of
                ``[R, out]``; 2: columns of ``[R, out, in]``).
            runs: ``[K]`` run of each slice.
            units: ``[K]`` index of each slice along ``dim``.
        """
        if not 1 <= dim < param.dim():
            raise ValueError(f"dim must be in 1..{param.dim() - 1} for a parameter of shape {tuple(param.shape)}")
        state = self.state.get(param)
        if not state:  # never stepped: its state is all zeros already
            return
        if dim not in state.get("reset_dims", []):
            state[key(dim)] = torch.zeros(param.shape[0], param.shape[dim], dtype=torch.int64, device=param.device)
            state["reset_dims"] = sorted([*state.get("reset_dims", []), dim])
        index = (runs, *[slice(None)] * (dim - 1), units)
        for name in self.state_keys:
            state[name][index] = 0
        state[key(dim)][runs, units] = state["step"]
        self._after_reset(param, self._group(param))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's, keeping the reset steps int64 (torch casts every state tensor to the
        parameter's dtype); refuses the per-slice correction buffers of older rlplast versions."""
        old = {k for state in state_dict["state"].values() for k in state if k.startswith("bias_correction")}
        if old:
            raise ValueError(
                f"optimizer state holds {sorted(old)}: it was saved by an older rlplast whose Adam kept "
                "per-slice bias corrections; it cannot be resumed by this version (start the run afresh)"
            )
        resets = {i: {k: v for k, v in s.items() if k.startswith(RESET_STEP)} for i, s in state_dict["state"].items()}
        stripped = {i: {k: v for k, v in s.items() if k not in resets[i]} for i, s in state_dict["state"].items()}
        super().load_state_dict({**state_dict, "state": stripped})
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        for i, param in zip(saved_ids, params, strict=True):
            for name, value in resets.get(i, {}).items():
                self.state[param][name] = value.to(device=param.device, dtype=torch.int64, copy=True)


class Adam(ResettableOptimizer):
    """Adam (coupled L2 ``weight_decay``, like ``torch.optim.Adam``) with resettable elements.

    Args:
        params: parameters, each ``[R, ...]``.
        lr: step size.
        betas: decay rates of the first and second moment.
        eps: added to the denominator.
        weight_decay: coupled L2, added to the gradient.
    """

    state_keys = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(
                f"bad Adam settings lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}; "
                "need lr > 0, 0 <= betas < 1, eps > 0, weight_decay >= 0"
            )
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})
        self._fresh_by_group: dict[int, FreshElements] = {}

    def _betas(self, group: dict[str, Any]) -> tuple[float, ...]:
        return tuple(group["betas"])

    def _fresh(self, group: dict[str, Any]) -> FreshElements:
        """The group's fresh-element tracker, made (and every parameter's state with it) on first use."""
        fresh = self._fresh_by_group.get(id(group))
        if fresh is None:
            params = group["params"]
            fresh = FreshElements(params, [self._param_state(p) for p in params], group["betas"], group["eps"])
            self._fresh_by_group[id(group)] = fresh
        return fresh

    def _after_reset(self, param: Tensor, group: dict[str, Any]) -> None:
        self._fresh(group).reset(next(i for i, p in enumerate(group["params"]) if p is param))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's; then tracks the fresh elements of the loaded resets (the state is new)."""
        super().load_state_dict(state_dict)
        self._fresh_by_group = {}
        for group in self.param_groups:
            if any(self.state[p].get("reset_dims") for p in group["params"] if p in self.state):
                self._fresh(group)

    def _update(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self._param_state(p) for p in params]
            for state in states:
                state["step"] += 1
            fresh = self._fresh_by_group.get(id(group))
            if fresh is None:
                self._fused_step(params, states, group)
                continue
            steps = [self.state[p]["step"] if p.grad is not None else None for p in group["params"]]
            pending = fresh.save(steps, group["betas"], group["eps"])
            self._fused_step(params, [self.state[p] for p in params], group)
            fresh.redo(pending, group["lr"])

    @staticmethod
    def _fused_step(params: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]) -> None:
        """Adam with one step count per tensor: torch's fused kernel (one pass over each tensor
        instead of about eight multi-tensor passes; it is what ``torch.optim.Adam(fused=True)``
        runs). The kernel reads the step counts (already advanced) from tensors."""
        beta1, beta2 = group["betas"]
        steps: dict[int, Tensor] = {}
        for p, s in zip(params, states, strict=True):
            if s["step"] not in steps:
                steps[s["step"]] = torch.full((), float(s["step"]), device=p.device)
        torch._fused_adam_(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            [steps[s["step"]] for s in states],
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            amsgrad=False,
            maximize=False,
        )
