"""Deadlines for the supervisor loop: the loop sleeps exactly until the nearest one.

A timer is plain data, a :class:`TimerKey` (what is due: a kind and whom it concerns) and a
deadline. The policy asks for timers with ``ScheduleTimer``/``CancelTimer`` actions; the runtime
keeps them in :class:`Deadlines` and feeds ``TimerDue(key)`` back when one falls due. A key is
scheduled at most once: scheduling it again moves its deadline. Cancelling is O(1) (the heap
entry goes stale and is skipped), so nothing ever searches the heap. Pure: callers pass ``now``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum


class TimerKind(StrEnum):
    RESTART = "restart"              # a backing-off slot starts again         (service, slot)
    START_TIMEOUT = "start_timeout"  # a worker not ready in time is killed    (worker)
    WATCHDOG = "watchdog"            # look at a worker's last heartbeat       (worker)
    LIFETIME = "lifetime"            # max_lifetime: recycle the worker        (worker)
    TERM = "term"                    # a stopping worker gets SIGTERM          (worker)
    KILL = "kill"                    # ... and SIGKILL, kill_timeout later     (worker)
    HALF_OPEN = "half_open"          # an open breaker tries one worker        (service)
    TRIAL = "trial"                  # the half-open trial held: close it      (service)
    RSS_CHECK = "rss_check"          # measure the service's workers' RSS      (service)
    STANDBY = "standby"              # a standby's refill or boot-death retry    (service)
    FILL = "fill"                    # the next batch of fresh slots            (-)
    PROBE = "probe"                  # run the worker's health probe            (worker)
    DUMP = "dump"                    # its stack dump had time: read it, SIGKILL (worker)
    USER = "user"                    # call_later: runtime-side callbacks      (number)


class TimerKinds:
    """The kinds of timer armed for one worker (a few at most), in a tuple: an empty set is
    216 bytes, and the supervisor holds one of these per worker."""

    __slots__ = ("_kinds",)

    def __init__(self) -> None:
        self._kinds: tuple[TimerKind, ...] = ()

    def add(self, kind: TimerKind) -> None:
        if kind not in self._kinds:
            self._kinds += (kind,)

    def discard(self, kind: TimerKind) -> None:
        if kind in self._kinds:
            self._kinds = tuple(k for k in self._kinds if k is not kind)

    def clear(self) -> None:
        self._kinds = ()

    def __contains__(self, kind: object) -> bool:
        return kind in self._kinds

    def __iter__(self) -> Iterator[TimerKind]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)


@dataclass(frozen=True, order=True)
class TimerKey:
    kind: TimerKind
    service: str = ""
    slot: int = -1
    worker: int = -1


class Deadlines:
    """Keyed deadlines in a heap; stale entries (moved or cancelled keys) are skipped lazily."""

    def __init__(self) -> None:
        self._due: dict[TimerKey, float] = {}
        self._heap: list[tuple[float, int, TimerKey]] = []
        self._seq = itertools.count()

    def schedule(self, key: TimerKey, at: float) -> None:
        self._due[key] = at
        heapq.heappush(self._heap, (at, next(self._seq), key))

    def cancel(self, key: TimerKey) -> None:
        self._due.pop(key, None)

    def deadline(self, key: TimerKey) -> float | None:
        return self._due.get(key)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[TimerKey]:
        """Remove and return the keys due at ``now``, earliest first."""
        due: list[TimerKey] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, key = heapq.heappop(heap)
            if self._due.get(key) == at:
                del self._due[key]
                due.append(key)
        return due

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due
