"""Config models and builders for a learner's optimizer and plug-ins.

``OptimizerConfig`` and ``PluginConfig`` are the ``optimizer:`` and ``plugins:`` sections of a
method file (configs/methods/*.yaml); ``build_optimizer`` and ``build_plugins`` turn them into
objects. Every parameter has a leading run dimension R (see networks.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Literal, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from rlplast.agents.networks import HiddenLayer
from rlplast.agents.plasticity.adam import Adam
from rlplast.agents.plasticity.base import Plugin
from rlplast.agents.plasticity.cbp import CBP, CBPConfig
from rlplast.agents.plasticity.l1 import L1, L1Config
from rlplast.agents.plasticity.noise import NoiseSource
from rlplast.agents.plasticity.redo import ReDo, ReDoConfig
from rlplast.agents.plasticity.shrink_perturb import ShrinkPerturb, ShrinkPerturbConfig
from rlplast.agents.plasticity.upgd import UPGD

UPGD_KINDS = ("upgd", "adaupgd")
UPGD_FIELDS = ("beta_utility", "sigma", "noise", "step_scale", "utility_max")


class OptimizerConfig(BaseModel):
    """The optimizer.

    ``weight_decay`` is coupled L2 (added to the gradient) for ``adam`` and ``sgd`` and decoupled
    (``w <- (1 - lr * weight_decay) w``) for ``upgd`` and ``adaupgd``, as in their papers.
    ``beta_utility``, ``sigma`` and ``noise`` belong to the UPGD kinds only; ``noise`` is the source
    of the perturbation (see rlplast/agents/plasticity/noise.py).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["adam", "sgd", "upgd", "adaupgd"] = "adam"
    lr: float = Field(1e-4, gt=0)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    beta_utility: float = Field(0.999, ge=0, lt=1, description="UPGD: decay of the utility trace")
    sigma: float = Field(1e-3, ge=0, description="UPGD: std of the Gaussian perturbation")
    noise: NoiseSource = Field("table", description="UPGD: shared noise table slices, or exact randn draws")
    step_scale: float = Field(
        1.0, gt=0, description="UPGD: the step is step_scale * lr (the UPGD paper's code steps 2 lr); decay stays lr"
    )
    utility_max: Literal["corrected", "raw"] = Field(
        "corrected",
        description="UPGD: eta = max of the bias-corrected utilities, or of the raw trace (the UPGD paper's code)",
    )

    @model_validator(mode="after")
    def _upgd_fields_need_upgd(self) -> OptimizerConfig:
        # a full dump (defaults included) must validate again, so only changed values count
        fields = type(self).model_fields
        stray = sorted(f for f in UPGD_FIELDS if getattr(self, f) != fields[f].default)
        if stray and self.kind not in UPGD_KINDS:
            raise ValueError(f"optimizer fields {stray} apply to kinds {list(UPGD_KINDS)} only, not {self.kind!r}")
        return self


# one entry of a method file's ``plugins:`` list, told apart by its ``kind``
PluginConfig = Annotated[Union[CBPConfig, ReDoConfig, ShrinkPerturbConfig, L1Config], Field(discriminator="kind")]  # noqa: UP007
PLUGINS: dict[str, type[Plugin]] = {"cbp": CBP, "redo": ReDo, "snp": ShrinkPerturb, "l1": L1}
_PLUGIN_ADAPTER: TypeAdapter = TypeAdapter(PluginConfig)


def build_optimizer(
    cfg: OptimizerConfig, params: Iterable[torch.nn.Parameter], seeds: Sequence[int]
) -> torch.optim.Optimizer:
    """The optimizer over ``params`` (each ``[R, ...]``); ``seeds`` seed any per-run noise.

    ``adam`` is :class:`~rlplast.agents.plasticity.adam.Adam` (torch's arithmetic, plus exact
    bias correction of weights a plug-in resets); ``upgd`` / ``adaupgd`` are
    :class:`~rlplast.agents.plasticity.upgd.UPGD`.
    """
    params = list(params)
    if cfg.kind == "adam":
        return Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.kind == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.kind in UPGD_KINDS:
        return UPGD(
            params,
            seeds,
            lr=cfg.lr,
            beta_utility=cfg.beta_utility,
            sigma=cfg.sigma,
            weight_decay=cfg.weight_decay,
            adaptive=cfg.kind == "adaupgd",
            betas=cfg.betas,
            eps=cfg.eps,
            noise=cfg.noise,
            step_scale=cfg.step_scale,
            utility_max=cfg.utility_max,
        )
    raise ValueError(f"unknown optimizer kind {cfg.kind!r}; known: adam, sgd, upgd, adaupgd")


def build_plugins(
    cfgs: Sequence[object],
    layers: Sequence[HiddenLayer],
    optimizer: torch.optim.Optimizer,
    seeds: Sequence[int],
) -> list[Plugin]:
    """One plug-in per config, in order (configs may be models or plain dicts with a ``kind``)."""
    plugins = []
    for cfg in cfgs:
        model = cfg if isinstance(cfg, BaseModel) else _PLUGIN_ADAPTER.validate_python(cfg)
        if model.kind not in PLUGINS:
            raise ValueError(f"unknown plug-in kind {model.kind!r}; known: {sorted(PLUGINS)}")
        plugins.append(PLUGINS[model.kind](model, layers, optimizer, seeds))
    return plugins
