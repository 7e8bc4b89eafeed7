"""A cross-process event that a SIGKILLed waiter cannot wedge and a wall-clock step cannot freeze.

Why not ``multiprocess.Event``: it is a Condition over a Lock. A waiter killed while it sleeps in
``Condition.wait`` leaves ``_sleeping_count`` raised, and the next ``set()`` blocks forever in
``notify_all`` waiting for that dead sleeper to wake; a waiter killed inside ``with self._cond``
leaves the lock held. A supervisor that SIGKILLs workers would then hang on its own shutdown.

Why no shared semaphore either: multiprocess's timed semaphore waits compute their deadline
from ``gettimeofday`` and sleep in ``sem_timedwait`` (CLOCK_REALTIME), so a step of the wall
clock (NTP, a VM resume) stretched ``ctx.shutdown.wait(0.1)`` by the size of the step and the
watchdog then killed the worker.

So the state is one shared byte — the cross-process truth, read by ``is_set()`` — and sleeping
is process-local: a ``threading.Event`` per process, whose timed waits follow CLOCK_MONOTONIC
(CPython 3.11+ locks use ``sem_clockwait(CLOCK_MONOTONIC)`` where the C library has it, as glibc
2.30+ does). ``set()`` writes the byte, then sets the local event of the process it runs in. A
``set()`` made in another process reaches a sleeper here in one of two ways:

- relayed: the process promised (``relay_here()``) to turn remote sets into a local ``set()``.
  A worker does this for its own token: the supervisor sends CANCEL with every cancel of a
  worker's node, and the worker's bridge thread calls ``token.cancel()``, which sets the flag
  locally. Waits on a relayed event sleep until set or timed out, nothing in between.
- not relayed (a token handed to some other process): waits re-read the byte every
  ``UNRELAYED_POLL`` seconds, so such a set is seen that late at most.

Nothing is ever held across a call and no process waits on another, so a process can die
anywhere. The byte is written before the local event is read and a waiter makes its local event
before reading the byte, so a set and a wait racing in one process never miss each other.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from typing import Any

import multiprocess

from janus_mp.runtime.arena import Arena

#: How stale a waiter's view may get of a set() made in a process that does not relay to it.
UNRELAYED_POLL = 0.05

_local_lock = threading.Lock()  # guards the creation of local events (one per event, process)


def _renew_lock_after_fork() -> None:
    global _local_lock
    _local_lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_renew_lock_after_fork)


class _Released:
    """What a released event reads from: set, and shared with nobody."""

    value = 1


class SharedEvent:
    __slots__ = ("_state", "_arena", "_local", "_local_pid", "_relayed_pid")
    _local: threading.Event | None  # this process's sleepers wait here...
    _local_pid: int  # ...if this is our pid (a forked copy must make its own)
    _relayed_pid: int  # the process that promised to relay remote sets, see relay_here()

    def __init__(self, context: Any = None, *, arena: Arena | None = None) -> None:
        """The byte comes from ``arena`` (the supervisor's, see :mod:`runtime.arena`) or is a
        shared value of its own."""
        self._arena = arena
        if arena is not None:
            self._state: Any = arena.take(0)
        else:
            ctx = context if context is not None else multiprocess.get_context()
            self._state = ctx.RawValue(ctypes.c_uint8, 0)
        self._forget_local()

    def release(self) -> None:
        """Nothing will set or read this event across processes any more (its node was
        detached): its byte goes back to the arena, and it reads as set from now on."""
        arena, self._arena = self._arena, None
        if arena is not None:
            state, self._state = self._state, _Released()
            arena.give_back(state)

    def set(self) -> None:
        self._state.value = 1
        local = self._local_event(create=False)
        if local is not None:
            local.set()

    def is_set(self) -> bool:
        return bool(self._state.value)

    def wait(self, timeout: float | None = None) -> bool:
        local = self._local_event(create=True)
        assert local is not None
        if self._state.value:
            return True
        if self._relayed_pid == os.getpid():
            local.wait(timeout)
            return bool(self._state.value)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._state.value:
            remaining = UNRELAYED_POLL if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                break
            local.wait(min(remaining, UNRELAYED_POLL))
        return bool(self._state.value)

    def relay_here(self) -> None:
        """Promise that, in this process, every ``set()`` made elsewhere is followed by a
        ``set()`` made here (the worker's bridge does it on CANCEL): waits then sleep on the
        local event alone."""
        self._local_event(create=True)
        self._relayed_pid = os.getpid()

    def _local_event(self, *, create: bool) -> threading.Event | None:
        pid = os.getpid()
        if self._local_pid == pid:
            return self._local
        if not create:
            return None
        with _local_lock:
            if self._local_pid != pid:  # first use in this process (or copied by a fork)
                self._local = threading.Event()
                self._local_pid = pid
            return self._local

    def _forget_local(self) -> None:
        self._local = None
        self._local_pid = -1
        self._relayed_pid = -1

    def __getstate__(self) -> Any:
        return self._state

    def __setstate__(self, state: Any) -> None:
        self._state = state
        self._arena = None  # the arena is the supervisor's to hand out
        self._forget_local()


class SharedEventFactory:
    """Picklable factory of :class:`SharedEvent` for one start method (tokens carry it along).
    In the process that made it, bytes come from its arena; a copy in another process (a
    worker making nodes of its own) makes shared values of its own."""

    __slots__ = ("start_method", "_arena", "_owner")

    def __init__(self, start_method: str | None = None) -> None:
        self.start_method = start_method
        self._arena: Arena | None = None
        self._owner = os.getpid()

    def __call__(self) -> SharedEvent:
        context = multiprocess.get_context(self.start_method)
        if os.getpid() != self._owner:
            return SharedEvent(context)
        if self._arena is None:
            self._arena = Arena("B", context)
        return SharedEvent(arena=self._arena)

    def __getstate__(self) -> str | None:
        return self.start_method

    def __setstate__(self, state: str | None) -> None:
        self.start_method = state
        self._arena = None
        self._owner = -1  # never the owner: see the class docstring
