"""Actor and critic MLPs whose every weight has a leading run dimension.

A run group trains R independent runs at once: a layer holds ``weight [R, out, in]`` and
``bias [R, out]`` and applies all R runs in one batched matmul. R = 1 is an ordinary network.

Plasticity plug-ins (CBP, ReDo, ...) see a network as a list of :class:`HiddenLayer` records
(incoming Linear, activation, outgoing Linear) and read the features that the most recent forward
pass produced, so they work on the actor, the critic and any MLP built from :class:`MLP`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "identity": lambda x: x}


def run_generators(seeds: Sequence[int], salt: int, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per run (on ``device``), seeded from (run seed, salt), so that run r of a
    group draws exactly what it would draw alone."""
    return [torch.Generator(device=device).manual_seed(int(s) * 1_000_003 + salt) for s in seeds]


def lecun_uniform_(weight: Tensor, generators: Sequence[torch.Generator], fan_in: int | None = None) -> None:
    """Fill ``weight [R, out, in]`` in place with U(-sqrt(3/fan_in), sqrt(3/fan_in)), run r from
    generator r; ``fan_in`` defaults to ``in``."""
    bound = math.sqrt(3.0 / (fan_in or weight.shape[-1]))
    for r, gen in enumerate(generators):
        sample = torch.rand(weight.shape[1:], generator=gen, dtype=weight.dtype) * 2 - 1
        weight.data[r].copy_(sample * bound)


