"""Gaussian noise for a list of ``[R, ...]`` tensors, run r drawn from its own generator.

Two sources (``noise: table | exact`` in UPGD's and shrink-and-perturb's configs):

* ``exact``: fresh ``torch.randn`` draws, one per run per call (the run's slice of every tensor,
  concatenated), from the run's generator on the tensors' device.
* ``table`` (the default): the shared noise table of Salimans et al. (2017), "Evolution
  Strategies as a Scalable Alternative to Reinforcement Learning" (arXiv:1703.03864: one block
  of Gaussian noise made once, perturbations taken as randomly indexed parts of it). One fixed
  table of standard normals per process and device (:func:`noise_table`); each call draws, per run,
  one offset o uniformly from the run's own CPU generator, and run r's noise is the contiguous
  slice ``table[o : o + n]`` (n: the run's element count). Nothing is generated per call, which
  is the point: torch's CPU generator makes ``randn`` over PPO's ~150k weights cost more than
  the whole Adam step.

Why the table is a sound approximation: the entries are iid N(0, 1), so within one call the n
values of a run are iid (distinct entries); over calls, one weight gets the entries at
independent uniform offsets, i.e. iid draws from the table's empirical distribution (4M samples
of N(0, 1) at the default size: its moments and tails match the Gaussian's far beyond what a
perturbation of std 1e-3 can resolve). The only coupling: weights j and k at two calls whose
offsets differ by exactly k - j get the same value, an event of probability about 1 / 4M per
pair of calls. Runs share the table, and are coupled the same way.

Either way run r draws exactly what it would draw alone, and the generators' states (saved with
a checkpoint) fix the rest of the stream.

:func:`decay_and_add_` applies a decay and an increment (such as noise) to a list of tensors in
one multi-tensor pass where it can: on a CPU each such pass costs mostly its per-tensor dispatch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from rlplast.agents.networks import run_generators
from rlplast.agents.plasticity.base import generator_states, set_generator_states

NoiseSource = Literal["table", "exact"]
TABLE_SEED = 0x5EED7AB1E
TABLE_SIZE = 1 << 22  # 16 MiB of float32
TABLE_SPARE = 8  # the table holds at least this many draws, so offsets spread over most of it
MIN_FOLDED_DECAY = 1e-12  # decay_and_add_ divides by decays >= this only: far from overflow


def table_size(n: int) -> int:
    """Entries of the table that serves draws of ``n`` numbers: 2^22, or the next power of two
    of at least ``TABLE_SPARE * n`` for networks too large for that."""
    return max(TABLE_SIZE, 1 << (TABLE_SPARE * n - 1).bit_length())


@functools.cache
def noise_table(size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The shared table of ``size`` standard normals, ``[size]``, one per (size, device, dtype).

    Drawn on the CPU from a generator seeded with ``TABLE_SEED`` in double precision and rounded
    to float32 (then cast to ``dtype``), so the table does not depend on the device and, but for
    last-bit differences of the C math library that the rounding almost always hides, not on the
    machine either.
    """
    gen = torch.Generator().manual_seed(TABLE_SEED)
    table = torch.randn(size, generator=gen, dtype=torch.float64).to(torch.float32)
    return table.to(device=device, dtype=dtype)


def run_views(flat: Tensor, tensors: Sequence[Tensor]) -> list[Tensor]:
    """Views of ``flat`` (``[R, total]``) shaped like ``tensors`` (each ``[R, ...]``): row r holds
    run r's elements of every tensor, concatenated in order."""
    chunks = flat.split([math.prod(t.shape[1:]) for t in tensors], dim=1)
    return [c.unflatten(1, t.shape[1:]) if t.dim() > 1 else c[:, 0] for c, t in zip(chunks, tensors, strict=True)]


class RunNoise:
    """Per-run standard normal noise shaped like ``tensors``.

    Args:
        tensors: the tensors to perturb, each ``[R, ...]`` on one device (shapes are read once).
        seeds: the run seeds, length R.
        salt: separates this stream from the other uses of the run seeds.
        source: ``"table"`` (slices of the shared table) or ``"exact"`` (fresh ``randn`` draws).
    """

    def __init__(self, tensors: Sequence[Tensor], seeds: Sequence[int], salt: int, source: NoiseSource = "table"):
        if source not in ("table", "exact"):
            raise ValueError(f"unknown noise source {source!r}; known: 'table', 'exact'")
        device = tensors[0].device if tensors else torch.device("cpu")
        dtype = tensors[0].dtype if tensors else torch.float32
        self.numel = sum(math.prod(t.shape[1:]) for t in tensors)  # per run
        self.table = None
        if source == "table":  # offsets are Python ints: CPU generators, no device sync
            self.table = noise_table(table_size(self.numel), torch.device(device), dtype)
        self.generators = run_generators(seeds, salt, "cpu" if source == "table" else device)
        self.buffer = torch.empty(len(self.generators), self.numel, device=device, dtype=dtype)  # [R, total]
        self.views = run_views(self.buffer, tensors)

    def draw(self, scale: float = 1.0) -> list[Tensor]:
        """``scale`` times standard normal noise, one tensor per input tensor, ``[R, ...]`` each.

        The tensors are views of one buffer that the next call overwrites.
        """
        self.draw_into(self.buffer, scale)
        return self.views

    def draw_into(self, out: Tensor, scale: float = 1.0) -> None:
        """Write ``scale`` times the next draw of every run into ``out`` (``[R, total]``, the
        tensors' elements of run r concatenated in row r)."""
        for row, gen in zip(out, self.generators, strict=True):
            if self.table is None:
                torch.randn(row.shape, generator=gen, out=row)
                if scale != 1.0:
                    row.mul_(scale)
            else:
                start = int(torch.randint(len(self.table) - self.numel + 1, (1,), generator=gen))
                torch.mul(self.table[start : start + self.numel], scale, out=row)

    def state_dict(self) -> list[Tensor]:
        return generator_states(self.generators)

    def load_state_dict(self, states: Sequence[Tensor]) -> None:
        set_generator_states(self.generators, states)


def decay_divisor(decay: float) -> float:
    """What :func:`decay_and_add_` wants the increments divided by: ``decay`` where it folds the
    decay into its one pass, else 1."""
    return decay if decay >= MIN_FOLDED_DECAY else 1.0


def decay_and_add_(tensors: Sequence[Tensor], increments: Sequence[Tensor], decay: float) -> None:
    """``w <- (1 - decay) w + y`` for every tensor w, ``increments`` holding ``y / decay_divisor(decay)``.

    ``lerp(w, y / decay, decay) = (1 - decay) w + y`` is one pass where a decay and an add are two.
    """
    if decay >= MIN_FOLDED_DECAY:
        torch._foreach_lerp_(tensors, increments, decay)
        return
    if decay:
        torch._foreach_mul_(tensors, 1 - decay)
    torch._foreach_add_(tensors, increments)
