"""A tiny learner for the plug-in tests: a batched MLP fitting a fixed random regression."""

from __future__ import annotations

import io
from collections.abc import Sequence
from types import SimpleNamespace

import pytest
import torch

from rlplast.agents.networks import MLP, run_generators
from rlplast.agents.plasticity.base import Plugin, StepContext


def make_mlp(seeds: Sequence[int], in_dim: int = 3, hidden: Sequence[int] = (8,), out_dim: int = 1) -> MLP:
    mlp = MLP(len(seeds), in_dim, hidden, out_dim)
    mlp.reset_parameters(run_generators(seeds, 7))
    return mlp


class Stream:
    """Per-run regression data: run r's batches come from run r's generator only."""

    def __init__(self, seeds: Sequence[int], in_dim: int = 3, batch: int = 4):
        self.gens = run_generators(seeds, 11)
        self.in_dim, self.batch = in_dim, batch

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([torch.randn(self.batch, self.in_dim, generator=g) for g in self.gens])
        y = x.sum(-1, keepdim=True).sin()  # [R, B, 1]
        return x, y


def train(mlp: MLP, optimizer, plugins: Sequence[Plugin], stream: Stream, steps: int, start: int = 0) -> None:
    """``steps`` optimizer steps with the learner's hook order (per-run losses summed)."""
    for k in range(steps):
        x, y = stream.next()
        loss = (mlp(x) - y).pow(2).mean((1, 2))  # [R]
        optimizer.zero_grad()
        loss.sum().backward()
        ctx = StepContext(step=start + k, loss=loss.detach())
        for p in plugins:
            p.before_step(ctx)
        optimizer.step()
        ctx.step = start + k + 1
        for p in plugins:
            p.after_step(ctx)


def roundtrip(obj: object) -> object:
    """Through torch.save / torch.load(weights_only=True), as a checkpoint would go."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.fixture
def tiny() -> SimpleNamespace:
    return SimpleNamespace(make_mlp=make_mlp, Stream=Stream, train=train, roundtrip=roundtrip)
