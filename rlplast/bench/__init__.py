"""Throughput benchmarks, each measured side by side in one process."""

from __future__ import annotations

import time


class Timer:
    """Wall-clock and process CPU seconds (all threads) of a ``with`` block.

    After the block, ``wall`` and ``cpu`` hold the elapsed seconds. CPU time of the whole process
    is what load from other processes on a shared machine blurs least.
    """

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
