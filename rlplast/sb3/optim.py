"""Resetting a torch optimizer's per-weight state for units of views with a run dimension of 1.

rlplast's plug-ins reset optimizer state through ``optimizer.reset_units(param, dim, runs,
units)`` with ``param`` a ``[R, ...]`` tensor (see rlplast.agents.plasticity.base). SB3 builds a
plain ``torch.optim`` optimizer whose state is keyed by the ``nn.Linear`` parameters themselves,
while CBP on an SB3 policy hands it the ``[1, ...]`` views of :class:`rlplast.sb3.layers.LinearView`.
:class:`TorchOptimizerResets` maps each view back to its parameter (they share storage) and zeroes
the slices of every per-weight state tensor (Adam's ``exp_avg`` / ``exp_avg_sq``, SGD's momentum,
...).

What it cannot do: ``torch.optim.Adam`` keeps one step count per parameter tensor, so the zeroed
moments restart under the tensor's old bias correction ``1 - beta^t`` (about 1 late in training):
for the first steps after a reset, the reset weights' Adam steps are smaller than a fresh Adam's
by the factor ``1 - beta1^s`` (s steps since the reset). rlplast's own Adam corrects this per
unit; the reference code kept the stale moments altogether (``reset_optimizer_state: false``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class TorchOptimizerResets:
    """``reset_units`` for a torch optimizer, given ``[1, ...]`` views of its parameters.

    Args:
        optimizer: returns the optimizer now (a callable, since SB3 may rebuild it, e.g. on load).
    """

    def __init__(self, optimizer: Callable[[], torch.optim.Optimizer]):
        self._optimizer = optimizer

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._optimizer()

    def _parameter(self, view: Tensor) -> Tensor:
        """The optimizer's parameter that ``view`` (``[1, *param.shape]``) shows."""
        shape, ptr = tuple(view.shape[1:]), view.data_ptr()
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                if param.data_ptr() == ptr and tuple(param.shape) == shape:
                    return param
        raise ValueError(f"no parameter of the optimizer has the storage of this view of shape {tuple(view.shape)}")

    @torch.no_grad()
    def reset_units(self, param: Tensor, dim: int, runs: Tensor, units: Tensor) -> None:
        """Zero the per-weight state of the slices ``param[0, ..., units[k], ...]``.

        Args:
            param: a ``[1, ...]`` view of one of the optimizer's parameters.
            dim: the dimension of ``param`` that ``units`` index (1: rows of a weight or entries
                of a bias; 2: columns of a weight).
            runs: ``[K]`` run of each slice; all 0 here.
            units: ``[K]`` index of each slice along ``dim``.
        """
        if param.shape[0] != 1 or bool((runs != 0).any()):
            raise ValueError(f"views of a plain optimizer's parameters have one run; got shape {tuple(param.shape)}")
        if not 1 <= dim < param.dim():
            raise ValueError(f"dim must be in 1..{param.dim() - 1} for a view of shape {tuple(param.shape)}")
        target = self._parameter(param)
        state = self.optimizer.state.get(target)
        if not state:  # never stepped: nothing to forget
            return
        index = (*[slice(None)] * (dim - 1), units.to(target.device))
        for value in state.values():
            if isinstance(value, Tensor) and value.shape == target.shape:
                value[index] = 0
