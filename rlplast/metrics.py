"""Plasticity metrics as pure functions of tensors, batched over any leading dimensions.

Definitions follow PROTOCOL.md section 6. A feature window is a matrix ``[n, d]`` (n samples of
d units' post-activation outputs); every function also takes ``[..., n, d]`` (typically
``[R, n, d]`` for a run group) and returns one value per leading index, so a run group's values
are computed in one batched call (one ``torch.linalg.svdvals`` for all runs).

Feature metrics (``features [..., n, d] -> [...]``):
    - :func:`stable_rank`: srank_delta, the smallest k whose top-k singular values sum to at
      least (1 - delta) of the sum of all singular values (Kumar et al. 2021).
    - :func:`effective_rank`: exp of the entropy of the singular values normalised to sum 1.
    - :func:`dormant_fraction`: share (a fraction in [0, 1]) of units active (h > 0) on at most
      ``threshold`` of the samples (the loss-of-plasticity reference form).
    - :func:`redo_dormant_fraction`: share (in [0, 1]) of units whose ReDo score
      ``mean|h| / (mean over the layer's units of mean|h|)`` is at most ``tau`` (Sokar et al. 2023).
    - :func:`feature_norm`: mean over samples of the L2 norm of the feature vector.

Both dormant fractions also take a sequence of layers (same leading dims and n) and return the
share of all their units, e.g. the share of all hidden units of a network.

Weight and training metrics (per run, R the leading dimension of every parameter):
    - :func:`weight_magnitude`: mean |w| over the weights of Linear layers, ``-> [R]``.
    - :func:`weight_change`: mean |w - w_prev| over the same weights, ``-> [R]``.
    - :func:`grad_norm` / :func:`grad_norms`: global L2 norm of the gradients of a set (or of
      each of several sets) of parameters, ``-> [R]`` (``[G, R]``); built from
      :func:`tensor_norms` and :func:`pooled_norms`, which PPO uses to pool once per update.
    - :func:`gaussian_entropy`: entropy of a diagonal Gaussian policy from ``log_std``, ``-> [R]``.
    - :func:`upgd_plasticity`: UPGD's p(Z) = max(1 - L(W', Z) / max(L(W, Z), eps), 0), ``-> [R]``.

An all-zero feature matrix (every unit dead) has stable rank 0 and effective rank 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from rlplast.agents.networks import BatchedLinear

LayerFeatures = Tensor | Sequence[Tensor]
WeightsLike = nn.Module | Tensor | Sequence[Tensor]


def _check_matrix(features: Tensor, name: str = "features") -> None:
    if features.dim() < 2:
        raise ValueError(f"{name} must have shape [..., n, d] (at least 2 dims), got {tuple(features.shape)}")


def singular_values(features: Tensor) -> Tensor:
    """Singular values in descending order.

    Args:
        features: ``[..., n, d]``.

    Returns:
        ``[..., min(n, d)]``, descending.
    """
    _check_matrix(features)
    return torch.linalg.svdvals(features)


def stable_rank_from_singular_values(sv: Tensor, delta: float = 0.01) -> Tensor:
    """srank_delta from singular values (any order).

    Args:
        sv: ``[..., k]`` non-negative singular values.
        delta: tolerance in [0, 1); the top-k values must reach (1 - delta) of the total.

    Returns:
        ``[...]`` int64 counts in [0, k]; 0 where every singular value is 0.
    """
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    # Float64 cumulative sums so that a count near the threshold does not flip on rounding.
    sv = sv.to(torch.float64).sort(dim=-1, descending=True).values
    cumulative = sv.cumsum(dim=-1)
    target = (1.0 - delta) * cumulative[..., -1:]
    # Number of prefixes still short of the target, plus one, is the first k that reaches it.
    short = (cumulative < target).sum(dim=-1)
    k = torch.clamp(short + 1, max=sv.shape[-1])
    return torch.where(cumulative[..., -1] > 0, k, torch.zeros_like(k))


def effective_rank_from_singular_values(sv: Tensor) -> Tensor:
    """exp(-sum p_i log p_i) with p = sv / sum(sv) (0 log 0 = 0).

    Args:
        sv: ``[..., k]`` non-negative singular values.

    Returns:
        ``[...]`` in [1, k] (same dtype as ``sv``); 0 where every singular value is 0.
    """
    total = sv.sum(dim=-1, keepdim=True)
    p = sv / total.clamp_min(torch.finfo(sv.dtype).tiny)
    entropy = -torch.special.xlogy(p, p).sum(dim=-1)
    return torch.where(total.squeeze(-1) > 0, entropy.exp(), torch.zeros_like(entropy))


def stable_rank(features: Tensor, delta: float = 0.01) -> Tensor:
    """Smallest k whose top-k singular values sum to >= (1 - delta) of the total.

    Args:
        features: ``[..., n, d]``.
        delta: tolerance in [0, 1); 0.01 is the reference value.

    Returns:
        ``[...]`` int64 counts in [0, min(n, d)].
    """
    return stable_rank_from_singular_values(singular_values(features), delta)


def effective_rank(features: Tensor) -> Tensor:
    """exp of the entropy of the normalised singular values (Roy and Vetterli 2007).

    Args:
        features: ``[..., n, d]``.

    Returns:
        ``[...]`` values in [1, min(n, d)] (0 for an all-zero matrix).
    """
    return effective_rank_from_singular_values(singular_values(features))


def _layer_list(features: LayerFeatures) -> list[Tensor]:
    layers = [features] if isinstance(features, Tensor) else list(features)
    if not layers:
        raise ValueError("need at least one layer of features, got an empty sequence")
    for i, f in enumerate(layers):
        _check_matrix(f, f"features of layer {i}")
    return layers


def dormant_mask(features: Tensor, threshold: float = 0.01) -> Tensor:
    """Units active (h > 0) on at most ``threshold`` of the samples.

    Args:
        features: ``[..., n, d]``.
        threshold: share of samples in [0, 1].

    Returns:
        ``[..., d]`` bool.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    _check_matrix(features)
    # sign(h) clamped at 0 is 1 where h > 0, else 0 (torch's sign of NaN is 0: inactive, as
    # h > 0 says): the count of (h > 0) without the bool tensor and its cast, 4x cheaper on a CPU
    active_share = torch.sign(features).clamp_(min=0).sum(dim=-2) / features.shape[-2]
    return active_share <= threshold


