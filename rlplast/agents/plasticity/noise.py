"""Gaussian noise for a list of ``[R, ...]`` tensors, run r drawn from its own generator.

One draw per run per call (the run's slice of every tensor, concatenated), so the cost is R
generator calls whatever the number of tensors, and run r draws exactly what it would draw alone.
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
        self.shapes = [t.shape for t in tensors]
        self.sizes = [math.prod(s[1:]) for s in self.shapes]
        self.device = tensors[0].device if tensors else torch.device("cpu")
        self.dtype = tensors[0].dtype if tensors else torch.float32
        self.generators = run_generators(seeds, salt, self.device)

    def draw(self, std: float) -> list[Tensor]:
        """N(0, std^2) noise, one tensor per input tensor, ``[R, ...]`` each (views of one buffer)."""
        total = sum(self.sizes)
        flat = torch.stack(
            [torch.randn(total, generator=g, device=self.device, dtype=self.dtype) for g in self.generators]
        )
        flat.mul_(std)
        chunks = flat.split(self.sizes, dim=1)
        return [c.unflatten(1, s[1:]) if len(s) > 1 else c[:, 0] for c, s in zip(chunks, self.shapes, strict=True)]

    def state_dict(self) -> list[Tensor]:
        return generator_states(self.generators)

    def load_state_dict(self, states: Sequence[Tensor]) -> None:
        set_generator_states(self.generators, states)
