"""The plug-in contract: how a plasticity method attaches to any learner without a branch in it.

A learner (PPO, the sanity regression) owns networks built from ``MLP`` and one optimizer, and
calls its plug-ins at fixed points:

    loss.backward()
    for p in plugins: p.before_step(ctx)     # gradients are in .grad (e.g. L1 adds its subgradient)
    optimizer.step()
    for p in plugins: p.after_step(ctx)      # e.g. CBP replaces units, shrink-and-perturb
    ...
    for p in plugins: p.after_update()       # after a whole PPO update (all epochs)

Every parameter has a leading run dimension R; a plug-in keeps per-run state (``[R, ...]``) and
per-run random generators, so run r of a group behaves exactly as it would alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rlplast.agents.networks import BatchedLinear, HiddenLayer


@dataclass
class StepContext:
    """What a learner tells its plug-ins at each optimizer step.

    Attributes:
        step: optimizer steps taken so far (after this one, in ``after_step``).
        loss: the minibatch loss per run before the step, ``[R]`` (detached).
        recompute_loss: evaluates the same minibatch's loss per run with the current weights,
            ``() -> [R]``; for measurements such as UPGD's plasticity p(Z). May be None.
    """

    step: int
    loss: Tensor | None = None
    recompute_loss: Callable[[], Tensor] | None = None


class Plugin:
    """Base class of plasticity plug-ins. Subclasses override the hooks they need.

    Args:
        layers: the hidden layers of every network the method applies to (actor and critic).
        optimizer: the learner's optimizer (a plug-in may reset its per-weight state).
        seeds: the run seeds, length R; seed a per-run generator from them.
    """

    def __init__(self, layers: Sequence[HiddenLayer], optimizer: torch.optim.Optimizer, seeds: Sequence[int]):
        self.layers = list(layers)
        self.optimizer = optimizer
        self.seeds = list(seeds)

    def before_step(self, ctx: StepContext) -> None:
        """After ``backward()``, before ``optimizer.step()``."""

    def after_step(self, ctx: StepContext) -> None:
        """After ``optimizer.step()``; features of the minibatch are in ``layer.features()``."""

    def after_update(self) -> None:
        """After a whole update (PPO: all epochs and minibatches of one rollout)."""

    def stats(self) -> dict[str, Tensor]:
        """Per-run values to log, ``{name: [R]}`` (e.g. units replaced so far)."""
        return {}

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (tensors, numbers, generator states)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""


class ConfiguredPlugin(Plugin):
    """A plug-in built from its config model (``cfg``), as ``build_plugins`` does."""

    def __init__(
        self,
        cfg: object,
        layers: Sequence[HiddenLayer],
        optimizer: torch.optim.Optimizer,
        seeds: Sequence[int],
    ):
        super().__init__(layers, optimizer, seeds)
        self.cfg = cfg


def generator_states(generators: Sequence[torch.Generator]) -> list[Tensor]:
    """The generators' states (uint8 tensors: safe for ``torch.load(weights_only=True)``)."""
    return [g.get_state() for g in generators]


def set_generator_states(generators: Sequence[torch.Generator], states: Sequence[Tensor]) -> None:
    """Restore what :func:`generator_states` returned."""
    for gen, state in zip(generators, states, strict=True):
        gen.set_state(state.cpu())


def linear_layers(layers: Sequence[HiddenLayer]) -> list[BatchedLinear]:
    """Every Linear that ``layers`` touch (incoming and outgoing), each once, in network order."""
    seen: dict[int, BatchedLinear] = {}
    for layer in layers:
        for linear in (layer.incoming, layer.outgoing):
            seen.setdefault(id(linear), linear)
    return list(seen.values())


def reset_optimizer_state(
    optimizer: torch.optim.Optimizer, param: Tensor, dim: int, runs: Tensor, units: Tensor
) -> None:
    """Forget the optimizer's per-weight state (moments, traces, step counts) of the slices
    ``param[runs[k], ..., units[k], ...]``, ``units`` indexing dimension ``dim``.

    Our optimizers (:class:`~rlplast.agents.plasticity.adam.ResettableOptimizer`) restart the
    slices' bias correction too; plain SGD has no per-weight state.
    """
    if hasattr(optimizer, "reset_units"):
        optimizer.reset_units(param, dim, runs, units)
    elif isinstance(optimizer, torch.optim.SGD) and not any(g.get("momentum") for g in optimizer.param_groups):
        return
    else:
        raise TypeError(
            f"cannot reset per-weight state of {type(optimizer).__name__}; use the optimizers of "
            "rlplast.agents.plasticity (kinds adam, sgd, upgd, adaupgd) or set reset_optimizer_state: false"
        )
