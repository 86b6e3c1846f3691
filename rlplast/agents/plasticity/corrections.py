"""Per-element bias corrections after unit resets, kept as the step at which each slice was reset.

After a plug-in resets unit i of a layer, the moments of its slice (row i of the incoming weight
and bias, ``dim=1``; column i of the outgoing weight, ``dim=2``) restart, and their bias
correction ``d = 1 - beta^s`` restarts with them (s: the element's own step count, steps since
its most recent reset). The optimizer stores, per parameter and reset dimension, the parameter's
step count at each slice's last reset (``reset_step_dim{d}``, ``[R, size]`` int64, 0 for a slice
never reset), so an element's own step count is the parameter's step count minus the largest
reset step of its row and column. These vectors live in the optimizer state: they are saved and
loaded with it, and change only when a unit is reset.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

RESET_STEP = "reset_step_dim"  # + the dimension: optimizer-state key of the slices' reset steps


def key(dim: int) -> str:
    """The optimizer-state key of the reset steps of the slices along ``dim``."""
    return f"{RESET_STEP}{dim}"


def broadcast_shape(param: Tensor, dim: int) -> list[int]:
    """The shape that lays a ``[R, param.shape[dim]]`` slice vector along ``dim`` of ``param``."""
    shape = [param.shape[0]] + [1] * (param.dim() - 1)
    shape[dim] = param.shape[dim]
    return shape


def last_reset_steps(param: Tensor, state: dict[str, Any]) -> Tensor:
    """Per element of ``param``, the parameter step at which its latest reset happened (0: never),
    int64, broadcastable to ``param`` (a view of the slice vector for one reset dimension)."""
    views = [state[key(dim)].view(broadcast_shape(param, dim)) for dim in state["reset_dims"]]
    return views[0] if len(views) == 1 else functools.reduce(torch.maximum, views)


def bias_correction(beta: float, steps: Tensor, dtype: torch.dtype) -> Tensor:
    """``1 - beta^steps`` computed in float64, in ``dtype``."""
    return (1 - torch.pow(beta, steps.double())).to(dtype)


def saturation_step(betas: Sequence[float], dtype: torch.dtype) -> int:
    """The first step count s at which ``1 - beta^s`` rounds to 1 in ``dtype`` for every beta:
    from then on an element's bias correction equals the tensor-wide one to the float precision
    (for beta 0.99 in float32: 1,725 steps)."""

    def saturated(beta: float, s: int) -> bool:
        return torch.tensor(1 - beta**s, dtype=torch.float64).to(dtype).item() == 1.0

    out = 1
    for beta in (b for b in betas if b > 0):
        s = max(1, math.ceil(math.log(torch.finfo(dtype).eps / 4) / math.log(beta)))  # about there
        while s > 1 and saturated(beta, s - 1):
            s -= 1
        while not saturated(beta, s):
            s += 1
        out = max(out, s)
    return out


class ResetCorrections:
    """The bias corrections of a parameter with reset units, computed when read.

    ``corrections[j]`` is ``1 - beta_j^s`` per element and ``corrections.root(j)`` its square
    root, both broadcastable to the parameter (s: the element's own step count).
    """

    def __init__(self, param: Tensor, state: dict[str, Any], betas: Sequence[float]):
        self.param, self.betas = param, betas
        self.steps = state["step"] - last_reset_steps(param, state)

    def __getitem__(self, beta_index: int) -> Tensor:
        return bias_correction(self.betas[beta_index], self.steps, self.param.dtype)

    def root(self, beta_index: int) -> Tensor:
        return self[beta_index].sqrt()
