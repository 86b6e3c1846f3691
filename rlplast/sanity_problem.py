"""The slowly-changing regression problem (Dohare et al. 2024; PROTOCOL.md section 8).

Input: m bits; the first f flip slowly (every T examples one of them, chosen at random, flips),
the other m - f are drawn afresh for every example; a bias input of 1 is implicit (the learner's
and the target's Linear layers have biases). Target: a fixed random network with one hidden layer
of n linear threshold units, weights (bias included) +-1, unit i firing when its input sum exceeds
``(m + 1) * beta - S_i`` (S_i the number of its m + 1 input weights that are -1), and a linear
output with weights +-1 (and a +-1 bias).

Every draw of seed s comes from seed s's own generator, so a stream depends only on its seed: the
methods of a comparison see the same examples, and a run group of seeds equals the seeds alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from rlplast.agents.networks import run_generators

SALT = 0x5C2


class ProblemConfig(BaseModel):
    """The problem's parameters (defaults: the paper's)."""

    model_config = ConfigDict(extra="forbid")

    num_bits: int = Field(21, ge=1, description="m: input bits")
    flipping_bits: int = Field(15, ge=0, description="f: slowly flipping bits (the first f)")
    target_hidden: int = Field(100, ge=1, description="n: linear threshold units of the target")
    beta: float = Field(0.7, ge=0, le=1, description="threshold proportion")
    flip_every: int = Field(10_000, ge=1, description="T: examples between two bit flips")

    @model_validator(mode="after")
    def _fits(self) -> ProblemConfig:
        if self.flipping_bits > self.num_bits:
            raise ValueError(f"flipping_bits ({self.flipping_bits}) must be <= num_bits ({self.num_bits})")
        return self


def random_signs(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Uniform +-1 of ``shape``."""
    return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1


class SlowlyChangingRegression:
    """Streams of examples for R seeds, produced one flip period at a time.

    Args:
        cfg: the problem.
        seeds: one stream per seed.
    """

    def __init__(self, cfg: ProblemConfig, seeds: Sequence[int]):
        self.cfg = cfg
        self.generators = run_generators(seeds, SALT)
        m, f, n = cfg.num_bits, cfg.flipping_bits, cfg.target_hidden
        per_seed = []
        for gen in self.generators:
            weight, bias = random_signs((n, m), gen), random_signs((n,), gen)
            out_weight, out_bias = random_signs((n,), gen), random_signs((), gen)
            bits = torch.randint(0, 2, (f,), generator=gen).float()
            per_seed.append((weight, bias, out_weight, out_bias, bits))
        # [R, n, m], [R, n], [R, n], [R], [R, f]
        stacked = (torch.stack(t) for t in zip(*per_seed, strict=True))
        self.weight, self.bias, self.out_weight, self.out_bias, self.bits = stacked
        negatives = (self.weight < 0).sum(-1) + (self.bias < 0)
        self.threshold = (m + 1) * cfg.beta - negatives  # [R, n]
        self.periods = 0

    def target(self, x: Tensor) -> Tensor:
        """The target network: ``x [R, T, m] -> y [R, T]``."""
        pre = torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))  # [R, T, n]
        fired = (pre > self.threshold.unsqueeze(1)).float()
        return (fired * self.out_weight.unsqueeze(1)).sum(-1) + self.out_bias.unsqueeze(1)

    def next_period(self) -> tuple[Tensor, Tensor]:
        """The next ``flip_every`` examples: ``x [R, T, m]`` (0/1 floats) and ``y [R, T]``.

        Every period but the first starts by flipping one random slow bit of each stream.
        """
        cfg = self.cfg
        f, T = cfg.flipping_bits, cfg.flip_every
        if self.periods and f:
            for r, gen in enumerate(self.generators):
                i = int(torch.randint(0, f, (), generator=gen))
                self.bits[r, i] = 1 - self.bits[r, i]
        noise = torch.stack(
            [torch.randint(0, 2, (T, cfg.num_bits - f), generator=gen).float() for gen in self.generators]
        )
        x = torch.cat([self.bits.unsqueeze(1).expand(-1, T, -1), noise], dim=-1)
        self.periods += 1
        return x, self.target(x)
