"""Plasticity methods as plug-ins: optimizers (Adam, UPGD) and hooks (CBP, ReDo, ...)."""

from rlplast.agents.plasticity.base import Plugin, StepContext
from rlplast.agents.plasticity.factory import OptimizerConfig, PluginConfig, build_optimizer, build_plugins

__all__ = ["OptimizerConfig", "Plugin", "PluginConfig", "StepContext", "build_optimizer", "build_plugins"]
