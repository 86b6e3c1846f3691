"""Continual backpropagation (Dohare et al. 2024): replace the least useful mature units.

After every optimizer step, for every hidden layer l and unit i (PROTOCOL.md section 4):

    age a += 1
    f <- eta f + (1 - eta) mean_B h_i                               (running mean activation)
    u <- eta u + (1 - eta) y_i,   y_i = mean_B |h_i| * sum_k |w_out[k, i]|    (contribution)
    u_hat = u / (1 - eta^a),  f_hat = f / (1 - eta^a)              (bias corrections)
    c += rho * #{i : a_i > m};  replace floor(c) eligible units of lowest u_hat;  c -= that

A replaced unit gets incoming weights drawn from the layer's init distribution (or, with
``reinit: initial``, its own initial weights), incoming bias 0, outgoing weights 0, age, utility
and mean activation 0; the next layer's bias absorbs ``f_hat * w_out`` so the function does not
jump; and (``reset_optimizer_state``) the optimizer forgets the moments of every reset weight,
restarting their bias correction (see adam.py; the reference kept stale Adam moments, which
``reset_optimizer_state: false`` reproduces).

Variants: ``utility: adaptation`` uses ``y = mean_B |h - f_hat| * sum|w_out| / sum|w_in|``
(``f_hat`` from the running mean already updated with this minibatch, as the reference code);
``utility: instantaneous`` uses ``u = y`` (eta = 0 for the utility; the running mean activation
still decays with ``decay_rate``). ``count: probability`` is the reference code's rule (with
``rho * n_eligible < 1``, replace one unit with that probability, drawn per run) instead of the
paper's accumulator.

Cost: per step and layer five small tensor ops on the layer's device; ages, eligibility and the
replacement count live on the CPU (replacement.py) and cost a Python integer comparison per step
(no device sync); the replacement itself (sort, sample, reinit) runs only on steps where some run
replaces a unit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from torch.optim import Optimizer

from rlplast.agents.networks import HiddenLayer, run_generators
from rlplast.agents.plasticity.base import ConfiguredPlugin, StepContext, generator_states, set_generator_states
from rlplast.agents.plasticity.reinit import reinit_units, sample_incoming
from rlplast.agents.plasticity.replacement import ReplacementClock

SALT = 0xCB9


class CBPConfig(BaseModel):
    """Continual backprop on every hidden layer the learner passes (actor and critic)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["cbp"] = "cbp"
    replacement_rate: float = Field(1e-4, ge=0, le=1, description="rho: units replaced per eligible unit per step")
    maturity_threshold: int = Field(10_000, ge=0, description="m: a unit is eligible once its age exceeds m steps")
    decay_rate: float = Field(0.99, ge=0, lt=1, description="eta of the utility and mean-activation traces")
    utility: Literal["contribution", "adaptation", "instantaneous"] = "contribution"
    reinit: Literal["random", "initial"] = "random"
    count: Literal["accumulate", "probability"] = "accumulate"
    reset_optimizer_state: bool = True
    init_gain: float = Field(1.0, gt=0, description="new incoming weights ~ U(+-gain sqrt(3/fan_in))")


@dataclass
class _LayerState:
    """Per-layer unit statistics; ``[R, W]`` each."""

    utility: Tensor  # device
    mean_act: Tensor  # device
    initial_weight: Tensor | None  # [R, W, in] device, for reinit "initial"
    initial_bias: Tensor | None  # [R, W]