class BatchedLinear(nn.Module):
    """R independent Linear layers applied in one batched matmul.

    Attributes:
        weight: ``[R, out_features, in_features]``.
        bias: ``[R, out_features]``.
        init_fan_in: the fan-in of the LeCun init's bound (``in_features`` unless set otherwise,
            e.g. to reproduce a network that saw a wider observation with constant-zero entries).
    """

    def __init__(self, num_runs: int, in_features: int, out_features: int, init_fan_in: int | None = None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.init_fan_in = init_fan_in or in_features
        self.weight = nn.Parameter(torch.zeros(num_runs, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(num_runs, out_features))

    def init_bound(self) -> float:
        """Half-width of the LeCun uniform init: sqrt(3 / init_fan_in)."""
        return math.sqrt(3.0 / self.init_fan_in)

    def forward(self, x: Tensor) -> Tensor:
        """``x [R, B, in] -> [R, B, out]`` (a transposed view; see :meth:`columns`)."""
        return self.columns(x.transpose(1, 2)).transpose(1, 2)

    def columns(self, h: Tensor) -> Tensor:
        """Feature-major: ``h [R, in, B] -> [R, out, B]`` (contiguous), ``W h + b``.

        The layout the update's forward pass uses. Its weight gradient comes out of a batched
        matmul contiguous, as the weight is; batch-major (``x W^T``) autograd hands back the
        gradient of the transposed view, which AccumulateGrad copies into the weight's layout: a
        strided copy costing about a tenth of a PPO minibatch step on a CPU.
        """
        return torch.baddbmm(self.bias.unsqueeze(2), self.weight, h)


@dataclass(frozen=True)
class HiddenLayer:
    """One hidden layer as plug-ins see it: units are the outputs of ``incoming``, fed through
    ``activation`` and read by ``outgoing``. ``index`` locates its features in ``network.features``."""

    name: str
    network: MLP
    index: int
    incoming: BatchedLinear
    outgoing: BatchedLinear
    activation: str

    @property
    def width(self) -> int:
        return self.incoming.out_features

    def features(self) -> Tensor | None:
        """Post-activation output of the most recent forward pass, ``[R, B, width]`` (detached)."""
        feats = self.network.features
        return feats[self.index] if feats else None


class MLP(nn.Module):
    """Batched MLP ``in -> hidden... -> out`` with a leading run dimension.

    ``first_fan_in`` sets the fan-in of the first layer's init bound (default ``in_dim``); the
    other layers use their own fan-in.

    After each forward pass ``self.features`` holds the detached post-activation output of every
    hidden layer, ``[R, B, width]`` each: the acting pass feeds the metrics, the update pass feeds
    the plug-ins. Keeping references costs no copy. (After :meth:`forward` they are transposed
    views of feature-major ``[R, width, B]`` activations: reductions over the batch read
    contiguous memory.)
    """

    def __init__(
        self,
        num_runs: int,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        activation: str = "relu",
        name: str = "mlp",
        first_fan_in: int | None = None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
        self.name = name
        self.num_runs = num_runs
        self.activation = activation
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(BatchedLinear(num_runs, a, b) for a, b in itertools.pairwise(dims))
        self.layers[0].init_fan_in = first_fan_in or in_dim
        self.features: list[Tensor] = []
        self._acting: list[tuple[Tensor, Tensor]] = []

    def reset_parameters(self, generators: Sequence[torch.Generator]) -> None:
        """LeCun uniform weights (per run, from its generator; bound from each layer's
        ``init_fan_in``), zero biases."""
        with torch.no_grad():
            for layer in self.layers:
                lecun_uniform_(layer.weight, generators, layer.init_fan_in)
                layer.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """``x [R, B, in] -> [R, B, out]``; records hidden features in ``self.features``."""
        act = ACTIVATIONS[self.activation]
        feats = []
        # plain iteration and direct forward calls: slicing a ModuleList builds a new module and
        # the module-call machinery costs more than the matmul at acting batch sizes
        # feature-major inside (see BatchedLinear.columns); features are transposed views
        *hidden, last = self.layers
        h = x.transpose(1, 2)
        for layer in hidden:
            h = act(layer.columns(h))
            feats.append(h.detach().transpose(1, 2))
        self._set_features(feats)
        return last.columns(h).transpose(1, 2)

    def _set_features(self, feats: list[Tensor]) -> None:
        # straight into the instance dict: nn.Module.__setattr__ first checks whether the value is
        # a parameter, buffer or submodule, which costs more than a matmul at acting batch sizes
        self.__dict__["features"] = feats

    def freeze_for_acting(self) -> None:
        """Cache detached views of the weights for :meth:`act` (call again whenever the parameter
        tensors are replaced; in-place updates show through the views)."""
        self._acting = [
            (layer.bias.detach().unsqueeze(1), layer.weight.detach().transpose(1, 2)) for layer in self.layers
        ]

    def act(self, x: Tensor) -> Tensor:
        """:meth:`forward` for acting under ``torch.inference_mode()``, ``[R, B, in] -> [R, B, out]``.

        The same arithmetic with the views of :meth:`freeze_for_acting`: at acting batch sizes
        (one obs per env) the per-call overhead of the module machinery, views and detaches
        costs more than the matmuls.
        """
        if not self._acting:
            raise RuntimeError(f"{self.name}: call freeze_for_acting() before act()")
        feats = []
        *hidden, (bias, weight_t) = self._acting
        relu = self.activation == "relu"
        for b, w_t in hidden:
            x = torch.baddbmm(b, x, w_t)
            x = x.relu_() if relu else ACTIVATIONS[self.activation](x)
            feats.append(x)
        self._set_features(feats)
        return torch.baddbmm(bias, x, weight_t)

    def hidden_layers(self) -> list[HiddenLayer]:
        return [
            HiddenLayer(f"{self.name}.{i}", self, i, self.layers[i], self.layers[i + 1], self.activation)
            for i in range(len(self.layers) - 1)
        ]


class Actor(nn.Module):
    """Gaussian policy: mean from an MLP, state-independent ``log_std [R, act_dim]`` (init 0)."""

    def __init__(
        self,
        num_runs: int,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        activation: str,
        init_fan_in: int | None = None,
    ):
        super().__init__()
        self.mlp = MLP(num_runs, obs_dim, hidden, act_dim, activation, name="actor", first_fan_in=init_fan_in)
        self.log_std = nn.Parameter(torch.zeros(num_runs, act_dim))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``obs [R, B, obs_dim] -> (mean [R, B, act_dim], std [R, 1, act_dim])``."""
        return self.mlp(obs), self.log_std.exp().unsqueeze(1)

    def log_prob(self, mean: Tensor, actions: Tensor) -> Tensor:
        """Log density of ``actions [R, B, act_dim]`` under N(mean, exp(log_std)^2): ``[R, B]``."""
        log_std = self.log_std.unsqueeze(1)
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std).sum(-1) - 0.5 * math.log(2 * math.pi) * actions.shape[-1]

    def entropy(self) -> Tensor:
        """Entropy of the (state-independent) Gaussian, ``[R]``."""
        return (self.log_std + 0.5 * (1.0 + math.log(2 * math.pi))).sum(-1)


class Critic(nn.Module):
    """State-value MLP: ``obs [R, B, obs_dim] -> value [R, B]``."""

    def __init__(
        self, num_runs: int, obs_dim: int, hidden: Sequence[int], activation: str, init_fan_in: int | None = None
    ):
        super().__init__()
        self.mlp = MLP(num_runs, obs_dim, hidden, 1, activation, name="critic", first_fan_in=init_fan_in)

    def forward(self, obs: Tensor) -> Tensor:
        return self.mlp(obs).squeeze(-1)
