"""The supervisor's own file descriptors, which a forked worker must not keep.

fork copies every fd. A worker holding a copy of a control connection or an HTTP client socket
keeps that connection open after the supervisor closed it (its client never sees EOF), and a
worker holding another worker's pipe hides that worker's EOFs. Components that open fds in
other threads (the control socket, the metrics endpoint) register them here; spawning holds the
lock across the fork, so no fd can appear half-registered, and the child closes them all.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class PrivateFds:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fds: set[int] = set()

    def add(self, fd: int) -> None:
        with self._lock:
            self._fds.add(fd)

    def discard(self, fd: int) -> None:
        with self._lock:
            self._fds.discard(fd)

    def close(self, fd: int) -> None:
        """Forget and close ``fd`` at once: no fork sees it registered but closed (another fd
        could take its number and be closed in the child) or closed but unregistered."""
        with self._lock:
            self._fds.discard(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    @contextmanager
    def frozen(self) -> Iterator[frozenset[int]]:
        """Hold the registry still (across a fork) and give its fds."""
        with self._lock:
            yield frozenset(self._fds)

    def accept(self, listener: socket.socket) -> tuple[socket.socket, Any]:
        """accept() and register in one step, so no fork lands in between. The listener must
        be ready (or non-blocking): this holds the lock."""
        with self._lock:
            conn, address = listener.accept()
            self._fds.add(conn.fileno())
        return conn, address

    def new_socket(self, family: int, kind: int) -> socket.socket:
        """A socket created and registered in one step (a probe's client socket): a worker
        forked meanwhile never holds a copy that would keep the connection open."""
        with self._lock:
            sock = socket.socket(family, kind)
            self._fds.add(sock.fileno())
        return sock

    def close_socket(self, sock: socket.socket) -> None:
        with self._lock:
            self._fds.discard(sock.fileno())
            sock.close()
