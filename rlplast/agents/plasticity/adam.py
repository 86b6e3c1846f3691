"""Adam whose bias correction restarts per unit (row or column) when a plug-in resets it.

Why our own Adam: ``torch.optim.Adam`` keeps one ``step`` per parameter tensor. When CBP or ReDo
reinitialises a unit and zeroes the moments of its weights, those weights restart their moment
estimates from zero but keep the tensor's large step count t, so ``m_hat = m / (1 - b1^t)`` is
under-corrected: after s steps the estimate is too small by the factor ``1 - b1^s`` (with
b1 = 0.99 the first step after a reset is 100 times too small, and ``v_hat`` likewise).

Each parameter here keeps a scalar step (the fast path: torch's fused Adam kernel, the one
``torch.optim.Adam(fused=True)`` runs, checked against ``torch.optim.Adam`` in the tests) until
the first reset of any of its units. A reset restarts a unit's slice along one dimension (CBP
and ReDo reset rows of the incoming weight and bias, ``dim=1``, and columns of the outgoing
weight, ``dim=2``), so an element's own step
count is the one of its most recently reset row or column, and its bias correction
``d = 1 - beta^s`` is the smallest of theirs. The optimizer therefore keeps, per reset
dimension, the corrections of each slice, ``[R, size]`` (advanced by ``d <- beta d + (1 - beta)``,
set to 0 by a reset), and combines them by a broadcast (one reset dimension: no extra pass over
the parameter) or an elementwise minimum (two). Plain PPO never pays for this, CBP only on the
tensors it resets, which is why this class serves optimizer kind ``adam`` always rather than
only when CBP is on (both measured side by side in rlplast/bench/plugins.py).

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

from rlplast.agents.plasticity.corrections import ResetCorrections, SliceCorrections, key


def binary(op: str, tensors: list[Tensor], others: list[float | Tensor]) -> list[Tensor]:
    """``[torch.<op>(t, o) for t, o in zip(tensors, others)]`` (op: "div", "mul"), as one
    multi-tensor op when ``others`` are all numbers or all tensors (broadcastable to theirs)."""
    kinds = {isinstance(o, Tensor) for o in others}
    if len(kinds) <= 1:
        return list(getattr(torch, f"_foreach_{op}")(tensors, others))
    return [getattr(torch, op)(t, o) for t, o in zip(tensors, others, strict=True)]


def update_moments(exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor], grads: list[Tensor], betas: Any) -> None:
    """Adam's moment updates in place: ``m <- lerp(m, g, 1 - b1)``, ``v <- b2 v + (1 - b2) g^2``."""
    beta1, beta2 = betas
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)


def corrected_denominators(
    exp_avg_sqs: list[Tensor], first: list[float | Tensor], second_roots: list[float | Tensor], eps: float
) -> list[Tensor]:
    """``d1 (sqrt(v) / sqrt(d2) + eps)`` per tensor, so that ``m / denominator`` is Adam's
    ``m_hat / (sqrt(v_hat) + eps)`` (d1, d2: the bias corrections, numbers or broadcastable
    tensors). No division of v or m, which hold subnormal floats (slow on CPUs) for tiny gradients."""
    denoms = binary("div", torch._foreach_sqrt(exp_avg_sqs), second_roots)
    torch._foreach_add_(denoms, eps)
    return binary("mul", denoms, first)