class CBP(ConfiguredPlugin):
    """Continual backprop as a plug-in; all state per run, ``[R, ...]``."""

    cfg: CBPConfig

    def __init__(self, cfg: CBPConfig, layers: Sequence[HiddenLayer], optimizer: Optimizer, seeds: Sequence[int]):
        super().__init__(cfg, layers, optimizer, seeds)
        self.generators = run_generators(seeds, SALT)
        num_runs = len(self.seeds)
        self.state: list[_LayerState] = []
        for layer in self.layers:
            weight = layer.incoming.weight
            if weight.shape[0] != num_runs:
                raise ValueError(f"layer {layer.name} has {weight.shape[0]} runs but {num_runs} seeds were given")
            zeros = weight.new_zeros(num_runs, layer.width)
            initial = cfg.reinit == "initial"
            self.state.append(
                _LayerState(
                    utility=zeros.clone(),
                    mean_act=zeros.clone(),
                    initial_weight=weight.detach().clone() if initial else None,
                    initial_bias=layer.incoming.bias.detach().clone() if initial else None,
                )
            )
        self.clock = ReplacementClock(
            [layer.width for layer in self.layers],
            num_runs,
            cfg.maturity_threshold,
            cfg.replacement_rate,
            cfg.count,
            self.generators,
        )
        self.replaced = torch.zeros(len(self.layers), num_runs, dtype=torch.int64)  # [L, R] so far

    # --- the hook ------------------------------------------------------------------------------

    @torch.no_grad()
    def after_step(self, ctx: StepContext) -> None:
        counts = self.clock.step()
        for index, (layer, state) in enumerate(zip(self.layers, self.state, strict=True)):
            self._update_utility(index, layer, state)
        if counts is None:
            return
        for index, (layer, state) in enumerate(zip(self.layers, self.state, strict=True)):
            if bool(counts[index].any()):
                self._replace(index, layer, state, counts[index])
                self.replaced[index] += counts[index]
        self.clock.replaced()

    def _update_utility(self, index: int, layer: HiddenLayer, state: _LayerState) -> None:
        feats = layer.features()
        if feats is None:
            raise RuntimeError(f"CBP: layer {layer.name} has no features; run a forward pass before the step")
        eta = self.cfg.decay_rate
        mean_act = feats.mean(1)  # [R, W]
        state.mean_act.lerp_(mean_act, 1 - eta)
        out_mag = layer.outgoing.weight.abs().sum(1)  # [R, W]: sum_k |w_out[k, i]| (vector_norm is slower)
        if self.cfg.utility == "adaptation":
            mean_hat = state.mean_act / self._correction(index, state)
            in_mag = layer.incoming.weight.abs().sum(2)  # [R, W]
            new = (feats - mean_hat.unsqueeze(1)).abs().mean(1) * out_mag / in_mag
        else:
            abs_act = mean_act if layer.activation == "relu" else feats.abs().mean(1)  # relu: h >= 0
            new = abs_act * out_mag
        if self.cfg.utility == "instantaneous":
            state.utility.copy_(new)
        else:
            state.utility.lerp_(new, 1 - eta)

    def _correction(self, index: int, state: _LayerState) -> Tensor:
        """``1 - eta^age`` per unit of layer ``index``, ``[R, W]`` on the layer's device."""
        ages = self.clock.ages(index).to(state.utility.device, state.utility.dtype)
        return 1 - torch.pow(self.cfg.decay_rate, ages)

    def _replace(self, index: int, layer: HiddenLayer, state: _LayerState, counts: Tensor) -> None:
        """Replace ``counts[r]`` lowest-utility eligible units of run r, for every run."""
        device = state.utility.device
        correction = self._correction(index, state)
        eligible = self.clock.eligible_mask(index).to(device)
        # the instantaneous utility is not a trace (eta = 0 for it): nothing to correct
        utility = state.utility if self.cfg.utility == "instantaneous" else state.utility / correction
        score = utility.masked_fill(~eligible, math.inf)
        most = int(counts.max())
        lowest = torch.topk(score, most, dim=1, largest=False).indices.cpu()  # [R, most]
        take = torch.arange(most) < counts.unsqueeze(1)  # [R, most]
        runs = torch.arange(len(counts)).unsqueeze(1).expand_as(lowest)[take]
        units = lowest[take]
        if self.cfg.reinit == "initial":
            new_weight, new_bias = state.initial_weight[runs, units], state.initial_bias[runs, units]
        else:
            new_weight, new_bias = sample_incoming(layer, runs, self.generators, self.cfg.init_gain), 0.0
        mean_hat = (state.mean_act / correction)[runs.to(device), units.to(device)]
        optimizer = self.optimizer if self.cfg.reset_optimizer_state else None
        reinit_units(layer, runs, units, new_weight, new_bias, optimizer, mean_activation=mean_hat)
        state.utility[runs, units] = 0.0
        state.mean_act[runs, units] = 0.0
        self.clock.born(index, runs, units)

    # --- logging and checkpoints ---------------------------------------------------------------

    def stats(self) -> dict[str, Tensor]:
        out = {f"cbp/replaced/{layer.name}": self.replaced[i].double() for i, layer in enumerate(self.layers)}
        out["cbp/replaced"] = self.replaced.sum(0).double()
        return out

    def state_dict(self) -> dict:
        layers = []
        for state in self.state:
            entry = {"utility": state.utility, "mean_act": state.mean_act}
            if state.initial_weight is not None:
                entry.update(initial_weight=state.initial_weight, initial_bias=state.initial_bias)
            layers.append({k: v.clone() for k, v in entry.items()})
        return {
            "clock": self.clock.state_dict(),
            "replaced": self.replaced.clone(),
            "layers": layers,
            "generators": generator_states(self.generators),
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["layers"]) != len(self.state):
            raise ValueError(f"CBP state has {len(state['layers'])} layers, this plug-in has {len(self.state)}")
        self.clock.load_state_dict(state["clock"])
        self.replaced.copy_(state["replaced"])
        for mine, saved in zip(self.state, state["layers"], strict=True):
            for key, value in saved.items():
                getattr(mine, key).copy_(value)
        set_generator_states(self.generators, state["generators"])
