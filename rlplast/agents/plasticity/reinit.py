"""Reinitialising hidden units: the step CBP and ReDo share.

A replacement is a list of (run, unit) pairs, ``runs [K]`` and ``units [K]`` (CPU int64, sorted
by run). New incoming weights are drawn for run r from run r's own generator, so a run in a
group draws exactly what it would draw alone; everything else is one vectorised op per tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rlplast.agents.networks import HiddenLayer
from rlplast.agents.plasticity.base import reset_optimizer_state


def sample_incoming(layer: HiddenLayer, runs: Tensor, generators: Sequence[torch.Generator], gain: float) -> Tensor:
    """Fresh incoming weights for the units being replaced, from the layer's init distribution.

    Args:
        layer: the hidden layer.
        runs: ``[K]`` run of each replaced unit, sorted.
        generators: one CPU generator per run.
        gain: multiplies the LeCun bound sqrt(3 / fan_in) (1 = the networks' init).

    Returns:
        ``[K, in_features]`` samples of U(-gain * bound, gain * bound) (CPU).
    """
    bound = gain * layer.incoming.init_bound()
    fan_in = layer.incoming.in_features
    run_ids, counts = torch.unique_consecutive(runs, return_counts=True)
    rows = [
        torch.rand(int(count), fan_in, generator=generators[int(run)]) * 2 - 1
        for run, count in zip(run_ids, counts, strict=True)
    ]
    return torch.cat(rows) * bound


@torch.no_grad()
def reinit_units(
    layer: HiddenLayer,
    runs: Tensor,
    units: Tensor,
    incoming_weight: Tensor,
    incoming_bias: Tensor | float,
    optimizer: torch.optim.Optimizer | None,
    mean_activation: Tensor | None = None,
) -> None:
    """Give units new incoming weights and zero outgoing weights.

    Args:
        layer: the hidden layer whose units are replaced.
        runs: ``[K]`` run index of each unit.
        units: ``[K]`` unit index within the layer.
        incoming_weight: ``[K, in_features]`` the units' new incoming weights.
        incoming_bias: ``[K]`` (or a number) the units' new incoming biases.
        optimizer: if given, its per-weight state of every reset weight is forgotten.
        mean_activation: ``[K]`` the units' mean activation; if given, the next layer's bias
            absorbs ``mean_activation * w_out`` so the function does not jump (CBP).
    """
    incoming, outgoing = layer.incoming, layer.outgoing
    device = incoming.weight.device
    runs, units = runs.to(device), units.to(device)
    if mean_activation is not None:
        removed = outgoing.weight[runs, :, units] * mean_activation.to(device).unsqueeze(1)  # [K, out]
        outgoing.bias.index_put_((runs,), removed, accumulate=True)
    incoming.weight[runs, units] = incoming_weight.to(device=device, dtype=incoming.weight.dtype)
    incoming.bias[runs, units] = incoming_bias if isinstance(incoming_bias, float) else incoming_bias.to(device)
    outgoing.weight[runs, :, units] = 0.0
    if optimizer is not None:
        reset_optimizer_state(optimizer, incoming.weight, 1, runs, units)
        reset_optimizer_state(optimizer, incoming.bias, 1, runs, units)
        reset_optimizer_state(optimizer, outgoing.weight, 2, runs, units)
