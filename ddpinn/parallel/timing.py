"""Where a training step spends its time: compute, exchange wait, allreduce.

Each category is timed *exclusively*: a measurement nested inside another (the exchange wait
inside the loss, the communicator's sum inside a backend's allreduce) pauses the outer one,
so the categories add up to the time measured and nothing is counted twice.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

CATEGORIES = ("compute", "exchange", "allreduce")


class StepTimes:
    """Seconds per category since the last :meth:`reset` (one rank, wall clock).

    On a GPU the kernels run asynchronously: their time lands in whichever measured call
    waits for them first (a device-to-host copy), not necessarily in ``compute``.
    """

    def __init__(self):
        self._stack = []  # [category, start of its current uninterrupted stretch]
        self.reset()

    def reset(self) -> None:
        self.seconds = dict.fromkeys(CATEGORIES, 0.0)

    @contextmanager
    def measure(self, category: str):
        """Add the time spent inside the block, minus nested measurements, to ``category``."""
        now = time.perf_counter()
        if self._stack:
            outer = self._stack[-1]
            self.seconds[outer[0]] += now - outer[1]
        self._stack.append([category, now])
        try:
            yield
        finally:
            now = time.perf_counter()
            name, start = self._stack.pop()
            self.seconds[name] += now - start
            if self._stack:
                self._stack[-1][1] = now