class ResettableOptimizer(torch.optim.Optimizer):
    """An optimizer whose per-weight state can be reset for slices (units) of a parameter.

    Subclasses name their per-element state tensors in ``state_keys`` (each shaped like the
    parameter, zeroed by a reset) and the decay rates whose traces need bias correction in
    :meth:`_betas`; their :meth:`_update` calls :meth:`_param_state` and :meth:`_corrections`.
    """

    state_keys: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Tensor], defaults: dict[str, Any]):
        self._slices: dict[int, SliceCorrections] = {}  # per parameter group (by id)
        super().__init__(params, defaults)

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

    def _group_slices(self, group: dict[str, Any]) -> SliceCorrections:
        return self._slices.setdefault(id(group), SliceCorrections())

    def _corrections(
        self, params: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]
    ) -> list[list[float] | ResetCorrections]:
        """Count one step of every parameter and return, per parameter, ``1 - beta^step`` per
        beta: floats, or once units of the parameter were reset, :class:`ResetCorrections`
        (tensors broadcastable to it)."""
        betas = self._betas(group)
        slices = self._group_slices(group)
        slices.advance(betas, params)
        out: list[list[float] | ResetCorrections] = []
        for param, state in zip(params, states, strict=True):
            state["step"] += 1
            if state.get("reset_dims"):
                out.append(ResetCorrections(slices, param))
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
        return [self._group_slices(group).combined(param, j).expand_as(param) for j in range(len(betas))]

    def _group(self, param: Tensor) -> dict[str, Any]:
        return next(g for g in self.param_groups if any(p is param for p in g["params"]))

    def _pack(self, group: dict[str, Any]) -> None:
        states = {p: self.state[p] for p in group["params"] if p in self.state}
        self._group_slices(group).pack(states, len(self._betas(group)))

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
        group = self._group(param)
        betas = self._betas(group)
        if dim not in state.get("reset_dims", []):
            fills = [1.0 - beta ** state["step"] for beta in betas]  # the slices so far: the tensor's steps
            self._group_slices(group).register(param, state, dim, fills)
            self._pack(group)
        index = (runs, *[slice(None)] * (dim - 1), units)
        for name in self.state_keys:
            state[name][index] = 0
        for j in range(len(betas)):
            state[key(j, dim)][runs, units] = 0

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's, then rebuilds the reset slices' correction buffers."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            self._pack(group)


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

    def _betas(self, group: dict[str, Any]) -> tuple[float, ...]:
        return tuple(group["betas"])

    def _update(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self._param_state(p) for p in params]
            corrections = self._corrections(params, states, group)
            fused = [i for i, c in enumerate(corrections) if not isinstance(c, ResetCorrections)]
            if fused:
                self._fused_step([params[i] for i in fused], [states[i] for i in fused], group)
            reset = [i for i, c in enumerate(corrections) if isinstance(c, ResetCorrections)]
            if reset:
                self._reset_step(
                    [params[i] for i in reset], [states[i] for i in reset], [corrections[i] for i in reset], group
                )

    @staticmethod
    def _fused_step(
        params: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any], lr: float | None = None
    ) -> None:
        """Plain Adam with one step count per tensor: torch's fused kernel (one pass over each
        tensor instead of about eight multi-tensor passes; it is what ``torch.optim.Adam(fused=True)``
        runs). The kernel reads the step counts (already advanced by ``_corrections``) from tensors.
        With ``lr=0`` it updates only the moments (with the coupled weight decay) and leaves the
        parameters as they are."""
        beta1, beta2 = group["betas"]
        steps: dict[int, Tensor] = {}
        step_tensors = [
            steps.setdefault(s["step"], torch.full((), float(s["step"]), device=p.device))
            for p, s in zip(params, states, strict=True)
        ]
        torch._fused_adam_(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            step_tensors,
            lr=group["lr"] if lr is None else lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            amsgrad=False,
            maximize=False,
        )

    def _reset_step(
        self,
        params: list[Tensor],
        states: list[dict[str, Any]],
        corrections: list[ResetCorrections],
        group: dict[str, Any],
    ) -> None:
        """Adam on tensors with reset units: per-element bias corrections (broadcast tensors)."""
        self._fused_step(params, states, group, lr=0.0)  # the moments, in one pass per tensor
        exp_avgs = [state["exp_avg"] for state in states]
        exp_avg_sqs = [state["exp_avg_sq"] for state in states]
        first = [c[0] for c in corrections]
        denoms = corrected_denominators(exp_avg_sqs, first, self._roots(corrections, 1), group["eps"])
        torch._foreach_addcdiv_(params, exp_avgs, denoms, value=-group["lr"])
