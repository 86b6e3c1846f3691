"""Shrink-and-perturb (Ash & Adams 2020), applied continually after every optimizer step.

    w <- (1 - shrink) w + xi,    xi ~ N(0, noise_std^2)

on every weight and bias of the Linear layers the plug-in sees (the actor's and critic's, not
``log_std``). The noise of run r comes from run r's own generator: slices of the shared noise
table (``noise: table``, the default) or fresh ``torch.randn`` draws (``noise: exact``); see
noise.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.optim import Optimizer

from rlplast.agents.networks import HiddenLayer
from rlplast.agents.plasticity.base import ConfiguredPlugin, StepContext, linear_layers
from rlplast.agents.plasticity.noise import NoiseSource, RunNoise, decay_and_add_, decay_divisor

SALT = 0x5A9


class ShrinkPerturbConfig(BaseModel):
    """Shrink-and-perturb after every optimizer step."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["snp"] = "snp"
    shrink: float = Field(1e-4, ge=0, lt=1, description="fraction of every weight removed per step")
    noise_std: float = Field(1e-5, ge=0, description="std of the Gaussian noise added per step")
    noise: NoiseSource = Field("table", description="slices of the shared noise table, or exact randn draws")


class ShrinkPerturb(ConfiguredPlugin):
    """Shrink-and-perturb as a plug-in."""

    cfg: ShrinkPerturbConfig

    def __init__(
        self, cfg: ShrinkPerturbConfig, layers: Sequence[HiddenLayer], optimizer: Optimizer, seeds: Sequence[int]
    ):
        super().__init__(cfg, layers, optimizer, seeds)
        self.params = [p for linear in linear_layers(self.layers) for p in (linear.weight, linear.bias)]
        self.noise = RunNoise(self.params, seeds, SALT, cfg.noise)

    @torch.no_grad()
    def after_step(self, ctx: StepContext) -> None:
        shrink, std = self.cfg.shrink, self.cfg.noise_std
        if std:
            decay_and_add_(self.params, self.noise.draw(std / decay_divisor(shrink)), shrink)
        elif shrink:
            torch._foreach_mul_(self.params, 1 - shrink)

    def state_dict(self) -> dict:
        return {"generators": self.noise.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.noise.load_state_dict(state["generators"])
