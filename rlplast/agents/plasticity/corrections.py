"""Bias corrections of reset slices, advanced for all parameters in a few tensor ops.

After a plug-in resets unit i of a layer, the moments of its slice (row i of the incoming weight
and bias, ``dim=1``; column i of the outgoing weight, ``dim=2``) restart, and their bias
correction ``d = 1 - beta^s`` restarts with them (s: steps since the reset). An element's s is
the one of its most recently reset row or column, so its correction is the smallest of theirs.

The corrections of every reset slice, per beta, are views of one flat buffer: advancing all of
them (``d <- beta d + (1 - beta)``) is two tensor ops per beta whatever the number of parameters,
and the broadcast views a parameter's update needs are built once. Their square roots are kept
too, so an optimizer can divide ``sqrt(v)`` rather than ``v``: second moments of tiny gradients
are subnormal floats, and arithmetic on those is many times slower on a CPU. The views live in the
optimizer's per-parameter state (``bias_correction{j}_dim{d}``, ``[R, size]``), so they are saved
and loaded with it; :meth:`SliceCorrections.pack` rebuilds the buffers after a load or a new
reset dimension.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def key(beta_index: int, dim: int) -> str:
    """The optimizer-state key of the corrections of slices along ``dim`` for beta ``beta_index``."""
    return f"bias_correction{beta_index}_dim{dim}"


class SliceCorrections:
    """The reset slices' corrections of one parameter group of an optimizer (one device)."""

    def __init__(self) -> None:
        self.flat: list[Tensor] = []  # per beta: every registered slice vector, concatenated
        self.roots: list[Tensor] = []  # per beta: sqrt of flat, refreshed by advance()
        self.members: list[tuple[Tensor, dict[str, Any]]] = []  # (param, state) with reset dims
        self.shaped: dict[tuple[int, bool], list[list[Tensor]]] = {}  # (id(param), root) -> per beta: views

    def register(self, param: Tensor, state: dict[str, Any], dim: int, fills: Sequence[float]) -> None:
        """Start tracking slices of ``param`` along ``dim``, every slice at correction ``fills[j]``."""
        for j, fill in enumerate(fills):
            state[key(j, dim)] = param.new_full((param.shape[0], param.shape[dim]), fill)
        state["reset_dims"] = sorted([*state.get("reset_dims", []), dim])

    def pack(self, states: dict[Tensor, dict[str, Any]], num_betas: int) -> None:
        """(Re)build the flat buffers from the vectors in ``states`` (the optimizer's state)."""
        self.members = [(p, s) for p, s in states.items() if s.get("reset_dims")]
        self.flat, self.roots, self.shaped = [], [], {}
        vectors = [[s[key(j, d)] for _, s in self.members for d in s["reset_dims"]] for j in range(num_betas)]
        if not self.members:
            return
        for j in range(num_betas):
            self.flat.append(torch.cat([v.reshape(-1) for v in vectors[j]]))
            self.roots.append(self.flat[j].sqrt())
        for j in range(num_betas):
            offset = 0
            for param, state in self.members:
                views, roots = [], []
                for dim in state["reset_dims"]:
                    size = state[key(j, dim)].shape
                    span = slice(offset, offset + size.numel())
                    state[key(j, dim)] = self.flat[j][span].view(size)
                    shape = [size[0]] + [1] * (param.dim() - 1)
                    shape[dim] = size[1]
                    views.append(self.flat[j][span].view(shape))
                    roots.append(self.roots[j][span].view(shape))
                    offset += size.numel()
                self.shaped.setdefault((id(param), False), []).append(views)
                self.shaped.setdefault((id(param), True), []).append(roots)

    def advance(self, betas: Sequence[float], stepped: Sequence[Tensor]) -> None:
        """One step of every tracked slice of the ``stepped`` parameters."""
        if not self.members:
            return
        ids = {id(p) for p in stepped}
        if all(id(p) in ids for p, _ in self.members):
            for flat, beta in zip(self.flat, betas, strict=True):
                flat.mul_(beta).add_(1.0 - beta)
        else:
            for j, beta in enumerate(betas):  # some tracked parameter had no gradient this step
                vectors = [s[key(j, d)] for p, s in self.members if id(p) in ids for d in s["reset_dims"]]
                if vectors:
                    torch._foreach_mul_(vectors, beta)
                    torch._foreach_add_(vectors, 1.0 - beta)
        for flat, root in zip(self.flat, self.roots, strict=True):
            torch.sqrt(flat, out=root)

    def combined(self, param: Tensor, beta_index: int, root: bool = False) -> Tensor:
        """Correction ``beta_index`` of every element of ``param`` (its square root if ``root``),
        broadcastable to ``param``: the slices' view itself for one reset dimension, their
        elementwise minimum (a new full-size tensor) for two."""
        views = self.shaped[(id(param), root)][beta_index]
        return views[0] if len(views) == 1 else functools.reduce(torch.minimum, views)


class ResetCorrections:
    """The bias corrections of a parameter with reset units, computed when read (a parameter
    reset along two dimensions pays a full-size minimum per correction, so only those an
    optimizer uses are made).

    ``corrections[j]`` is correction j, ``corrections.root(j)`` its square root, both
    broadcastable to the parameter.
    """

    def __init__(self, slices: SliceCorrections, param: Tensor):
        self.slices, self.param = slices, param

    def __getitem__(self, beta_index: int) -> Tensor:
        return self.slices.combined(self.param, beta_index)

    def root(self, beta_index: int) -> Tensor:
        return self.slices.combined(self.param, beta_index, root=True)
