"""A tiny trained Ant run for the tests of what reads trained policies (seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlplast import runner
from rlplast.config import load_config

UPDATE = 32  # env steps per run per update
MAX_EPISODE_STEPS = 20
OVERRIDES = (
    "agent.hidden=[16, 16]",
    f"agent.steps_per_update={UPDATE}",
    "agent.minibatches=2",
    "agent.epochs=2",
    "metrics.interval=32",
    "metrics.rank_interval=64",
    "metrics.window=40",
    "run.checkpoint_every=32",
    f"env.max_episode_steps={MAX_EPISODE_STEPS}",
    "env.friction.schedule.every=48",  # the friction changes within the run
)


def train_tiny(method_dir: Path, seeds=(0, 1), steps: int = 3 * UPDATE, extra=()) -> None:
    """Train ``ppo`` on ``slippery_ant`` with :data:`OVERRIDES` into ``method_dir``."""
    cfg = load_config("slippery_ant", "ppo", [*OVERRIDES, *extra])
    runner.train_group(cfg, list(seeds), method_dir, steps=steps, backend="cpu")


def checkpoint_mean(method_dir: Path, seeds, seed: int, obs: np.ndarray) -> np.ndarray:
    """The actor's mean action for ``obs [B, obs_dim]``, computed in float64 numpy from the group
    checkpoint's weights (independently of rlplast's networks)."""
    state = torch.load(runner.checkpoint_path(method_dir, seeds), weights_only=True)["agent"]["actor"]
    r = list(seeds).index(seed)
    layers = sorted({k.split(".")[2] for k in state if k.startswith("mlp.layers.")}, key=int)
    x = np.asarray(obs, dtype=np.float32).astype(np.float64)
    for i, name in enumerate(layers):
        w = state[f"mlp.layers.{name}.weight"][r].double().numpy()
        b = state[f"mlp.layers.{name}.bias"][r].double().numpy()
        x = x @ w.T + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x
