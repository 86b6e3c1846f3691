"""UPGD and AdaUPGD (Elsayed & Mahmood, ICLR 2024): first-order utility, global scaling.

For every weight w with gradient g at step t (PROTOCOL.md section 5):

    U <- beta_u U + (1 - beta_u) (-g * w)           utility trace (first-order Taylor term)
    U_hat = U / (1 - beta_u^t)
    eta = max of U_hat over every weight of the network, per run
    U_bar = sigmoid(U_hat / eta)                     scaled utility in (0, 1)
    w <- (1 - lr lambda) w - lr (d + xi) (1 - U_bar),   xi ~ N(0, sigma^2)

with direction d = g (``UPGD``, SGD form) or d = m_hat / (sqrt(v_hat) + eps) (``AdaUPGD``, Adam
moments of g). Weight decay lambda is decoupled. Useful weights (high utility) are protected,
useless ones get the full gradient step plus noise.

Guard: if every utility of a run is <= 0, then eta <= 0 and ``U_hat / eta`` would flip the
ranking (or divide by zero); such a run gets no protection, ``U_bar = 0`` (a plain step plus
noise). So does a run whose eta is below the smallest normal float (all utilities vanish, as when
most units are dead): ``1 / eta`` would overflow and turn zero utilities into NaN.
Departures from the reference code (``mohmdelsayed/upgd``), each one option away: eta is the max
of the bias-corrected utilities (``utility_max="raw"``: the reference's max of the raw trace, so
that early on, while 1 - beta_u^t < 1, U_hat / eta exceeds 1 and U_bar is larger) and the step is
``lr`` (``step_scale=2``: the reference's ``2 lr``; its decay stays ``lr lambda``).
The noise of run r comes from run r's own generator: slices of the shared noise table
(``noise="table"``, the default) or fresh ``torch.randn`` draws (``noise="exact"``); see noise.py.

Speed: on a CPU an elementwise pass costs mostly its per-tensor dispatch, so the per-weight state
(utility, Adam moments) lives in flat ``[R, total]`` buffers, each parameter's state a view of
them: the per-run max is one ``amax`` and most passes are one op over all weights. While every
parameter has a gradient (as in PPO) and one bias correction holds for all weights (no unit was
reset), a step takes :meth:`UPGD._flat_update`, whose Adam direction is one pass of torch's fused
Adam kernel and whose decay rides on the last pass; otherwise :meth:`UPGD._list_update` does the
same math tensor by tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlplast.agents.plasticity.adam import ResettableOptimizer
from rlplast.agents.plasticity.noise import NoiseSource, RunNoise, decay_and_add_, decay_divisor, run_views

SALT = 0x0BD
NUMPY_FLOATS = {torch.float32: np.float32, torch.float64: np.float64}  # division rounded as torch's


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


class UPGD(ResettableOptimizer):
    """UPGD (``adaptive=False``) or AdaUPGD (``adaptive=True``) over ``[R, ...]`` parameters.

    Args:
        params: parameters, each with the leading run dimension R, on one device (one group).
        seeds: the run seeds, length R (for the perturbation noise).
        lr: step size.
        beta_utility: decay of the utility trace.
        sigma: std of the Gaussian perturbation (0: none).
        weight_decay: decoupled weight decay lambda.
        adaptive: AdaUPGD (Adam-normalised direction) instead of the gradient.
        betas: Adam decay rates (AdaUPGD only).
        eps: Adam denominator term (AdaUPGD only).
        noise: source of the perturbation: ``"table"`` (shared noise table) or ``"exact"``.
        step_scale: the step is ``step_scale * lr`` (the decay stays ``lr * weight_decay``).
        utility_max: eta from the bias-corrected utilities (``"corrected"``) or the raw trace (``"raw"``).
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        seeds: Sequence[int],
        lr: float,
        beta_utility: float = 0.999,
        sigma: float = 1e-3,
        weight_decay: float = 0.0,
        adaptive: bool = False,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        noise: NoiseSource = "table",
        step_scale: float = 1.0,
        utility_max: str = "corrected",
    ):
        params = list(params)
        if utility_max not in ("corrected", "raw"):
            raise ValueError(f"unknown utility_max {utility_max!r}; known: corrected, raw")
        if step_scale <= 0:
            raise ValueError(f"bad UPGD step_scale {step_scale}; need > 0")
        if lr <= 0 or sigma < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in (beta_utility, *betas)):
            raise ValueError(
                f"bad UPGD settings lr={lr}, sigma={sigma}, weight_decay={weight_decay}, "
                f"beta_utility={beta_utility}, betas={betas}; need lr > 0, sigma >= 0, weight_decay >= 0, "
                "0 <= betas < 1"
            )
        bad = [tuple(p.shape) for p in params if p.dim() == 0 or p.shape[0] != len(seeds)]
        if bad:
            raise ValueError(f"UPGD needs every parameter to lead with the run dimension {len(seeds)}; got {bad}")
        defaults = {
            "lr": lr,
            "beta_utility": beta_utility,
            "sigma": sigma,
            "weight_decay": weight_decay,
            "betas": tuple(betas),
            "eps": eps,
        }
        super().__init__(params, defaults)
        # attributes, not group entries: a checkpoint's param groups from before they existed still load
        self.step_scale = step_scale
        self.raw_max = utility_max == "raw"
        self.adaptive = adaptive
        self.state_keys = ("utility", "exp_avg", "exp_avg_sq") if adaptive else ("utility",)
        self.noise = RunNoise(params, seeds, SALT, noise)
        self.num_runs = len(seeds)
        self.params = params
        # [R, total] buffers, each with its per-parameter views: the per-weight state, and scratch
        # for the scaled utility ("keep" = 1 - U_bar), the step direction and the gradients
        names = [*self.state_keys, "keep", "direction", *(["grad"] if adaptive else [])]
        self.flat = {name: params[0].new_zeros(len(seeds), self.noise.numel) for name in names}
        self.views = {name: run_views(flat, params) for name, flat in self.flat.items()}
        self.step_count = torch.zeros((), device=params[0].device)  # float32, for the fused kernel
        self._attach_state()

    def _betas(self, group: dict[str, Any]) -> tuple[float, ...]:
        return (group["beta_utility"], *group["betas"]) if self.adaptive else (group["beta_utility"],)

    def _attach_state(self) -> None:
        """Make every parameter's per-weight state the views of the flat buffers, keeping its
        values (a loaded state is copied in; a missing one starts at zero, step 0)."""
        for i, param in enumerate(self.params):
            state = self.state[param]
            state.setdefault("step", 0)
            for name in self.state_keys:
                view, held = self.views[name][i], state.get(name)
                if held is None:
                    view.zero_()
                elif held is not view:
                    view.copy_(held)
                state[name] = view

    def state_dict(self) -> dict[str, Any]:
        """Torch's optimizer state plus the noise generators' states."""
        return {**super().state_dict(), "noise": self.noise.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.noise.load_state_dict(state_dict.pop("noise"))
        super().load_state_dict(state_dict)
        self._attach_state()

    def _update(self) -> None:
        if len(self.param_groups) != 1:
            raise ValueError("UPGD scales by the network-wide max utility: give it one parameter group")
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        states = [self.state[p] for p in params]  # attached at construction
        steps = {state["step"] for state in states}
        if len(params) == len(self.params) and len(steps) == 1 and not any(s.get("reset_dims") for s in states):
            # one bias correction 1 - beta^step for every weight, no slice corrections to advance:
            # counting the step is all that _corrections would do
            for state in states:
                state["step"] += 1
            self._flat_update(group, states[0]["step"])
        else:
            self._list_update(params, group)

    @staticmethod
    def _keep_coefficients(eta: Tensor) -> tuple[Tensor, Tensor]:
        """``(scale, offset)`` shaped like ``eta`` (the per-run max of U_hat) such that
        ``keep = 1 - U_bar = sigmoid(offset + scale * U_hat)``.

        keep = 1 - sigmoid(U_hat / eta) = sigmoid(-U_hat / eta); a run with eta <= 0 (or so small
        that 1 / eta overflows, and 0 * inf would give NaN) is not protected:
        sigmoid(0 * U_hat + inf) = 1.
        """
        protected = eta > torch.finfo(eta.dtype).tiny
        return torch.where(protected, -1 / eta, 0.0), torch.where(protected, 0.0, math.inf)

    @staticmethod
    def _keep_one_run(utility: Tensor, keep: Tensor, correction: float = 1.0) -> None:
        """``keep = sigmoid(-U / max U)`` for one run on a CPU, as :meth:`_keep_coefficients` gives
        it, with the coefficients as numbers: reading the max costs no sync on a CPU, and the
        five small tensor ops that make them cost more than the pass itself. The scale is
        divided in the utility's dtype, as the tensor route divides it: both give the same bits.
        ``correction`` multiplies eta (the bias correction, when eta is the raw trace's max)."""
        eta = utility.amax().item()
        if correction != 1.0:
            eta = float(NUMPY_FLOATS[utility.dtype](eta) * NUMPY_FLOATS[utility.dtype](correction))
        if eta > torch.finfo(utility.dtype).tiny:
            scale = NUMPY_FLOATS[utility.dtype](-1.0) / NUMPY_FLOATS[utility.dtype](eta)
            torch.mul(utility, float(scale), out=keep).sigmoid_()
        else:  # unprotected: sigmoid(0 * U + inf) = 1
            keep.fill_(1.0)

    def _flat_update(self, group: dict[str, Any], step: int) -> None:
        """The step when every parameter has a gradient and one bias correction (step count)
        holds for all weights: whole-buffer ops on the ``[R, total]`` buffers, torch's fused Adam
        for AdaUPGD, and the decay folded into the last pass."""
        params, grads = self.params, [p.grad for p in self.params]
        flat, views = self.flat, self.views
        beta_u, sigma, lr, decay = group["beta_utility"], group["sigma"], group["lr"], group["weight_decay"]
        utility, keep, direction = flat["utility"], flat["keep"], flat["direction"]
        utility.mul_(beta_u)
        torch._foreach_addcmul_(views["utility"], grads, params, value=-(1 - beta_u))
        # one bias correction c for all: U_hat / max U_hat = U / max U; with the raw trace's max,
        # U_hat / max U = U / (c max U)
        c = 1 - beta_u**step if self.raw_max else 1.0
        if self.num_runs == 1 and keep.device.type == "cpu" and keep.dtype in NUMPY_FLOATS:
            self._keep_one_run(utility, keep, c)
        else:
            eta = utility.amax(1, keepdim=True)
            scale, offset = self._keep_coefficients(eta * c if self.raw_max else eta)  # [R, 1]
            torch.mul(utility, scale, out=keep)  # (addcmul broadcasts slowly)
            if keep.device.type != "cpu" or bool(offset.any()):  # some run unprotected (no sync on a CPU)
                keep.add_(offset)
            keep.sigmoid_()
        # direction <- -(d + sigma xi) * k, where k makes (1 - U_bar) * direction the increment y of
        # w <- (1 - lr lambda) w + y, divided as decay_and_add_ wants it
        delta = lr * decay
        k = self.step_scale * lr / decay_divisor(delta)
        if sigma > 0:
            self.noise.draw_into(direction, -sigma * k)
        else:
            direction.zero_()
        if self.adaptive:
            self._subtract_adam_direction(group, step, grads, k)
        else:
            torch._foreach_sub_(views["direction"], grads, alpha=k)
        keep.mul_(direction)  # now y / decay_divisor(delta)
        decay_and_add_(params, views["keep"], delta)

    def _subtract_adam_direction(self, group: dict[str, Any], step: int, grads: list[Tensor], scale: float) -> None:
        """``direction -= scale * m_hat / (sqrt(v_hat) + eps)`` after updating the moments with
        ``grads``, in one pass: torch's fused Adam kernel, the direction as its parameter.

        The kernel reads the bias corrections from ``step_count`` (which it does not advance) and
        needs contiguous tensors: with one run every view is, and it reads the gradients in place;
        else they are copied into one buffer.
        """
        flat, views = self.flat, self.views
        if self.num_runs == 1 and all(g.is_contiguous() for g in grads):
            lists = (views["direction"], grads, views["exp_avg"], views["exp_avg_sq"])
        else:
            torch._foreach_copy_(views["grad"], grads)
            lists = ([flat["direction"]], [flat["grad"]], [flat["exp_avg"]], [flat["exp_avg_sq"]])
        beta1, beta2 = group["betas"]
        self.step_count.fill_(step)
        steps = [self.step_count] * len(lists[0])
        options = {"lr": scale, "beta1": beta1, "beta2": beta2, "eps": group["eps"], "weight_decay": 0.0}
        torch._fused_adam_(*lists, [], steps, amsgrad=False, maximize=False, **options)  # []: no AMSGrad maxima

    def _list_update(self, params: list[Tensor], group: dict[str, Any]) -> None:
        """The step tensor by tensor: per-parameter (or per-element, after a reset) bias
        corrections, and parameters without a gradient left alone.

        AdaUPGD's direction is ``m_hat / (sqrt(v_hat) + eps) = m / (d1 (sqrt(v) / sqrt(d2) + eps))``
        (no division of the moments, which hold subnormal floats for tiny gradients: slow on CPUs).
        """
        states = [self._param_state(p) for p in params]
        corrections = self._corrections(params, states, group)
        beta_u, sigma, lr, decay = group["beta_utility"], group["sigma"], group["lr"], group["weight_decay"]
        grads = [p.grad for p in params]
        utilities = [state["utility"] for state in states]
        torch._foreach_mul_(utilities, beta_u)
        torch._foreach_addcmul_(utilities, grads, params, value=-(1 - beta_u))
        raw = utilities
        utilities = binary("div", utilities, [c[0] for c in corrections])
        eta = torch.stack([u.flatten(1).amax(1) for u in (raw if self.raw_max else utilities)]).amax(0)  # [R]
        scale, offset = self._keep_coefficients(eta)
        keeps = []
        for u in utilities:
            shape = (-1, *[1] * (u.dim() - 1))
            keeps.append(torch.addcmul(offset.view(shape), u, scale.view(shape)))
        torch._foreach_sigmoid_(keeps)
        directions = grads
        if self.adaptive:
            exp_avgs = [state["exp_avg"] for state in states]
            exp_avg_sqs = [state["exp_avg_sq"] for state in states]
            update_moments(exp_avgs, exp_avg_sqs, grads, group["betas"])
            first = [c[1] for c in corrections]
            denoms = corrected_denominators(exp_avg_sqs, first, self._roots(corrections, 2), group["eps"])
            directions = list(torch._foreach_div(exp_avgs, denoms))
        if sigma > 0:
            noise = dict(zip(map(id, self.params), self.noise.draw(), strict=True))
            directions = torch._foreach_add(directions, [noise[id(p)] for p in params], alpha=sigma)
        if decay:
            torch._foreach_mul_(params, 1 - lr * decay)
        torch._foreach_addcmul_(params, directions, keeps, value=-lr * self.step_scale)
