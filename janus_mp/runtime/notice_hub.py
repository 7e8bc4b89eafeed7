"""Fan-out of lifecycle notices to subscribers, each with a bounded buffer.

    loop thread: Publish(notice) ─► NoticeHub.publish ─┬─► subscription 1: deque ≤ N ─► reader
                                                       ├─► subscription 2 (events -f client)
                                                       └─► hooks runner

Publishing never waits for a reader: it appends under each subscription's own short lock and
wakes it. A subscription whose buffer is full loses the notice, and counts it; its reader gets
that count with its next batch (``janus-mp events`` prints it), so a slow reader learns it
missed something and never slows the loop down. The hub also keeps the last ``HISTORY``
notices, so a new subscriber can start with what just happened (``janus-mp events``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from janus_mp.core.notices import LifecycleNotice

DEFAULT_BUFFER = 1024
HISTORY = 200


class NoticeSubscription:
    """What one subscriber reads: notices in order, and how many it lost."""

    def __init__(self, hub: NoticeHub, buffer: int, wall_offset: Callable[[], float]) -> None:
        self._hub = hub
        self._buffer: deque[LifecycleNotice] = deque()
        self._limit = buffer
        self._lost = 0
        self._closed = False
        self._cond = threading.Condition(threading.Lock())
        #: Wall clock minus the policy clock, for ``to_dict`` (notices carry policy time).
        self.wall_offset = wall_offset
        #: With ``history=True``: the notices published before this subscription, oldest
        #: first (none of them is delivered again through ``get``).
        self.history: list[LifecycleNotice] = []

    def offer(self, notice: LifecycleNotice) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._buffer) >= self._limit:
                self._lost += 1
            else:
                self._buffer.append(notice)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> tuple[list[LifecycleNotice], int]:
        """Wait up to ``timeout`` for notices; return those waiting and how many were lost
        since the last call. Empty and 0 on timeout or once closed."""
        with self._cond:
            if not self._buffer and not self._lost and not self._closed:
                self._cond.wait(timeout)
            batch = list(self._buffer)
            self._buffer.clear()
            lost, self._lost = self._lost, 0
            return batch, lost

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._hub.unsubscribe(self)

    def __enter__(self) -> NoticeSubscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class NoticeHub:
    def __init__(self, wall_offset: Callable[[], float]) -> None:
        self._lock = threading.Lock()
        self._subscribers: tuple[NoticeSubscription, ...] = ()
        self._wall_offset = wall_offset
        self._history: deque[LifecycleNotice] = deque(maxlen=HISTORY)

    def subscribe(self, buffer: int = DEFAULT_BUFFER, *,
                  history: bool = False) -> NoticeSubscription:
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise ValueError("buffer must be an integer >= 1")
        subscription = NoticeSubscription(self, buffer, self._wall_offset)
        with self._lock:  # with publish's lock: no notice is both history and delivered
            if history:
                subscription.history = list(self._history)
            self._subscribers = (*self._subscribers, subscription)
        return subscription

    def unsubscribe(self, subscription: NoticeSubscription) -> None:
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not subscription)

    def publish(self, notice: LifecycleNotice) -> None:
        """Loop thread; never waits for a reader (each offer takes one short lock)."""
        with self._lock:
            self._history.append(notice)
            for subscription in self._subscribers:
                subscription.offer(notice)

    def close(self) -> None:
        """The supervisor stopped: wake every reader (they see ``closed``)."""
        for subscription in self._subscribers:
            subscription.close()

    @property
    def wall_offset(self) -> float:
        return self._wall_offset()