def dormant_fraction(features: LayerFeatures, threshold: float = 0.01) -> Tensor:
    """Share of units active on at most ``threshold`` of the samples (reference form).

    Args:
        features: ``[..., n, d]``, or a sequence of such layers (same leading dims), pooled.
        threshold: share of samples in [0, 1]; 0.01 is the reference value.

    Returns:
        ``[...]`` float fraction in [0, 1] (not percent) over all units of all layers.
    """
    masks = [dormant_mask(f, threshold) for f in _layer_list(features)]
    return torch.cat(masks, dim=-1).float().mean(dim=-1)


def redo_scores(features: Tensor) -> Tensor:
    """ReDo unit scores: mean |h| over samples, divided by its mean over the layer's units.

    Args:
        features: ``[..., n, d]``.

    Returns:
        ``[..., d]`` non-negative scores with mean 1 over units (all 0 if the layer is silent).
    """
    _check_matrix(features)
    activity = features.abs().mean(dim=-2)
    layer_mean = activity.mean(dim=-1, keepdim=True)
    return activity / layer_mean.clamp_min(torch.finfo(activity.dtype).tiny)


def redo_dormant_fraction(features: LayerFeatures, tau: float) -> Tensor:
    """Share of units whose ReDo score is <= ``tau`` (each layer normalised by its own mean).

    Args:
        features: ``[..., n, d]``, or a sequence of such layers (same leading dims), pooled.
        tau: score threshold >= 0 (ReDo uses 0.0 and 0.1).

    Returns:
        ``[...]`` float fraction in [0, 1] over all units of all layers.
    """
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    masks = [redo_scores(f) <= tau for f in _layer_list(features)]
    return torch.cat(masks, dim=-1).float().mean(dim=-1)


def feature_norm(features: Tensor) -> Tensor:
    """Mean over samples of the L2 norm of each sample's feature vector.

    Args:
        features: ``[..., n, d]``.

    Returns:
        ``[...]``.
    """
    _check_matrix(features)
    return torch.linalg.vector_norm(features, dim=-1).mean(dim=-1)


def linear_weights(module: nn.Module) -> list[Tensor]:
    """Weights of every Linear layer in ``module``, each ``[R, out, in]``, in module order.

    A plain ``nn.Linear`` weight ``[out, in]`` is read as one run, ``[1, out, in]``.
    """
    weights = []
    for m in module.modules():
        if isinstance(m, BatchedLinear):
            weights.append(m.weight)
        elif isinstance(m, nn.Linear):
            weights.append(m.weight.unsqueeze(0))
    if not weights:
        raise ValueError(f"{type(module).__name__} holds no BatchedLinear or nn.Linear layer")
    return weights


def _weight_list(weights: WeightsLike) -> list[Tensor]:
    if isinstance(weights, nn.Module):
        return linear_weights(weights)
    tensors = [weights] if isinstance(weights, Tensor) else list(weights)
    if not tensors:
        raise ValueError("need at least one weight tensor, got an empty sequence")
    runs = {w.shape[0] if w.dim() else None for w in tensors}
    if None in runs or len(runs) != 1:
        shapes = [tuple(w.shape) for w in tensors]
        raise ValueError(f"weights must share a leading run dimension R, got shapes {shapes}")
    return tensors


