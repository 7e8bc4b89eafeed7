"""Persistent connections for a worker with several request threads (gunicorn gthread's model):
an idle connection waits in a selector, never in a request thread.

    poller (the worker's main thread): one selector over
        the listening sockets — registered while fewer requests wait for a thread than
                                 there are threads, so a saturated worker leaves new
                                 connections to the other workers
        parked connections   — idle between requests, each until ``keepalive`` seconds pass
        the wake-up pipe     — a stop, or a connection handed back for parking
        │ a new connection, or a parked one turning readable
        ▼
    work queue ─► request thread: Gateway.serve, again while the next request has arrived
                  already (pipelined), then hands the connection back (kept) or closes it

A request thread is held only while a request is read or served: a client that stays
connected but silent costs a file descriptor and a selector slot, not a thread. Kept
connections must not starve new ones: when no thread is free and a connection waits in the
listen backlog, a response says ``Connection: close`` instead of keeping its connection (unless
that client's next request is here already), so under saturation clients take turns through
the backlog as with one request per connection.
A stop closes the parked connections at once; requests in flight are answered with
``Connection: close``.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable

from janus_mp.adapters.http_gateway import Connection, Gateway

log = logging.getLogger("janus_mp.http")

#: Most idle connections one worker keeps (gunicorn's ``worker_connections`` default); past
#: it a connection is closed after its response instead of parked.
MAX_PARKED = 1000

_Work = tuple[Connection, Gateway, float]


class KeepAlivePool:
    """Serve ``listeners`` with ``threads`` request threads and persistent connections."""

    def __init__(self, listeners: dict[socket.socket, Gateway], *, threads: int,
                 keepalive: float, wake: tuple[int, int], draining: Callable[[], bool],
                 accept: Callable[[socket.socket], tuple[socket.socket, str, str] | None],
                 heartbeat: Callable[[], None], idle_wait: float | None,
                 busy: Callable[[int], None],
                 on_request: Callable[[float, int], None] | None, worker: str) -> None:
        self._listeners = listeners
        self._threads = threads
        self._keepalive = keepalive
        self._wake_r, self._wake_w = wake
        self._draining = draining
        self._accept = accept
        self._heartbeat = heartbeat
        self._idle_wait = idle_wait
        self._busy = busy
        self._on_request = on_request
        self._worker = worker
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._free = threads  # request threads waiting, less the work queued for them
        self._returned: list[tuple[Connection, Gateway]] = []  # to park, from the threads
        self._closed = False  # the poller is gone: a connection handed back is closed
        # Parked connections by fd, in the order they were parked: every one waits the same
        # keepalive, so that is also the order their deadlines fall due.
        self._parked: dict[int, tuple[Connection, Gateway, float]] = {}

    def run(self) -> None:
        """Poll until draining; then close the idle connections and wait for the threads."""
        os.set_blocking(self._wake_w, False)
        threads = [threading.Thread(target=self._request_thread, name=f"janus-mp-http-{i}",
                                    daemon=True) for i in range(1, self._threads + 1)]
        for thread in threads:
            thread.start()
        try:
            with selectors.DefaultSelector() as selector:
                self._poll(selector)
        finally:
            with self._lock:
                self._closed = True
                returned, self._returned = self._returned, []
            for connection, _ in returned:
                connection.sock.close()
            for connection, _, _ in self._parked.values():
                connection.sock.close()
            self._parked.clear()
            for _ in threads:
                self._work.put(None)
            for thread in threads:
                thread.join()

    # -- the poller -----------------------------------------------------------------------------
    def _poll(self, selector: selectors.BaseSelector) -> None:
        selector.register(self._wake_r, selectors.EVENT_READ)
        listening = False
        while True:
            self._adopt_returned(selector)
            if self._draining():
                return
            with self._lock:
                want = self._free > -self._threads
            if want != listening:
                for sock in self._listeners:
                    if want:
                        selector.register(sock, selectors.EVENT_READ)
                    else:
                        selector.unregister(sock)
                listening = want
            for key, _ in selector.select(self._wait()):
                if key.fileobj == self._wake_r:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass  # another reader (a stop's wake-up) took it
                elif key.fileobj in self._listeners:
                    if listening:
                        self._accept_while_free(key.fileobj)
                else:  # a parked connection: its next request (or its close) has come
                    connection, gateway, _ = self._parked.pop(key.fd)
                    selector.unregister(key.fileobj)
                    self._dispatch(connection, gateway)
            self._expire(selector)
            self._heartbeat()

    def _wait(self) -> float | None:
        wait = self._idle_wait
        if self._parked:  # parked in deadline order: the first one is due first
            _, _, deadline = next(iter(self._parked.values()))
            until = max(0.0, deadline - time.monotonic())
            wait = until if wait is None else min(wait, until)
        return wait

    def _accept_while_free(self, listener: socket.socket) -> None:
        gateway = self._listeners[listener]
        while not self._draining():
            with self._lock:
                if self._free <= -self._threads:  # as many waiting as there are threads
                    return
            accepted = self._accept(listener)
            if accepted is None:
                return
            sock, peer, port = accepted
            self._dispatch(gateway.connection(sock, peer, port), gateway)

    def _dispatch(self, connection: Connection, gateway: Gateway) -> None:
        with self._lock:
            self._free -= 1
        self._work.put((connection, gateway, time.monotonic()))

    def _adopt_returned(self, selector: selectors.BaseSelector) -> None:
        with self._lock:
            returned, self._returned = self._returned, []
        deadline = time.monotonic() + self._keepalive
        for connection, gateway in returned:
            if len(self._parked) >= MAX_PARKED:
                connection.sock.close()
                continue
            selector.register(connection.sock, selectors.EVENT_READ)
            self._parked[connection.sock.fileno()] = (connection, gateway, deadline)

    def _expire(self, selector: selectors.BaseSelector) -> None:
        now = time.monotonic()
        while self._parked:  # idle for keepalive seconds: closed without a word
            fd, (connection, _, deadline) = next(iter(self._parked.items()))
            if deadline > now:
                return
            del self._parked[fd]
            selector.unregister(connection.sock)
            connection.sock.close()

    # -- the request threads --------------------------------------------------------------------
    def _request_thread(self) -> None:
        while (work := self._work.get()) is not None:
            connection, gateway, began = work
            self._busy(1)
            park = False
            try:
                park = self._serve(connection, gateway, began)
            except Exception:  # a bug of ours: log it, keep the worker serving
                log.exception("%s: error while serving a connection from %s", self._worker,
                              connection.peer or "unix")
                connection.sock.close()
            finally:
                self._busy(-1)
                with self._lock:
                    was_full = self._free <= 0
                    self._free += 1
                    if park and not self._closed:
                        self._returned.append((connection, gateway))
                    elif park:
                        connection.sock.close()
                if park or was_full:
                    self._wake()
            self._heartbeat()

    def _serve(self, connection: Connection, gateway: Gateway, began: float) -> bool:
        """Serve requests while the next one is here already; whether to park the connection."""
        persist = self._persist
        while True:
            started = time.perf_counter()
            status, kept = gateway.serve(connection, began, persist)
            if self._on_request is not None and status is not None:
                self._on_request(time.perf_counter() - started, status)
            if not kept:
                return False
            if not connection.reader.pending:
                return True
            began = time.monotonic()  # pipelined: its head deadline starts now

    def _persist(self, pipelined: bool) -> bool:
        """Whether the connection of the response going out may stay open: not during a
        stop; always when the client's next request is here already (closing would drop it
        unanswered); else unless the worker is saturated and a newcomer waits."""
        if self._draining():
            return False
        if pipelined:
            return True
        with self._lock:
            saturated = self._free <= 0
        if not saturated:
            return True
        waiting, _, _ = select.select(list(self._listeners), [], [], 0)
        return not waiting  # a new client waits: this one reconnects behind it

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b".")
        except (BlockingIOError, OSError):
            pass  # the pipe is full: the poller wakes anyway
