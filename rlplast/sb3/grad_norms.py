"""Gradient norms of an SB3 policy's actor and critic, averaged over an update's optimizer steps.

SB3's PPO clips the gradients and steps its optimizer without reporting a norm; a step pre-hook
reads them just before each step (after the clipping, which rlplast's configs disable with a huge
``max_grad_norm``), so the SB3 rows log ``losses/grad_norm`` and ``plasticity/{actor,critic}/grad_norm``
like the runner does (the runner's: means over minibatches of the per-step norms).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn


def actor_critic_parameters(policy: nn.Module) -> dict[str, list[nn.Parameter]]:
    """``{"actor": ..., "critic": ...}``: the parameters of an SB3 ``ActorCriticPolicy`` with an MLP
    extractor that each network's loss reaches (the actor's includes ``log_std``)."""
    extractor = policy.mlp_extractor
    return {
        "actor": [*extractor.policy_net.parameters(), *policy.action_net.parameters(), policy.log_std],
        "critic": [*extractor.value_net.parameters(), *policy.value_net.parameters()],
    }


def global_norm(params: Iterable[Tensor]) -> Tensor:
    """The L2 norm of all the gradients of ``params`` together (0 if none has one)."""
    norms = [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


class GradNormMeter:
    """Sums the actor's and the critic's gradient norms at every step of ``optimizer``.

    Args:
        optimizer: the policy's optimizer (a step pre-hook is registered on it).
        networks: ``{name: parameters}``, e.g. from :func:`actor_critic_parameters`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, networks: dict[str, list[nn.Parameter]]):
        self.networks = networks
        self.sums: dict[str, Tensor] = {}
        self.steps = 0
        self._handle = optimizer.register_step_pre_hook(self._before_step)

    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        with torch.no_grad():
            norms = {name: global_norm(params) for name, params in self.networks.items()}
            norms["total"] = torch.linalg.vector_norm(torch.stack(list(norms.values())))
            for name, norm in norms.items():
                self.sums[name] = self.sums[name] + norm if name in self.sums else norm
        self.steps += 1

    def pop_means(self) -> dict[str, float]:
        """Mean norm per network since the last call, plus ``"total"`` (the norm of both together,
        step by step); empty if the optimizer has not stepped."""
        if not self.steps:
            return {}
        means = {name: float(total) / self.steps for name, total in self.sums.items()}
        self.sums, self.steps = {}, 0
        return means

    def remove(self) -> None:
        self._handle.remove()
