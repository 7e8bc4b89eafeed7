"""Frames waiting to leave on one non-blocking socket, sent as fast as the peer reads them.

The loop thread must never wait on a peer: a worker busy writing a large result does not read
the next task sent to it (each would wait for the other), and a submitter may be stopped. So a
frame is sent at once as far as the socket buffer takes it, and what is left waits here until
the loop sees the socket writable. The peer's own reading bounds what waits: a worker is sent
at most one task ahead, a submitter gets only the answers to what it asked for.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from typing import Any, Protocol


class _Loop(Protocol):
    def call_soon(self, fn: Any) -> None: ...
    def add_writer(self, fileobj: Any, callback: Any) -> None: ...
    def remove_writer(self, fileobj: Any) -> None: ...


class Outbox:
    """``write`` whole frames from any thread holding ``lock``; the rest of a frame the socket
    did not take is sent from the loop thread as the socket drains. ``close`` (loop thread)
    before the socket is closed."""

    def __init__(self, sock: socket.socket, loop: _Loop, lock: threading.RLock) -> None:
        self._sock = sock
        self._loop = loop
        self._lock = lock
        self._queue: deque[memoryview] = deque()
        self.broken = False  # the peer is gone: what it was sent is dropped
        self._closed = False

    @property
    def waiting(self) -> int:
        """Bytes the socket has not taken yet."""
        return sum(len(view) for view in self._queue)

    def write(self, data: bytes) -> None:
        if self.broken or self._closed:
            return
        if self._queue:  # behind what waits already: order is the protocol
            self._queue.append(memoryview(data))
            return
        rest = self._send(memoryview(data))
        if rest:
            self._queue.append(rest)
            self._loop.call_soon(self._watch)

    def close(self) -> None:
        self._closed = True
        self._queue.clear()
        self._loop.remove_writer(self._sock)

    # -- in the loop thread -------------------------------------------------------------------
    def _watch(self) -> None:
        with self._lock:
            if self._queue and not self._closed:
                self._loop.add_writer(self._sock, self._writable)

    def _writable(self) -> None:
        with self._lock:
            queue = self._queue
            while queue:
                rest = self._send(queue[0])
                if rest:
                    queue[0] = rest
                    return
                queue.popleft()
            self._loop.remove_writer(self._sock)

    def _send(self, view: memoryview) -> memoryview:
        try:
            while view:
                view = view[self._sock.send(view):]
        except BlockingIOError:
            return view
        except OSError:
            self.broken = True  # its exit or its closing tells the owner what it held
            self._queue.clear()
            return view[:0]
        return view
