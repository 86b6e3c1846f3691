"""Config models and builders for a learner's optimizer and plug-ins.

``OptimizerConfig`` and ``PluginConfig`` are the ``optimizer:`` and ``plugins:`` sections of a
method file (configs/methods/*.yaml); ``build_optimizer`` and ``build_plugins`` turn them into
objects. Every parameter has a leading run dimension R (see networks.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from rlplast.agents.networks import HiddenLayer
from rlplast.agents.plasticity.base import Plugin


class OptimizerConfig(BaseModel):
    """The optimizer. ``weight_decay`` is coupled L2 for adam/sgd (added to the gradient)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)


def build_optimizer(
    cfg: OptimizerConfig, params: Iterable[torch.nn.Parameter], seeds: Sequence[int]
) -> torch.optim.Optimizer:
    """The optimizer over ``params`` (each ``[R, ...]``); ``seeds`` seed any per-run noise."""
    params = list(params)
    if cfg.kind == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.kind == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer kind {cfg.kind!r}; known: adam, sgd")


def build_plugins(
    cfgs: Sequence[object],
    layers: Sequence[HiddenLayer],
    optimizer: torch.optim.Optimizer,
    seeds: Sequence[int],
) -> list[Plugin]:
    """One plug-in per config, in order."""
    if cfgs:
        raise NotImplementedError("plug-ins are not written yet")
    return []
