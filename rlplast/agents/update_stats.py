"""UpdateStats: PPO's per-minibatch diagnostics, kept raw and reduced once per update.

Each minibatch step records what it has at hand anyway (the detached losses, the log-ratio and
the gradient norm of every parameter tensor); the means over the update (approx KL, clip
fraction, gradient norms per network) are computed in a few batched ops at the end. Reducing per
minibatch would cost about twenty small ops each, ~5% of a PPO update on a CPU, where such an op
costs mostly its dispatch.

Minibatches are equal-sized, so the mean over all samples of the update equals the mean over
minibatches of the per-minibatch means that PPO implementations usually log.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rlplast.metrics import pooled_norms, tensor_norms


class UpdateStats:
    """Per-minibatch records of one PPO update.

    Args:
        groups: the parameters of each network (e.g. actor, critic), each ``[R, ...]``; their
            gradient norms are reported per network and together.
        clip: PPO's ratio clip, for the clip fraction.
    """

    def __init__(self, groups: Sequence[Sequence[Tensor]], clip: float):
        self.params = [p for group in groups for p in group]
        self.sizes = [len(group) for group in groups]
        self.clip = clip
        self.losses: list[Tensor] = []  # [2, R] each: policy loss, value loss
        self.logratios: list[Tensor] = []  # [R, mb] each
        self.norms: list[Tensor] = []  # [T, R] each

    def add_losses(self, policy_loss: Tensor, value_loss: Tensor, logratio: Tensor) -> None:
        """``policy_loss, value_loss [R]``, ``logratio [R, mb]`` of one minibatch (detached)."""
        self.losses.append(torch.stack([policy_loss, value_loss]))
        self.logratios.append(logratio)

    def add_grads(self) -> Tensor:
        """Record the norm of every parameter's gradient now (a missing gradient counts as zero);
        returns them, ``[T, R]`` (pooled per network only if asked: :meth:`network_norms`)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        norms = tensor_norms([g.detach() for g in grads])
        self.norms.append(norms)
        return norms

    def network_norms(self, norms: Tensor) -> Tensor:
        """Per-network gradient norms ``[G, R]`` from one record of :meth:`add_grads`."""
        return pooled_norms(norms, self.sizes)

    def means(self) -> dict[str, Tensor]:
        """Means over the update, ``{name: [R]}``: policy_loss, value_loss, approx_kl,
        clip_fraction, and the gradient norms grad_norm (all networks), actor_grad_norm and
        critic_grad_norm (for the two groups of PPO: actor, critic)."""
        losses = torch.stack(self.losses).mean(0)  # [2, R]
        logratio = torch.stack(self.logratios)  # [M, R, mb]
        ratio = logratio.exp()
        networks = pooled_norms(torch.stack(self.norms), self.sizes)  # [M, G, R]
        out = {
            "policy_loss": losses[0],
            "value_loss": losses[1],
            "approx_kl": ((ratio - 1) - logratio).mean((0, 2)),
            "clip_fraction": ((ratio - 1).abs() > self.clip).float().mean((0, 2)),
            "grad_norm": networks.square().sum(1).sqrt().mean(0),
        }
        if len(self.sizes) == 2:
            out["actor_grad_norm"], out["critic_grad_norm"] = networks.mean(0)
        return out
