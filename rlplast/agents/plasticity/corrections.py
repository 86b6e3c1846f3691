"""Bias corrections of reset slices, advanced for all parameters in a few tensor ops.

After a plug-in resets unit i of a layer, the moments of its slice (row i of the incoming weight
and bias, ``dim=1``; column i of the outgoing weight, ``dim=2``) restart, and their bias
correction ``d = 1 - beta^s`` restarts with them (s: steps since the reset). An element's s is
the one of its most recently reset row or column, so its correction is the smallest of theirs.

The corrections of every reset slice, per beta, are views of one flat buffer: advancing all of
them (``d <- beta d + (1 - beta)``) is two tensor ops per beta whatever the number of parameters,
and the broadcast views a parameter's update needs are built once. The views live in the
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
    """The reset slices' corrections of one optimizer (all its parameters on one device)."""

    def __init__(self) -> None:
        self.flat: list[Tensor] = []  # per beta: every registered slice vector, concatenated
        self.members: list[tuple[Tensor, dict[str, Any]]] = []  # (param, state) with reset dims
        self.shaped: dict[int, list[list[Tensor]]] = {}  # id(param) -> per beta: broadcast views

    def register(self, param: Tensor, state: dict[str, Any], dim: int, fills: Sequence[float]) -> None:
        """Start tracking slices of ``param`` along ``dim``, every slice at correction ``fills[j]``."""
        for j, fill in enumerate(fills):
            state[key(j, dim)] = param.new_full((param.shape[0], param.shape[dim]), fill)
        state["reset_dims"] = sorted([*state.get("reset_dims", []), dim])

    def pack(self, states: dict[Tensor, dict[str, Any]], num_betas: int) -> None:
        """(Re)build the flat buffers from the vectors in ``states`` (the optimizer's state)."""
        self.members = [(p, s) for p, s in states.items() if s.get("reset_dims")]
        self.flat, self.shaped = [], {}
        vectors = [[s[key(j, d)] for _, s in self.members for d in s["reset_dims"]] for j in range(num_betas)]
        if not self.members:
            return
        for j in range(num_betas):
            self.flat.append(torch.cat([v.reshape(-1) for v in vectors[j]]))
        for j in range(num_betas):
            offset = 0
            for param, state in self.members:
                views = []
                for dim in state["reset_dims"]:
                    size = state[key(j, dim)].shape
                    view = self.flat[j][offset : offset + size.numel()].view(size)
                    state[key(j, dim)] = view
                    shape = [size[0]] + [1] * (param.dim() - 1)
                    shape[dim] = size[1]
                    views.append(view.view(shape))
                    offset += size.numel()
                self.shaped.setdefault(id(param), []).append(views)

    def advance(self, betas: Sequence[float], stepped: Sequence[Tensor]) -> None:
        """One step of every tracked slice of the ``stepped`` parameters."""
        if not self.members:
            return
        ids = {id(p) for p in stepped}
        if all(id(p) in ids for p, _ in self.members):
            for flat, beta in zip(self.flat, betas, strict=True):
                flat.mul_(beta).add_(1.0 - beta)
            return
        for j, beta in enumerate(betas):  # some tracked parameter had no gradient this step
            vectors = [s[key(j, d)] for p, s in self.members if id(p) in ids for d in s["reset_dims"]]
            if vectors:
                torch._foreach_mul_(vectors, beta)
                torch._foreach_add_(vectors, 1.0 - beta)

    def combined(self, param: Tensor, beta_index: int) -> Tensor:
        """Correction ``beta_index`` of every element of ``param``, broadcastable to it."""
        return functools.reduce(torch.minimum, self.shaped[id(param)][beta_index])
