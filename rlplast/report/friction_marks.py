"""Where the figures draw friction-change lines: per seed, at the step each run's friction changed.

A run logs its friction at the env step a change took effect (an episode end under the default
``apply: episode_end``), so seeds change at slightly different steps. Lines closer together than
the figure can show are one line; when every seed's lines coincide at that resolution, one set of
lines stands for all seeds. A schedule that moves all the time (linear, sine) gets no lines: the
friction strip shows it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# Changes closer than total_steps / LINE_RESOLUTION are one line (about a pixel of a 9-inch figure).
LINE_RESOLUTION = 500
# More change lines than this per seed is a schedule that moves continuously: no lines.
MAX_LINES_PER_SEED = 40


def merge_close(steps: np.ndarray, width: float) -> np.ndarray:
    """The steps (sorted) without those less than ``width`` after the last one kept."""
    kept: list[int] = []
    for step in np.sort(np.asarray(steps, dtype=np.int64)):
        if not kept or step - kept[-1] >= width:
            kept.append(int(step))
    return np.asarray(kept, dtype=np.int64)


def change_lines(changes: Mapping[int, np.ndarray], total_steps: int) -> dict[int | None, np.ndarray]:
    """The change lines to draw, from each seed's change steps.

    Args:
        changes: seed -> the env steps at which that run's friction changed.
        total_steps: the x axis' extent (sets the resolution).

    Returns:
        ``{None: steps}`` when every seed has the same lines to within the resolution (one set
        for all seeds), else ``{seed: steps}`` for the seeds with changes; ``{}`` when no seed has
        any, or some seed has more than :data:`MAX_LINES_PER_SEED`.
    """
    width = max(total_steps / LINE_RESOLUTION, 1.0)
    merged = {seed: merge_close(steps, width) for seed, steps in changes.items()}
    if not merged or max(len(v) for v in merged.values()) > MAX_LINES_PER_SEED:
        return {}
    lines = {seed: v for seed, v in merged.items() if len(v)}
    if not lines:
        return {}
    first = next(iter(merged.values()))
    same = all(len(v) == len(first) and np.all(np.abs(v - first) <= width) for v in merged.values())
    return {None: first} if same else lines
