"""L1 regularisation: adds ``strength * sign(w)`` to the gradient of every weight before the step.

Coupled, like the L2 of ``OptimizerConfig.weight_decay`` (so with Adam the penalty's gradient is
normalised with the loss's). Biases and ``log_std`` are not penalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.optim import Optimizer

from rlplast.agents.networks import HiddenLayer
from rlplast.agents.plasticity.base import ConfiguredPlugin, StepContext, linear_layers


class L1Config(BaseModel):
    """L1 penalty on the weights of the actor's and critic's Linear layers."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["l1"] = "l1"
    strength: float = Field(1e-4, gt=0, description="lambda of lambda * sum |w|")


class L1(ConfiguredPlugin):
    """L1 as a plug-in (``before_step``: the gradient gains ``strength * sign(w)``)."""

    cfg: L1Config

    def __init__(self, cfg: L1Config, layers: Sequence[HiddenLayer], optimizer: Optimizer, seeds: Sequence[int]):
        super().__init__(cfg, layers, optimizer, seeds)
        self.weights = [linear.weight for linear in linear_layers(self.layers)]

    @torch.no_grad()
    def before_step(self, ctx: StepContext) -> None:
        for weight in self.weights:
            if weight.grad is not None:
                weight.grad.add_(weight.sign(), alpha=self.cfg.strength)
