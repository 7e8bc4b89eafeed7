"""Deadlines for the supervisor loop: the loop sleeps exactly until the nearest one.

Timers are cancelled lazily (a flag), so cancelling is O(1) and the heap never needs a search.
Pure: the caller passes ``now``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class Timer:
    deadline: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    label: str = field(default="", compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._seq = itertools.count()

    def at(self, deadline: float, callback: Callable[[], None], label: str = "") -> Timer:
        timer = Timer(deadline, next(self._seq), callback, label)
        heapq.heappush(self._heap, timer)
        return timer

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
        return heap[0].deadline if heap else None

    def pop_due(self, now: float) -> list[Timer]:
        """Remove and return the live timers due at ``now``, earliest first."""
        due: list[Timer] = []
        heap = self._heap
        while heap and (heap[0].cancelled or heap[0].deadline <= now):
            timer = heapq.heappop(heap)
            if not timer.cancelled:
                due.append(timer)
        return due

    def __len__(self) -> int:
        return sum(not t.cancelled for t in self._heap)
