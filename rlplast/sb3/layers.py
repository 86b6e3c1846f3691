"""Views of a stable-baselines3 policy's MLPs in the shape rlplast's plug-ins and metrics read.

rlplast's CBP and its plasticity tracker work on networks whose weights have a leading run
dimension (``weight [R, out, in]``) and whose last forward pass left the hidden features in
``network.features`` (``[R, B, width]`` per hidden layer). An SB3 ``ActorCriticPolicy`` holds plain
``nn.Linear`` layers instead. This module shows them as one run (R = 1), without copying:

* :class:`LinearView`: an ``nn.Linear`` as ``weight [1, out, in]`` and ``bias [1, out]``, views of
  the Linear's own storage, so in-place writes (CBP's reinitialisation) change the Linear itself.
* :class:`NetworkView`: an ``nn.Sequential`` of Linear / activation modules plus the layer after
  it (``action_net`` or ``value_net``), with forward hooks on the activations that record each
  hidden layer's output ``[1, B, width]`` (detached) in ``features`` at every forward pass.

:func:`policy_networks` builds both views of an SB3 policy: ``actor`` (``mlp_extractor.policy_net``
then ``action_net``) and ``critic`` (``mlp_extractor.value_net`` then ``value_net``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from rlplast.agents.networks import HiddenLayer

ACTIVATION_NAMES = {nn.ReLU: "relu", nn.Tanh: "tanh"}


class LinearView:
    """An ``nn.Linear`` with a leading run dimension of 1 (attributes as ``BatchedLinear``'s).

    Args:
        linear: the layer viewed.
    """

    def __init__(self, linear: nn.Linear):
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"LinearView needs an nn.Linear, got {type(linear).__name__}")
        if linear.bias is None:
            raise ValueError("LinearView needs a Linear with a bias (CBP moves a removed unit's mean into it)")
        self.linear = linear
        self.in_features = linear.in_features
        self.out_features = linear.out_features

    @property
    def weight(self) -> Tensor:
        """``[1, out, in]``: the Linear's weight (detached view: writes go to the parameter)."""
        return self.linear.weight.detach().unsqueeze(0)

    @property
    def bias(self) -> Tensor:
        """``[1, out]``: the Linear's bias (detached view)."""
        return self.linear.bias.detach().unsqueeze(0)

    def init_bound(self) -> float:
        """Half-width of the LeCun uniform init, sqrt(3 / fan_in): what CBP draws new units from."""
        return math.sqrt(3.0 / self.in_features)


def _activation_name(module: nn.Module) -> str:
    return ACTIVATION_NAMES.get(type(module), type(module).__name__.lower())


class NetworkView:
    """A hidden MLP and its output layer, seen as rlplast's ``MLP`` (one run).

    Attributes:
        name: ``actor`` or ``critic`` (names the hidden layers ``<name>.<i>``).
        num_runs: 1.
        layers: a :class:`LinearView` per Linear, the output layer last.
        features: after each forward pass, the hidden layers' outputs, ``[1, B, width]`` each.

    Args:
        name: the network's name.
        hidden: an ``nn.Sequential`` of ``Linear`` modules, each followed by an activation module.
        output: the Linear that reads the last hidden layer.
    """

    num_runs = 1

    def __init__(self, name: str, hidden: nn.Sequential, output: nn.Linear):
        modules = list(hidden)
        linears = [i for i, m in enumerate(modules) if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"{name}: the hidden network has no Linear layer")
        taps, activations = [], []
        for i in linears:
            after = modules[i + 1] if i + 1 < len(modules) else None
            if after is None or isinstance(after, nn.Linear):
                raise ValueError(f"{name}: Linear {i} of the hidden network has no activation module after it")
            taps.append(after)
            activations.append(_activation_name(after))
        self.name = name
        self.layers = [LinearView(modules[i]) for i in linears] + [LinearView(output)]
        self.activation = activations[0]
        self._activations = activations
        self.features: list[Tensor] = []
        self._pending: list[Tensor] = []
        self._handles = [tap.register_forward_hook(self._hook(k, len(taps))) for k, tap in enumerate(taps)]

    def _hook(self, index: int, count: int):
        def record(module: nn.Module, args: tuple, output: Tensor) -> None:
            if index == 0:
                self._pending = []
            self._pending.append(output.detach().unsqueeze(0))
            if index == count - 1:
                # a new list per forward pass: the tracker tells passes apart by identity
                self.features = self._pending

        return record

    def hidden_layers(self) -> list[HiddenLayer]:
        """The hidden layers as plug-ins see them (incoming Linear, activation, outgoing Linear)."""
        return [
            HiddenLayer(f"{self.name}.{i}", self, i, self.layers[i], self.layers[i + 1], self._activations[i])
            for i in range(len(self.layers) - 1)
        ]

    def remove_hooks(self) -> None:
        """Stop recording features (the views stay usable)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def policy_networks(policy: nn.Module) -> dict[str, NetworkView]:
    """``{"actor": ..., "critic": ...}`` views of an SB3 ``ActorCriticPolicy`` with an MLP extractor.

    Raises:
        TypeError: the policy lacks ``mlp_extractor.policy_net`` / ``value_net`` Sequentials or
            its ``action_net`` / ``value_net`` Linears.
    """
    extractor = getattr(policy, "mlp_extractor", None)
    parts = {
        "mlp_extractor.policy_net": getattr(extractor, "policy_net", None),
        "mlp_extractor.value_net": getattr(extractor, "value_net", None),
        "action_net": getattr(policy, "action_net", None),
        "value_net": getattr(policy, "value_net", None),
    }
    wanted = {"mlp_extractor.policy_net": nn.Sequential, "mlp_extractor.value_net": nn.Sequential}
    bad = [k for k, v in parts.items() if not isinstance(v, wanted.get(k, nn.Linear))]
    if bad:
        raise TypeError(
            f"expected an SB3 ActorCriticPolicy with an MLP extractor (Sequential policy_net / value_net, "
            f"Linear action_net / value_net); {type(policy).__name__} has unusable {', '.join(bad)}"
        )
    return {
        "actor": NetworkView("actor", parts["mlp_extractor.policy_net"], parts["action_net"]),
        "critic": NetworkView("critic", parts["mlp_extractor.value_net"], parts["value_net"]),
    }


def linear_modules(networks: Sequence[NetworkView]) -> list[nn.Linear]:
    """Every Linear of the views, in order."""
    return [view.linear for net in networks for view in net.layers]
