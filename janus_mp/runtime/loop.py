"""The event loop: one ``select`` over everything, timed to the nearest deadline.

    signals ─► wake-up fd ───────┐
    other threads ─► call pipe ──┤
    worker exits (pidfds) ───────┼─► selector.select(timeout = nearest deadline) ─► callbacks
    worker pipes (ready, recycle)┘                                                    │
    deadlines (policy timers, call_later) ◄───────────────────────────────────────────┘

Nothing polls: an idle loop sleeps in one ``select`` until an fd is readable or a deadline
falls due. Signal handlers do nothing: ``signal.set_wakeup_fd`` writes the signal number into
the wake-up pipe and the loop hands it to ``on_signal``.

After a stall (the process was stopped, the machine paused) fds and deadlines are ready
together; every readable fd is read before any deadline fires, so a message that arrived in
time (a worker saying "ready") is never beaten by the timer it should have cancelled.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import os
import selectors
import signal
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from janus_mp.core.timers import Deadlines, TimerKey

T = TypeVar("T")
Callback = Callable[[], None]

#: How many extra zero-timeout selects may run before due timers fire (bounds starvation).
_DRAIN_ROUNDS = 8


class LoopClosed(Exception):
    pass


class _Watch:
    """What the loop calls when one fd is readable, writable or both."""

    __slots__ = ("reader", "writer")

    def __init__(self) -> None:
        self.reader: Callback | None = None
        self.writer: Callback | None = None

    def fire(self, events: int) -> None:
        if events & selectors.EVENT_READ and self.reader is not None:
            self.reader()
        # The reader may have closed the fd (and cleared this): look again.
        if events & selectors.EVENT_WRITE and self.writer is not None:
            self.writer()


class Loop:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.deadlines = Deadlines()  # the policy's timers
        self._callbacks: list[tuple[float, int, Callback]] = []  # call_later
        self._seq = itertools.count()
        self._selector: selectors.BaseSelector | None = None
        self._thread: int | None = None
        self._calls: deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = deque()
        #: Held while the loop thread is set or cleared and while a call is queued: a call is
        #: either queued while the loop can still run it, or run by its caller.
        self._calls_lock = threading.Lock()
        self._call_r = self._call_w = self._signal_r = self._signal_w = -1
        self._old_signals: dict[int, Any] = {}
        self._old_wakeup_fd = -1
        self.turns = 0
        self.last_turn_at = 0.0

    # -- lifetime ----------------------------------------------------------------------------
    def open(self) -> None:
        self.last_turn_at = self.clock()
        self._selector = selectors.DefaultSelector()
        self._call_r, self._call_w = _nonblocking_pipe()
        self.add_reader(self._call_r, self._on_calls)
        with self._calls_lock:  # last: a caller that sees the loop thread finds its pipe
            self._thread = threading.get_ident()

    def install_signals(self, names: tuple[str, ...], on_signal: Callable[[int], None]) -> None:
        """Route ``names`` to ``on_signal(signum)`` in the loop (main thread only)."""
        assert self._selector is not None
        self._signal_r, self._signal_w = _nonblocking_pipe()
        self.add_reader(self._signal_r, lambda: self._on_signal_fd(on_signal))
        for name in names:
            signum = getattr(signal, name)
            self._old_signals[signum] = signal.signal(signum, _just_wake)
        self._old_wakeup_fd = signal.set_wakeup_fd(self._signal_w, warn_on_full_buffer=False)

    @property
    def handles_signals(self) -> bool:
        return bool(self._old_signals)

    def close(self) -> None:
        if self._old_signals:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            for signum, handler in self._old_signals.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            self._old_signals.clear()
        with self._calls_lock:  # from here on, callers run their call themselves
            self._thread = None
            _close_fds(self._call_r, self._call_w)
            self._call_r = self._call_w = -1
        if self._selector is not None:
            self._selector.close()
        _close_fds(self._signal_r, self._signal_w)
        self._signal_r = self._signal_w = -1
        self._fail_pending_calls()

    def own_fds(self) -> list[int]:
        """The loop's fds: a forked worker closes them first thing."""
        fds = [self._call_r, self._call_w, self._signal_r, self._signal_w]
        if isinstance(self._selector, selectors.EpollSelector):
            fds.append(self._selector.fileno())
        return [fd for fd in fds if fd >= 0]

    # -- fds ---------------------------------------------------------------------------------
    def add_reader(self, fileobj: Any, callback: Callback) -> None:
        self._watch(fileobj, reader=callback)

    def remove_reader(self, fileobj: Any) -> None:
        self._watch(fileobj, reader=None)

    def add_writer(self, fileobj: Any, callback: Callback) -> None:
        """Call ``callback`` whenever ``fileobj`` can take more bytes (until removed)."""
        self._watch(fileobj, writer=callback)

    def remove_writer(self, fileobj: Any) -> None:
        self._watch(fileobj, writer=None)

    def _watch(self, fileobj: Any, **change: Callback | None) -> None:
        selector = self._selector
        if selector is None:
            assert not any(change.values()), "the loop is not open"
            return
        try:
            key: selectors.SelectorKey | None = selector.get_key(fileobj)
        except (KeyError, ValueError):
            key = None
        except RuntimeError:  # closed: the loop has ended, nothing is watched any more
            assert not any(change.values()), "the loop is closed"
            return
        watch = _Watch() if key is None else key.data
        for side, callback in change.items():
            setattr(watch, side, callback)
        events = ((selectors.EVENT_READ if watch.reader else 0)
                  | (selectors.EVENT_WRITE if watch.writer else 0))
        try:
            if key is None:
                if events:
                    selector.register(fileobj, events, watch)
            elif not events:
                selector.unregister(fileobj)
            elif events != key.events:
                selector.modify(fileobj, events, watch)
        except (KeyError, ValueError, OSError):
            if events:
                raise

    # -- timers ------------------------------------------------------------------------------
    def call_at(self, when: float, callback: Callback) -> None:
        heapq.heappush(self._callbacks, (when, next(self._seq), callback))

    def next_deadline(self) -> float | None:
        policy = self.deadlines.next_deadline()
        own = self._callbacks[0][0] if self._callbacks else None
        if policy is None:
            return own
        return policy if own is None else min(policy, own)

    # -- one turn ----------------------------------------------------------------------------
    def turn(self, on_timer: Callable[[TimerKey], None]) -> None:
        assert self._selector is not None
        deadline = self.next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - self.clock())
        for key, events in self._selector.select(timeout):
            key.data.fire(events)
        # A select that timed out can still leave fds ready: after a stop (SIGSTOP, a paused
        # VM) the kernel reports the timeout, not the data that arrived meanwhile. So before
        # any deadline fires, look again, without waiting, until nothing more is readable.
        for _ in range(_DRAIN_ROUNDS):
            if not self._timers_due():
                break
            ready = self._selector.select(0)
            if not ready:
                break
            for key, events in ready:
                key.data.fire(events)
        now = self.clock()
        for timer_key in self.deadlines.pop_due(now):
            on_timer(timer_key)
        while self._callbacks and self._callbacks[0][0] <= now:
            heapq.heappop(self._callbacks)[2]()
        self.turns += 1
        self.last_turn_at = self.clock()

    def _timers_due(self) -> bool:
        deadline = self.next_deadline()
        return deadline is not None and deadline <= self.clock()

    # -- calls from other threads -----------------------------------------------------------
    def in_loop_thread(self) -> bool:
        return self._thread is None or threading.get_ident() == self._thread

    def call(self, fn: Callable[[], T], *, wait: bool = True, timeout: float | None = None) -> T:
        """Run ``fn`` in the loop thread (directly when already there or no loop runs)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._calls_lock:
            direct = self.in_loop_thread()
            if not direct:
                self._calls.append((fn, future))
                try:  # under the lock: the pipe cannot be closed (its fd reused) meanwhile
                    os.write(self._call_w, b"x")
                except BlockingIOError:
                    pass  # the pipe already holds a wake-up
        if direct:
            return fn()
        if not wait:
            return None  # type: ignore[return-value]
        return future.result(timeout)

    def _on_calls(self) -> None:
        try:
            os.read(self._call_r, 4096)
        except BlockingIOError:
            pass
        while self._calls:
            fn, future = self._calls.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller's thread
                future.set_exception(exc)

    def _fail_pending_calls(self) -> None:
        while self._calls:
            fn, future = self._calls.popleft()
            if future.set_running_or_notify_cancel():
                try:  # the loop is gone: run it here, single-threaded now
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)

    def _on_signal_fd(self, on_signal: Callable[[int], None]) -> None:
        try:
            data = os.read(self._signal_r, 4096)
        except BlockingIOError:
            return
        for signum in data:
            on_signal(signum)


def _just_wake(_signum: int, _frame: Any) -> None:
    """The whole signal handler: set_wakeup_fd has already queued the signal number."""


def _close_fds(*fds: int) -> None:
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


def _nonblocking_pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    return r, w
