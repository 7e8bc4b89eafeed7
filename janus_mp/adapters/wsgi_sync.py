"""The sync WSGI engine: each worker thread accepts one connection when it is idle, answers
it, and closes it — gunicorn's sync-worker model, measured best for CPU-bound handlers (see
``scripts/bench_http.py``). With ``threads > 1`` and ``keepalive`` on, connections persist
instead, parked between requests off the request threads (:mod:`.wsgi_keepalive`).
The wire is parsed by llhttp (httptools), chosen by measurement
(``scripts/bench_http_parsers.py``): :mod:`.http_request` reads, :mod:`.http_response`
writes, :mod:`.http_gateway` runs one exchange.

    listening socket (bound once by the supervisor, shared by every worker of the pool)
        │  readable ─► each idle worker wakes; accept() gives the connection to one of them
        ▼           (the others get EAGAIN and wait again), so a busy worker takes no more work
    worker: Gateway.serve: read head (deadline) ─► app ─► response ─► close ─► access log
        ▲
    wake-up pipe: a stop makes every thread leave its wait; a request in flight completes first

Because a worker only accepts when idle, connections spread over the pool by availability,
not by luck; the listen backlog is the queue.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from janus_mp.adapters.http_access_log import AccessLog
from janus_mp.adapters.http_gateway import Gateway
from janus_mp.adapters.http_settings import HttpSettings
from janus_mp.adapters.wsgi_keepalive import KeepAlivePool

log = logging.getLogger("janus_mp.http")

#: accept() errors that mean "out of a resource for now", not "the socket is broken".
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class SyncWsgiServer:
    """Serve ``app`` on ``listeners`` from ``threads`` threads until :meth:`drain`."""

    def __init__(self, app: Callable[..., Any], listeners: tuple[socket.socket, ...], *,
                 threads: int = 1, timeout: float = 30.0,
                 settings: HttpSettings | None = None, worker: str = "http",
                 on_request: Callable[[float, int], None] | None = None,
                 busy: Callable[[int], None] | None = None,
                 heartbeat: Callable[[], None] | None = None,
                 heartbeat_interval: float | None = None) -> None:
        self._app = app
        self._listeners = listeners
        self._settings = settings or HttpSettings()
        self._worker = worker
        self._threads = threads
        self._timeout = timeout
        self._on_request = on_request
        self._busy = busy or (lambda delta: None)
        self._gateways: dict[int, Gateway] = {}
        # With a watchdog, an idle worker must still prove it lives: wake up that often.
        self._heartbeat = heartbeat or (lambda: None)
        self._idle_wait = heartbeat_interval
        self._wake_r, self._wake_w = os.pipe()
        self._draining = False

    def serve(self) -> None:
        """Block until drained: every thread has left its accept loop."""
        settings = self._settings
        access_log = AccessLog(settings.access_log, settings.access_log_format) \
            if settings.access_log else None
        for sock in self._listeners:
            # The listener's file description is shared by the pool: every worker selects
            # before accepting, so non-blocking mode is what all of them want.
            sock.setblocking(False)
            self._gateways[sock.fileno()] = Gateway(
                self._app, settings, io_timeout=self._timeout, server=_server_address(sock),
                multithread=self._threads > 1, worker=self._worker, access_log=access_log,
                heartbeat=self._heartbeat, heartbeat_interval=self._idle_wait)
        try:
            if self._threads > 1 and settings.keepalive > 0:
                KeepAlivePool({sock: self._gateways[sock.fileno()] for sock in self._listeners},
                              threads=self._threads, keepalive=settings.keepalive,
                              wake=(self._wake_r, self._wake_w),
                              draining=lambda: self._draining, accept=self._accept,
                              heartbeat=self._heartbeat, idle_wait=self._idle_wait,
                              busy=self._busy, on_request=self._on_request,
                              worker=self._worker).run()
            else:
                self._serve_one_per_connection()
        finally:
            os.close(self._wake_r)
            os.close(self._wake_w)
            if access_log is not None:
                access_log.close()

    def _serve_one_per_connection(self) -> None:
        workers = [threading.Thread(target=self._accept_loop, name=f"janus-mp-http-{i}",
                                    daemon=True) for i in range(1, self._threads)]
        for thread in workers:
            thread.start()
        self._accept_loop()
        for thread in workers:
            thread.join()

    def drain(self) -> None:
        """Stop accepting (from any thread); requests in flight are answered first."""
        self._draining = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _accept_loop(self) -> None:
        # Accept first, wait only when there is nothing to accept: a saturated worker goes
        # from one connection to the next without a select() in between.
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            for sock in self._listeners:
                selector.register(sock, selectors.EVENT_READ)
            while not self._draining:
                served = False
                for sock in self._listeners:
                    while not self._draining and self._accept_one(sock):
                        self._heartbeat()
                        served = True
                if not served and not self._draining:
                    self._heartbeat()
                    selector.select(self._idle_wait)

    def _accept_one(self, listener: socket.socket) -> bool:
        """Serve one connection if one is waiting; False if none was (or none could be)."""
        accepted = self._accept(listener)
        if accepted is None:
            return False
        conn, peer, port = accepted
        gateway = self._gateways[listener.fileno()]
        began = time.perf_counter()
        self._busy(1)
        status: int | None = None
        try:
            status, _ = gateway.serve(gateway.connection(conn, peer, port), time.monotonic())
        except Exception:  # a bug of ours: log it, keep the worker serving
            log.exception("%s: error while serving a connection from %s", self._worker,
                          peer or "unix")
            conn.close()
        finally:
            self._busy(-1)
            if self._on_request is not None and status is not None:
                self._on_request(time.perf_counter() - began, status)
        return True

    def _accept(self, listener: socket.socket) -> tuple[socket.socket, str, str] | None:
        """A waiting connection (blocking, TCP_NODELAY) and its peer; None if none was."""
        try:
            conn, address = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None  # nothing waiting, or another worker took it
        except OSError as exc:
            if exc.errno in _RESOURCE_ERRORS:
                log.warning("%s: accept failed: %s; waiting for a connection to close",
                            self._worker, exc)
                threading.Event().wait(0.1)  # out of fds: accepting again at once would spin
                return None
            raise
        try:
            if conn.family == socket.AF_INET or conn.family == socket.AF_INET6:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # reset already: serving it finds out
            pass
        peer, port = (str(address[0]), str(address[1])) if isinstance(address, tuple) \
            else ("", "")
        return conn, peer, port


def _server_address(sock: socket.socket) -> tuple[str, str]:
    """SERVER_NAME and SERVER_PORT for requests on ``sock``."""
    name = sock.getsockname()
    return (str(name[0]), str(name[1])) if isinstance(name, tuple) else ("localhost", "")
