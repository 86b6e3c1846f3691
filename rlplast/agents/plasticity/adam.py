"""Adam whose step count becomes per element once a plug-in resets part of a tensor.

Why our own Adam: ``torch.optim.Adam`` keeps one ``step`` per parameter tensor. When CBP or ReDo
reinitialises a unit and zeroes the moments of its weights, those weights restart their moment
estimates from zero but keep the tensor's large step count t, so ``m_hat = m / (1 - b1^t)`` is
under-corrected: after s steps the estimate is too small by the factor ``1 - b1^s`` (with
b1 = 0.99 the first step after a reset is 100 times too small, and ``v_hat`` likewise).

Each parameter here keeps a scalar step (the fast path: the same arithmetic as
``torch.optim.Adam``, checked in the tests) until the first reset of any of its elements; from then
on it keeps the bias corrections themselves per element, ``d_j = 1 - beta_j^s`` shaped like the
parameter ``[R, ...]`` (s the element's own step count), advanced by ``d <- beta d + (1 - beta)``
(two cheap scalar ops, no ``pow``, no denormals) and set to 0 by a reset. Plain PPO never pays
for per-element corrections, and CBP pays only on the tensors it resets (the hidden layers'
weights and biases), which is why this class serves optimizer kind ``adam`` always rather than
only when CBP is on (measured side by side with ``torch.optim.Adam`` in rlplast/bench/plugins.py).

:class:`ResettableOptimizer` holds the shared mechanism (also used by UPGD / AdaUPGD):
``reset_elements(param, index)`` zeroes the per-element state and step of ``param[index]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

Index = tuple[Any, ...]


class ResettableOptimizer(torch.optim.Optimizer):
    """An optimizer whose per-weight state can be reset for some elements of a parameter.

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

    def _betas(self, group: dict[str, Any]) -> tuple[float, ...]:
        """Decay rates of the bias-corrected traces, in the order :meth:`_corrections` returns."""
        raise NotImplementedError

    def _param_state(self, param: Tensor) -> dict[str, Tensor]:
        """The state of ``param``, created (zeros, step 0) on first use."""
        state = self.state[param]
        if not state:
            state["step"] = 0  # a Python int: counting costs no tensor op
            for key in self.state_keys:
                state[key] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    def _corrections(self, state: dict[str, Tensor], group: dict[str, Any]) -> list[float | Tensor]:
        """Count one step and return ``1 - beta^step`` per beta: floats, or tensors shaped like
        the parameter once some of its elements were reset."""
        state["step"] += 1
        betas = self._betas(group)
        if "bias_correction0" not in state:
            step = float(state["step"])
            return [1.0 - beta**step for beta in betas]
        out = []
        for j, beta in enumerate(betas):
            corr = state[f"bias_correction{j}"]
            out.append(corr.mul_(beta).add_(1.0 - beta))
        return out

    @torch.no_grad()
    def reset_elements(self, param: Tensor, index: Index) -> None:
        """Zero the state (moments, traces) of ``param[index]`` and restart its step count.

        Args:
            param: a parameter of this optimizer, ``[R, ...]``.
            index: an index into ``param`` (e.g. ``(runs, units)`` for rows of ``[R, out, in]``,
                ``(runs, slice(None), units)`` for columns).
        """
        state = self.state.get(param)
        if not state:  # never stepped: its state is all zeros already
            return
        if "bias_correction0" not in state:
            group = next(g for g in self.param_groups if any(p is param for p in g["params"]))
            step = float(state["step"])
            for j, beta in enumerate(self._betas(group)):
                state[f"bias_correction{j}"] = torch.full_like(param, 1.0 - beta**step)
        for key in (*self.state_keys, *(k for k in state if k.startswith("bias_correction"))):
            state[key][index] = 0


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
            beta1, beta2 = group["betas"]
            lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad if decay == 0 else param.grad.add(param, alpha=decay)
                state = self._param_state(param)
                corr1, corr2 = self._corrections(state, group)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                if isinstance(corr1, Tensor):
                    denom = exp_avg_sq.div(corr2).sqrt_().add_(eps)
                    param.addcdiv_(exp_avg.div(corr1), denom, value=-lr)
                else:
                    denom = (exp_avg_sq.sqrt() / math.sqrt(corr2)).add_(eps)
                    param.addcdiv_(exp_avg, denom, value=-lr / corr1)
