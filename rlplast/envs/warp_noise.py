"""Reset noise drawn on the device for the generic warp backend, through the numpy generator
methods the tasks call (``rng.uniform``, ``rng.standard_normal``; rlplast.envs.tasks.base).

Each step, :func:`draw_noise` fills ``uniform [N, K]`` with U(0, 1) and ``normal [N, K]`` with
N(0, 1) from a fresh stream per world keyed by (env key, episode count), so a world's draws
depend only on its run seed, its env index and how many episodes it has started, not on other
worlds or launches. :class:`DeviceNoise` hands them to a task's ``reset_state`` as a batch: its
k-th draw of ``size`` values takes the next ``size`` columns (of ``uniform`` or of ``normal``),
so every call returns ``[N, size]`` and ``qpos0 [nq] + rng.uniform(...)`` is ``[N, nq]``.
"""

from __future__ import annotations

import warp as wp
from torch import Tensor


@wp.kernel
def draw_noise(key: wp.array[int], count: wp.array[int], uniform: wp.array2d[float], normal: wp.array2d[float]):
    """uniform, normal ``[N, K]``: world n's draws for its next episode."""
    n = wp.tid()
    state = wp.rand_init(key[n], count[n])
    for k in range(uniform.shape[1]):
        uniform[n, k] = wp.randf(state)
        normal[n, k] = wp.randn(state)


class DeviceNoise:
    """numpy's ``Generator`` methods over the draws of :func:`draw_noise` (torch views ``[N, K]``).

    Raises:
        ValueError: a task draws more than K values per reset.
    """

    def __init__(self, uniform: Tensor, normal: Tensor):
        self.uniform01, self.normal01 = uniform, normal
        self._next = 0

    def _columns(self, size: int) -> slice:
        start, self._next = self._next, self._next + int(size)
        if self._next > self.uniform01.shape[1]:
            raise ValueError(f"reset_state draws more than the {self.uniform01.shape[1]} values per world drawn")
        return slice(start, self._next)

    def uniform(self, low: float = 0.0, high: float = 1.0, size: int = 1) -> Tensor:
        """``[N, size]`` U(low, high)."""
        return low + (high - low) * self.uniform01[:, self._columns(size)]

    def standard_normal(self, size: int = 1) -> Tensor:
        """``[N, size]`` N(0, 1)."""
        return self.normal01[:, self._columns(size)]
