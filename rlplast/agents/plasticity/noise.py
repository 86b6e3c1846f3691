"""Gaussian noise for a list of ``[R, ...]`` tensors, run r drawn from its own generator.

One draw per run per call (the run's slice of every tensor, concatenated) into a buffer allocated
once, so the cost is R generator calls whatever the number of tensors, and run r draws exactly
what it would draw alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from rlplast.agents.networks import run_generators
from rlplast.agents.plasticity.base import generator_states, set_generator_states


class RunNoise:
    """Per-run Gaussian noise shaped like ``tensors``.

    Args:
        tensors: the tensors to perturb, each ``[R, ...]`` on one device (shapes are read once).
        seeds: the run seeds, length R.
        salt: separates this stream from the other uses of the run seeds.
    """

    def __init__(self, tensors: Sequence[Tensor], seeds: Sequence[int], salt: int):
        device = tensors[0].device if tensors else torch.device("cpu")
        dtype = tensors[0].dtype if tensors else torch.float32
        self.generators = run_generators(seeds, salt, device)
        sizes = [math.prod(t.shape[1:]) for t in tensors]
        self.buffer = torch.empty(len(self.generators), sum(sizes), device=device, dtype=dtype)  # [R, total]
        self.rows = self.buffer.unbind(0)
        chunks = self.buffer.split(sizes, dim=1)
        self.views = [
            c.unflatten(1, t.shape[1:]) if t.dim() > 1 else c[:, 0] for c, t in zip(chunks, tensors, strict=True)
        ]

    def draw(self) -> list[Tensor]:
        """Standard normal noise, one tensor per input tensor, ``[R, ...]`` each.

        The tensors are views of one buffer that the next call overwrites; scale them where
        they are used (e.g. ``param.add_(noise, alpha=std)``).
        """
        for row, gen in zip(self.rows, self.generators, strict=True):
            torch.randn(row.shape, generator=gen, out=row)
        return self.views

    def state_dict(self) -> list[Tensor]:
        return generator_states(self.generators)

    def load_state_dict(self, states: Sequence[Tensor]) -> None:
        set_generator_states(self.generators, states)
