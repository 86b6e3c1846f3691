"""Helpers of the env tests: a busy config and seeded random actions."""

import numpy as np
import torch

# A short schedule, episodes that end often (narrow healthy range) and a short time limit, so
# that friction changes, terminations and truncations all happen within a few hundred steps.
BUSY = {
    "kwargs": {"healthy_z_range": (0.4, 0.8)},
    "friction": {"schedule": {"kind": "piecewise", "every": 50}},
    "max_episode_steps": 40,
}


def random_actions(num_envs: int, steps: int, seed: int = 0, scale: float = 1.5, dim: int = 8) -> list[torch.Tensor]:
    """``steps`` float32 action batches ``[num_envs, dim]`` drawn U(-scale, scale) (beyond [-1, 1] too)."""
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.uniform(-scale, scale, size=(num_envs, dim)).astype(np.float32)) for _ in range(steps)]
