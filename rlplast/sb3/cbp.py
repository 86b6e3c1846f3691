"""Continual backprop (CBP) for stable-baselines3 policies, reusing rlplast's CBP plug-in.

CBP must run after every optimizer step (every minibatch), and SB3's callbacks fire per env step
and per rollout only. :class:`PolicyCBP` therefore registers a post-step hook on the policy's
optimizer (``torch.optim.Optimizer.register_step_post_hook``) and reads the minibatch's hidden
features from forward hooks (:class:`rlplast.sb3.layers.NetworkView`); it runs
:class:`rlplast.agents.plasticity.cbp.CBP` unchanged on views of the policy's ``nn.Linear``
layers with a run dimension of 1. The hidden layers are those of ``mlp_extractor.policy_net``
(outgoing layer of the last one: ``action_net``) and ``mlp_extractor.value_net`` (``value_net``).

Adam state of reset weights is zeroed in SB3's ``torch.optim.Adam`` (``reset_optimizer_state``,
default on); its bias correction stays the tensor's (see rlplast.sb3.optim). New incoming weights
are drawn from U(+-init_gain * sqrt(3 / fan_in)) (LeCun uniform), whatever init the policy had.

Use it as a callback::

    from stable_baselines3 import PPO
    from rlplast.sb3 import CBPCallback

    model = PPO("MlpPolicy", "rlplast/SlipperyAnt-v0")
    model.learn(1_000_000, callback=CBPCallback(replacement_rate=1e-4, maturity_threshold=10_000))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback
from torch import Tensor, nn

from rlplast.agents.plasticity.base import StepContext
from rlplast.agents.plasticity.cbp import CBP, CBPConfig
from rlplast.sb3.layers import NetworkView, policy_networks
from rlplast.sb3.optim import TorchOptimizerResets


class PolicyCBP:
    """CBP attached to an SB3 ``ActorCriticPolicy``: runs after every step of its optimizer.

    Args:
        policy: the policy (``model.policy``); its ``optimizer`` is hooked.
        cfg: CBP settings (defaults: PROTOCOL.md section 4).
        seed: seeds the draws of new incoming weights.
        networks: views of the policy to use (e.g. shared with a metrics tracker); built (with
            their feature hooks) if None.
        apply_to: which networks get CBP, ``actor`` and/or ``critic``.
    """

    def __init__(
        self,
        policy: nn.Module,
        cfg: CBPConfig | None = None,
        seed: int = 0,
        networks: Mapping[str, NetworkView] | None = None,
        apply_to: tuple[str, ...] = ("actor", "critic"),
    ):
        self.policy = policy
        self.cfg = cfg or CBPConfig()
        self._own_views = networks is None
        self.networks = dict(policy_networks(policy) if networks is None else networks)
        unknown = [name for name in apply_to if name not in self.networks]
        if unknown or not apply_to:
            raise ValueError(f"apply_to must name some of {sorted(self.networks)}, got {list(apply_to)}")
        layers = [layer for name in apply_to for layer in self.networks[name].hidden_layers()]
        self.plugin = CBP(self.cfg, layers, TorchOptimizerResets(lambda: self.policy.optimizer), [seed])
        self.steps = 0
        self._hook = policy.optimizer.register_step_post_hook(self._after_step)

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.steps += 1
        self.plugin.after_step(StepContext(step=self.steps))

    def replaced(self) -> dict[str, int]:
        """Units replaced so far: per hidden layer (``actor.0``, ...) and in total (``all``)."""
        stats = self.plugin.stats()
        out = {name.removeprefix("cbp/replaced/"): int(v[0]) for name, v in stats.items() if name.count("/") == 2}
        out["all"] = int(stats["cbp/replaced"][0])
        return out

    def stats(self) -> dict[str, Tensor]:
        """The plug-in's per-run stats ``{name: [1]}`` (``cbp/replaced``, ...), as the runner logs them."""
        return self.plugin.stats()

    def detach(self) -> None:
        """Stop running CBP (remove the optimizer hook and, if this object made them, the feature hooks)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._own_views:
            for view in self.networks.values():
                view.remove_hooks()

    def state_dict(self) -> dict[str, Any]:
        """Unit ages, utilities, counts and generator states (``torch.load(weights_only=True)`` safe)."""
        return {"steps": self.steps, "cbp": self.plugin.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (same policy shape and settings)."""
        self.steps = int(state["steps"])
        self.plugin.load_state_dict(state["cbp"])


class CBPCallback(BaseCallback):
    """Adds CBP to the model's policy for the duration of each ``learn()`` call.

    The CBP state (unit ages, utilities) carries over from one ``learn()`` call to the next.
    ``callback.replaced()`` tells the units replaced so far; ``cbp/replaced`` is recorded in the
    model's logger at every rollout end.

    Args:
        cfg: CBP settings; keyword ``fields`` override them (e.g. ``replacement_rate=1e-4``).
        seed: seeds the new units' weights.
        apply_to: networks that get CBP (``actor``, ``critic``).
        verbose: SB3's verbosity.
    """

    def __init__(
        self,
        cfg: CBPConfig | None = None,
        seed: int = 0,
        apply_to: tuple[str, ...] = ("actor", "critic"),
        verbose: int = 0,
        **fields: Any,
    ):
        super().__init__(verbose)
        base = (cfg or CBPConfig()).model_dump()
        self.cfg = CBPConfig.model_validate({**base, **fields})
        self.seed = seed
        self.apply_to = tuple(apply_to)
        self.cbp: PolicyCBP | None = None
        self._saved: dict[str, Any] | None = None

    def _on_training_start(self) -> None:
        self.cbp = PolicyCBP(self.model.policy, self.cfg, self.seed, apply_to=self.apply_to)
        if self._saved is not None:
            self.cbp.load_state_dict(self._saved)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.cbp is not None:
            self.logger.record("cbp/replaced", self.cbp.replaced()["all"])

    def _on_training_end(self) -> None:
        if self.cbp is not None:
            self._saved = self.cbp.state_dict()
            self.cbp.detach()

    def replaced(self) -> dict[str, int]:
        """Units replaced so far (see :meth:`PolicyCBP.replaced`); empty before training."""
        return self.cbp.replaced() if self.cbp is not None else {}
