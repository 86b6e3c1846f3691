"""ReDo (Sokar et al., ICML 2023): periodically reinitialise tau-dormant units.

Every ``period`` optimizer steps, on the features of that step's minibatch: unit i of a layer has
score ``s_i = mean_B |h_i| / mean_j mean_B |h_j|`` (its mean absolute activation relative to the
layer's average); units with ``s_i <= tau`` are dormant and get incoming weights drawn from the
layer's init distribution, incoming bias 0 and outgoing weights 0, and (``reset_optimizer_state``)
the optimizer forgets the moments of every reset weight, as in the ReDo paper.

The period counts optimizer steps (minibatches), as the reference code (``lop/algos/gntRedo.py``,
called once per minibatch with ``reset_period: 100``) does; the reference kept stale Adam moments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from torch.optim import Optimizer

from rlplast.agents.networks import HiddenLayer, run_generators
from rlplast.agents.plasticity.base import ConfiguredPlugin, StepContext, generator_states, set_generator_states
from rlplast.agents.plasticity.reinit import reinit_units, sample_incoming

SALT = 0x4ED0


class ReDoConfig(BaseModel):
    """ReDo on every hidden layer the learner passes."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["redo"] = "redo"
    tau: float = Field(0.1, ge=0, description="a unit is dormant if its score is <= tau")
    period: int = Field(100, ge=1, description="optimizer steps between two resets")
    reset_optimizer_state: bool = True
    init_gain: float = Field(1.0, gt=0, description="new incoming weights ~ U(+-gain sqrt(3/fan_in))")


def dormant_scores(features: Tensor) -> Tensor:
    """ReDo score per unit, ``features [R, B, W] -> [R, W]``; an all-silent layer scores 0."""
    activity = features.abs().mean(1)
    return activity / activity.mean(1, keepdim=True).clamp_min(torch.finfo(activity.dtype).tiny)


class ReDo(ConfiguredPlugin):
    """ReDo as a plug-in; run r's new weights come from run r's generator."""

    cfg: ReDoConfig

    def __init__(self, cfg: ReDoConfig, layers: Sequence[HiddenLayer], optimizer: Optimizer, seeds: Sequence[int]):
        super().__init__(cfg, layers, optimizer, seeds)
        self.generators = run_generators(seeds, SALT)
        self.steps = 0
        self.reset = torch.zeros(len(self.layers), len(self.seeds), dtype=torch.int64)  # [L, R] units reset

    @torch.no_grad()
    def after_step(self, ctx: StepContext) -> None:
        self.steps += 1
        if self.steps % self.cfg.period:
            return
        optimizer = self.optimizer if self.cfg.reset_optimizer_state else None
        for index, layer in enumerate(self.layers):
            feats = layer.features()
            if feats is None:
                raise RuntimeError(f"ReDo: layer {layer.name} has no features; run a forward pass before the step")
            runs, units = torch.nonzero(dormant_scores(feats) <= self.cfg.tau).cpu().unbind(1)
            if runs.numel():
                weights = sample_incoming(layer, runs, self.generators, self.cfg.init_gain)
                reinit_units(layer, runs, units, weights, 0.0, optimizer)
                self.reset[index] += torch.bincount(runs, minlength=len(self.seeds))

    def stats(self) -> dict[str, Tensor]:
        out = {f"redo/reset/{layer.name}": self.reset[i].double() for i, layer in enumerate(self.layers)}
        out["redo/reset"] = self.reset.sum(0).double()
        return out

    def state_dict(self) -> dict:
        return {
            "steps": self.steps,
            "reset": self.reset.clone(),
            "generators": generator_states(self.generators),
        }

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.reset.copy_(state["reset"])
        set_generator_states(self.generators, state["generators"])
