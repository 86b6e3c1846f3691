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
Departures from the reference code (``mohmdelsayed/upgd``): eta is the max of the bias-corrected
utilities (the reference takes the raw trace's max) and the step is ``lr`` (the reference uses
``2 lr``). The noise of run r comes from run r's own generator on the parameters' device.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from rlplast.agents.plasticity.adam import ResettableOptimizer, binary
from rlplast.agents.plasticity.noise import RunNoise

SALT = 0x0BD


class UPGD(ResettableOptimizer):
    """UPGD (``adaptive=False``) or AdaUPGD (``adaptive=True``) over ``[R, ...]`` parameters.

    Args:
        params: parameters, each with the leading run dimension R (one parameter group).
        seeds: the run seeds, length R (for the perturbation noise).
        lr: step size.
        beta_utility: decay of the utility trace.
        sigma: std of the Gaussian perturbation (0: none).
        weight_decay: decoupled weight decay lambda.
        adaptive: AdaUPGD (Adam-normalised direction) instead of the gradient.
        betas: Adam decay rates (AdaUPGD only).
        eps: Adam denominator term (AdaUPGD only).
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
    ):
        params = list(params)
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
        self.adaptive = adaptive
        self.state_keys = ("utility", "exp_avg", "exp_avg_sq") if adaptive else ("utility",)
        self.noise = RunNoise(params, seeds, SALT)
        self.num_runs = len(seeds)

    def _betas(self, group: dict[str, Any]) -> tuple[float, ...]:
        return (group["beta_utility"], *group["betas"]) if self.adaptive else (group["beta_utility"],)

    def state_dict(self) -> dict[str, Any]:
        """Torch's optimizer state plus the noise generators' states."""
        return {**super().state_dict(), "noise": self.noise.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.noise.load_state_dict(state_dict.pop("noise"))
        super().load_state_dict(state_dict)

    def _update(self) -> None:
        if len(self.param_groups) != 1:
            raise ValueError("UPGD scales by the network-wide max utility: give it one parameter group")
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        beta_u = group["beta_utility"]
        states = [self._param_state(p) for p in params]
        corrections = self._corrections(params, states, group)
        grads = [p.grad for p in params]
        utilities = [state["utility"] for state in states]
        # multi-tensor ops: one dispatch for all parameters (the step is launch-bound)
        torch._foreach_mul_(utilities, beta_u)
        torch._foreach_addcmul_(utilities, grads, params, value=-(1 - beta_u))
        first = corrections[0][0]
        if not all(isinstance(c[0], float) and c[0] == first for c in corrections):
            utilities = binary("div", utilities, [c[0] for c in corrections])
        # else one bias correction for all: U_hat / max U_hat = U / max U, no division needed
        eta = torch.cat([u.flatten(1) for u in utilities], 1).amax(1)  # [R]
        # keep = 1 - sigmoid(U_hat / eta) = sigmoid(-U_hat / eta); a run with eta <= 0 (or so
        # small that 1 / eta overflows, and 0 * inf would give NaN) is not protected:
        # sigmoid(0 * U_hat + inf) = 1
        protected = eta > torch.finfo(eta.dtype).tiny
        scale = torch.where(protected, -1 / eta, 0.0)
        offset = torch.where(protected, 0.0, math.inf)
        keeps = []
        for u in utilities:
            shape = (-1, *[1] * (u.dim() - 1))
            keeps.append(torch.addcmul(offset.view(shape), u, scale.view(shape)))
        torch._foreach_sigmoid_(keeps)
        directions = self._directions(params, states, corrections, group)
        sigma, lr, decay = group["sigma"], group["lr"], group["weight_decay"]
        if sigma > 0:
            noise = dict(zip(map(id, group["params"]), self.noise.draw(), strict=True))
            directions = torch._foreach_add(directions, [noise[id(p)] for p in params], alpha=sigma)
        if decay:
            torch._foreach_mul_(params, 1 - lr * decay)
        torch._foreach_addcmul_(params, directions, keeps, value=-lr)

    def _directions(
        self,
        params: list[Tensor],
        states: list[dict[str, Any]],
        corrections: list[list[float | Tensor]],
        group: dict[str, Any],
    ) -> list[Tensor]:
        """The unscaled step directions: the gradients, or AdaUPGD's Adam-normalised gradients
        ``m_hat / (sqrt(v_hat) + eps) = m / (d1 (sqrt(v) / sqrt(d2) + eps))`` (no division of the
        moments, which hold subnormal floats for tiny gradients: slow on CPUs)."""
        grads = [p.grad for p in params]
        if not self.adaptive:
            return grads
        beta1, beta2 = group["betas"]
        exp_avgs = [state["exp_avg"] for state in states]
        exp_avg_sqs = [state["exp_avg_sq"] for state in states]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        denoms = binary("div", torch._foreach_sqrt(exp_avg_sqs), self._roots(params, corrections, group, 2))
        torch._foreach_add_(denoms, group["eps"])
        denoms = binary("mul", denoms, [c[1] for c in corrections])
        return list(torch._foreach_div(exp_avgs, denoms))
