"""A cross-process event that a SIGKILLed waiter cannot wedge.

Why not ``multiprocess.Event``: it is a Condition over a Lock. A waiter killed while it sleeps in
``Condition.wait`` leaves ``_sleeping_count`` raised, and the next ``set()`` blocks forever in
``notify_all`` waiting for that dead sleeper to wake; a waiter killed inside ``with self._cond``
leaves the lock held. A supervisor that SIGKILLs workers would then hang on its own shutdown.

Here the state is one shared byte and the wake-up is a semaphore used as a doorbell: ``set()``
writes the byte and posts the semaphore (``sem_post`` never blocks); a waiter that is woken posts
it again for the next waiter. No lock is ever held across a call, so a process can die anywhere.
"""

from __future__ import annotations

import ctypes
from typing import Any

import multiprocess


class SharedEvent:
    __slots__ = ("_state", "_doorbell")

    def __init__(self, context: Any = None) -> None:
        ctx = context if context is not None else multiprocess.get_context()
        self._state = ctx.RawValue(ctypes.c_uint8, 0)
        self._doorbell = ctx.Semaphore(0)

    def set(self) -> None:
        if not self._state.value:
            self._state.value = 1
            self._doorbell.release()

    def is_set(self) -> bool:
        return bool(self._state.value)

    def wait(self, timeout: float | None = None) -> bool:
        if self._state.value:
            return True
        if self._doorbell.acquire(True, timeout):
            self._doorbell.release()  # pass the ring on to the next waiter
        return bool(self._state.value)

    def __getstate__(self) -> tuple[Any, Any]:
        return (self._state, self._doorbell)

    def __setstate__(self, state: tuple[Any, Any]) -> None:
        self._state, self._doorbell = state


class SharedEventFactory:
    """Picklable factory of :class:`SharedEvent` for one start method (tokens carry it along)."""

    __slots__ = ("start_method",)

    def __init__(self, start_method: str | None = None) -> None:
        self.start_method = start_method

    def __call__(self) -> SharedEvent:
        return SharedEvent(multiprocess.get_context(self.start_method))

    def __getstate__(self) -> str | None:
        return self.start_method

    def __setstate__(self, state: str | None) -> None:
        self.start_method = state