def _pooled_mean_abs(tensors: Sequence[Tensor]) -> Tensor:
    """Mean |x| over all non-run elements of all tensors, ``-> [R]``."""
    total = sum(t.detach().abs().flatten(1).sum(dim=1) for t in tensors)
    count = sum(t[0].numel() for t in tensors)
    return total / count


def weight_magnitude(weights: WeightsLike) -> Tensor:
    """Mean |w| per run, pooled over every element of the given weights (biases excluded).

    Args:
        weights: one weight ``[R, out, in]``, a sequence of them (pooled, so a large layer counts
            more), or a module whose Linear layers are read with :func:`linear_weights`.

    Returns:
        ``[R]``.
    """
    return _pooled_mean_abs(_weight_list(weights))


def weight_change(weights: WeightsLike, previous: WeightsLike) -> Tensor:
    """Mean |w - w_prev| per run, pooled like :func:`weight_magnitude`.

    Args:
        weights: the current weights (tensor, sequence of tensors or module).
        previous: the same weights at an earlier time, same shapes.

    Returns:
        ``[R]``, on the scale of :func:`weight_magnitude`.
    """
    now, before = _weight_list(weights), _weight_list(previous)
    if [w.shape for w in now] != [w.shape for w in before]:
        raise ValueError(
            f"weights and previous must have the same shapes, got {[tuple(w.shape) for w in now]} "
            f"and {[tuple(w.shape) for w in before]}"
        )
    return _pooled_mean_abs([a.detach() - b.detach() for a, b in zip(now, before, strict=True)])


def grad_norm(params: Iterable[Tensor]) -> Tensor:
    """Global L2 norm of the gradients per run; parameters without a gradient are skipped.

    Args:
        params: parameters ``[R, ...]`` whose ``.grad`` holds their gradient.

    Returns:
        ``[R]``.
    """
    return grad_norms([params])[0]


def grad_norms(groups: Sequence[Iterable[Tensor]]) -> Tensor:
    """:func:`grad_norm` of each group of parameters (e.g. actor and critic), ``[G, R]``."""
    groups = [list(g) for g in groups]
    if not all(groups):
        raise ValueError("grad_norm needs at least one parameter per group")
    grads = [[p.grad.detach() for p in g if p.grad is not None] for g in groups]
    everything = [g for group in grads for g in group]
    if not everything:
        return groups[0][0].new_zeros(len(groups), groups[0][0].shape[0])
    return pooled_norms(tensor_norms(everything), [len(group) for group in grads])


def tensor_norms(tensors: Sequence[Tensor]) -> Tensor:
    """L2 norm of each tensor ``[R, ...]`` per run, ``[T, R]`` (for one run: every tensor's norm
    in one multi-tensor call)."""
    if tensors[0].shape[0] == 1:
        return torch.stack(torch._foreach_norm(list(tensors))).view(len(tensors), 1)
    return torch.stack([torch.linalg.vector_norm(t.flatten(1), dim=1) for t in tensors])


def pooled_norms(norms: Tensor, sizes: Sequence[int]) -> Tensor:
    """The norm of each group of tensors from their norms: ``norms [..., T, R]`` of T tensors in
    consecutive groups of ``sizes`` (sum T) -> ``[..., G, R]`` (a group of none: 0)."""
    squares = norms.square().split(list(sizes), dim=-2)
    return torch.stack([part.sum(-2) for part in squares], -2).sqrt()


def gaussian_entropy(log_std: Tensor) -> Tensor:
    """Entropy of a diagonal Gaussian: sum over actions of 0.5 * log(2 pi e) + log_std.

    Args:
        log_std: ``[R, act_dim]`` (or ``[..., act_dim]``).

    Returns:
        ``[R]`` (or ``[...]``), in nats.
    """
    return (log_std.detach() + 0.5 * math.log(2 * math.pi * math.e)).sum(dim=-1)


def upgd_plasticity(loss_before: Tensor, loss_after: Tensor, eps: float = 1e-8) -> Tensor:
    """UPGD's plasticity p(Z) = max(1 - L(W', Z) / max(L(W, Z), eps), 0).

    Args:
        loss_before: L(W, Z) per run, ``[R]``, the minibatch loss before the step.
        loss_after: L(W', Z) per run, ``[R]``, the same minibatch's loss after the step.
        eps: floor of the denominator, > 0.

    Returns:
        ``[R]``; for non-negative losses in [0, 1]: 1 when the step removed the whole loss, 0 when
        it did not lower it. (A PPO surrogate can be negative; then the value is not bounded.)
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if loss_before.shape != loss_after.shape:
        raise ValueError(f"loss shapes differ: {tuple(loss_before.shape)} vs {tuple(loss_after.shape)}")
    return (1 - loss_after.detach() / loss_before.detach().clamp_min(eps)).clamp_min(0)
