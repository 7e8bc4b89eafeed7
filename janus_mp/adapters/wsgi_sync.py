"""The sync WSGI engine: each worker thread accepts one connection when it is idle, answers
it, and closes it — gunicorn's sync-worker model, measured best for CPU-bound handlers (see
``scripts/bench_http.py``). HTTP parsing and the WSGI gateway are the standard library's
``wsgiref`` (no parser of ours).

    listening socket (bound once by the supervisor, shared by every worker of the pool)
        │  readable ─► each idle worker wakes; accept() gives the connection to one of them
        ▼           (the others get EAGAIN and wait again), so a busy worker takes no more work
    worker: parse (wsgiref) ─► app(environ, start_response) ─► response ─► close
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
from wsgiref.simple_server import WSGIRequestHandler

log = logging.getLogger("janus_mp.http")

#: accept() errors that mean "out of a resource for now", not "the socket is broken".
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class _Handler(WSGIRequestHandler):
    """wsgiref's handler, buffered (the status line, each header and the body would otherwise
    be one send() each), with its per-request stderr line turned into debug logging."""

    wbufsize = 64 * 1024  # flushed by wsgiref after the body and by finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - wsgiref's name
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), format % args)

    def address_string(self) -> str:
        return str(self.client_address[0]) if self.client_address else ""


class _Gateway:
    """What wsgiref's handler asks of its server: the app and the base environ."""

    def __init__(self, app: Callable[..., Any], sock: socket.socket) -> None:
        self.app = app
        name = sock.getsockname()
        host, port = (name[0], str(name[1])) if isinstance(name, tuple) else ("localhost", "")
        self.base_environ = {"SERVER_NAME": host, "SERVER_PORT": port, "GATEWAY_INTERFACE":
                             "CGI/1.1", "SCRIPT_NAME": "", "CONTENT_LENGTH": ""}

    def get_app(self) -> Callable[..., Any]:
        return self.app


class SyncWsgiServer:
    """Serve ``app`` on ``listeners`` from ``threads`` threads until :meth:`drain`."""

    def __init__(self, app: Callable[..., Any], listeners: tuple[socket.socket, ...], *,
                 threads: int = 1, timeout: float = 30.0,
                 on_request: Callable[[float], None] | None = None,
                 heartbeat: Callable[[], None] | None = None,
                 heartbeat_interval: float | None = None) -> None:
        self._listeners = listeners
        self._gateways = {sock.fileno(): _Gateway(app, sock) for sock in listeners}
        self._threads = threads
        self._timeout = timeout
        self._on_request = on_request
        # With a watchdog, an idle worker must still prove it lives: wake up that often.
        self._heartbeat = heartbeat or (lambda: None)
        self._idle_wait = heartbeat_interval
        self._wake_r, self._wake_w = os.pipe()
        self._draining = False

    def serve(self) -> None:
        """Block until drained: every thread has left its accept loop."""
        for sock in self._listeners:
            # The listener's file description is shared by the pool: every worker selects
            # before accepting, so non-blocking mode is what all of them want.
            sock.setblocking(False)
        workers = [threading.Thread(target=self._accept_loop, name=f"janus-mp-http-{i}",
                                    daemon=True) for i in range(1, self._threads)]
        for thread in workers:
            thread.start()
        try:
            self._accept_loop()
            for thread in workers:
                thread.join()
        finally:
            os.close(self._wake_r)
            os.close(self._wake_w)

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
        try:
            conn, address = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False  # nothing waiting, or another worker took it
        except OSError as exc:
            if exc.errno in _RESOURCE_ERRORS:
                log.warning("accept failed: %s; waiting for a connection to close", exc)
                threading.Event().wait(0.1)  # out of fds: accepting again at once would spin
                return False
            raise
        began = time.perf_counter()
        try:
            conn.setblocking(True)
            conn.settimeout(self._timeout)  # a client that stalls cannot hold the worker
            if conn.family == socket.AF_INET or conn.family == socket.AF_INET6:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _Handler(conn, address if address else ("", 0),
                     self._gateways[listener.fileno()])  # type: ignore[arg-type]
        except (TimeoutError, ConnectionError) as exc:
            log.debug("connection from %s dropped: %s", address, exc)
        except Exception:
            log.exception("error while serving a connection from %s", address)
        finally:
            conn.close()  # the response is flushed: close sends the FIN, as gunicorn's does
            if self._on_request is not None:
                self._on_request(time.perf_counter() - began)
        return True
