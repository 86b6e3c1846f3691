"""Random streams derived from a run's seed, shared by every backend.

Env ``e`` of a run seeded ``s`` draws its reset noise from ``SeedSequence(s, spawn_key=(e,))``;
env 0 uses ``SeedSequence(s)``, which is exactly what Gymnasium's ``env.reset(seed=s)`` uses, so a
one-env run of a VecEnv and a Gymnasium env reset with the same seed start identically. The
friction schedule uses its own tagged stream (see ``rlplast.envs.schedules.SCHEDULE_STREAM``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_seeds(seeds: Sequence[int], num_runs: int) -> list[int]:
    """Validate one non-negative integer seed per run and return them as python ints."""
    seeds = list(seeds)
    if len(seeds) != num_runs:
        raise ValueError(f"reset needs one seed per run: expected {num_runs} seeds, got {len(seeds)}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0:
            raise ValueError(f"seeds must be non-negative integers, got {s!r}")
    return [int(s) for s in seeds]


def env_rng(seed: int, env_index: int) -> np.random.Generator:
    """The reset-noise generator of env ``env_index`` of the run seeded ``seed``."""
    spawn_key = (int(env_index),) if env_index else ()
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=spawn_key)))
