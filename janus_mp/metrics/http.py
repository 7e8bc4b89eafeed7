"""The supervisor's HTTP endpoint: /metrics, /healthz, /readyz, served off the supervisor loop.

Hostile or broken clients must not stall a scrape, so no thread ever waits on a client that
has not sent a whole request:

    listener --accept--> selector thread: reads request heads of all connections at once
                          | a whole head within HEAD_DEADLINE and MAX_HEAD_BYTES
                          v
                         handler threads (HANDLER_THREADS, all started by start()):
                          | http.server parses it, we answer
                          | the whole response, sent with one deadline
                          v
                         closed

Idle and slowloris connections cost a socket in the selector, not a thread, and die at their
deadline; past a limit well inside the file descriptor limit the oldest is dropped, so a new
scrape always gets in. Complete requests beyond MAX_IN_FLIGHT are refused by closing them. An
idle endpoint blocks in ``select`` with no timeout: no wake-ups. Every fd opened here is
registered in ``private_fds``, so a worker forked meanwhile closes its copies (a copy would
keep a client's connection open after we closed it).
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import resource
import selectors
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from janus_mp.errors import JanusError
from janus_mp.metrics.handler_threads import HandlerThreads
from janus_mp.private_fds import PrivateFds

log = logging.getLogger("janus_mp.http")

HEAD_DEADLINE = 5.0  # seconds for a client to send its request line and headers
MAX_HEAD_BYTES = 16 * 1024
HANDLER_THREADS = 4
MAX_IN_FLIGHT = 64  # complete requests queued or being answered
WRITE_DEADLINE = 5.0  # seconds to send a whole response
ACCEPT_PAUSE = 0.1  # seconds without accepting when out of file descriptors


Readiness = Callable[[], tuple[bool, dict[str, Any]]]


class MetricsServer:
    """``/metrics`` from ``registry``, ``/healthz`` from ``health``, ``/readyz`` from
    ``readiness``, in background threads; ``start`` and ``stop`` never wait on a client."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, registry: CollectorRegistry,
                 health: Callable[[], bool], readiness: Readiness,
                 private_fds: PrivateFds | None = None,
                 inherited_fd: int | None = None) -> None:
        self.host = host
        #: A listening socket handed over by the supervisor before us (an upgrade): served
        #: as it is, nothing bound.
        self.inherited_fd = inherited_fd
        self.requested_port = port
        self.registry = registry
        self.health = health
        self.readiness = readiness
        self.private_fds = private_fds or PrivateFds()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._pool: HandlerThreads | None = None
        self._slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._stopping = threading.Event()
        self._max_pending = 0
        self._wake_r = self._wake_w = -1

    def start(self) -> None:
        """Bind and serve in the background; JanusError naming host:port if it cannot bind."""
        if self._listener is not None:
            return
        where = f"{self.host}:{self.requested_port}"
        if self.inherited_fd is not None:
            listener = socket.socket(fileno=self.inherited_fd)
            self.inherited_fd = None
            listener.setblocking(False)
            self._serve_on(listener, where)
            return
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                self.host, self.requested_port, type=socket.SOCK_STREAM,
                flags=socket.AI_PASSIVE)[0]
        except socket.gaierror as exc:
            raise JanusError(f"cannot serve metrics on {where}: {exc.strerror}") from None
        listener = socket.socket(family, kind, proto)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only
            listener.bind(address)
            listener.listen(512)
            listener.setblocking(False)
        except OSError as exc:
            listener.close()
            raise JanusError(f"cannot serve metrics on {where}: {exc.strerror or exc}") from None
        self._serve_on(listener, where)

    def _serve_on(self, listener: socket.socket, where: str) -> None:
        self.private_fds.add(listener.fileno())
        self._listener = listener
        self._max_pending = _pending_limit()
        self._stopping.clear()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.private_fds.add(self._wake_r)
        self.private_fds.add(self._wake_w)
        self._pool = HandlerThreads(HANDLER_THREADS, "janus-mp-http")
        try:  # every thread the endpoint will ever need, now: see handler_threads
            self._pool.start()
            accept = threading.Thread(target=self._serve, name="janus-mp-http-accept",
                                      daemon=True)
            accept.start()
        except RuntimeError as exc:
            self.stop()
            raise JanusError(f"cannot serve metrics on {where}: {exc}") from None
        self._thread = accept
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    @property
    def fileno(self) -> int | None:
        """The listening socket's fd (to hand it over), None when not serving."""
        return self._listener.fileno() if self._listener is not None else None

    @property
    def port(self) -> int:
        """The port actually bound (the one chosen by the OS when asked for 0)."""
        if self._listener is None:
            raise JanusError("metrics endpoint is not started")
        return int(self._listener.getsockname()[1])

    def stop(self) -> None:
        """Stop accepting and drop unanswered connections. Idempotent, and never waits on
        requests being answered: they finish (bounded by WRITE_DEADLINE) on their own."""
        if self._listener is None:
            return
        self._stopping.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join()  # the selector thread blocks on nothing but select
            self._thread = None
        if self._pool is not None:
            self._pool.stop()  # queued requests see _stopping and close
            self._pool = None
        self._release(self._listener)
        self._listener = None
        for fd in (self._wake_r, self._wake_w):
            self.private_fds.discard(fd)
            os.close(fd)
        self._wake_r = self._wake_w = -1

    # -- the selector thread: accepts and reads request heads ---------------------------------
    def _serve(self) -> None:
        assert self._listener is not None
        heads = _Heads()
        selector = selectors.DefaultSelector()
        selector_fd = selector.fileno() if isinstance(selector, selectors.EpollSelector) else -1
        if selector_fd >= 0:
            self.private_fds.add(selector_fd)
        selector.register(self._listener, selectors.EVENT_READ, "accept")
        selector.register(self._wake_r, selectors.EVENT_READ, "stop")
        paused_until: float | None = None  # out of file descriptors: stop accepting briefly
        try:
            while True:
                deadlines = [d for d in (heads.next_deadline(), paused_until) if d is not None]
                timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                for key, _ in selector.select(timeout):
                    if key.data == "stop":
                        return
                    if key.data == "accept":
                        if not self._accept(selector, heads):
                            selector.unregister(self._listener)
                            paused_until = time.monotonic() + ACCEPT_PAUSE
                    else:
                        self._read(selector, heads, key.fileobj)  # type: ignore[arg-type]
                now = time.monotonic()
                if paused_until is not None and paused_until <= now:
                    selector.register(self._listener, selectors.EVENT_READ, "accept")
                    paused_until = None
                for sock in heads.expired(now):  # too slow: slowloris
                    self._drop(selector, sock)
        finally:
            for sock in heads.drain():
                self._drop(selector, sock)
            self.private_fds.discard(selector_fd)
            selector.close()

    def _accept(self, selector: selectors.BaseSelector, heads: _Heads) -> bool:
        """Accept what is waiting; False when out of file descriptors with none to free."""
        assert self._listener is not None
        for _ in range(64):  # then let reads run
            try:
                sock, address = self.private_fds.accept(self._listener)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return True  # ECONNABORTED and the like: that client's problem
                oldest = heads.pop_oldest()
                if oldest is None:
                    log.warning("metrics endpoint cannot accept: %s", exc)
                    return False
                self._drop(selector, oldest)
                continue
            if len(heads) >= self._max_pending:
                oldest = heads.pop_oldest()
                if oldest is not None:
                    self._drop(selector, oldest)
            sock.setblocking(False)
            heads.add(sock, address, time.monotonic() + HEAD_DEADLINE)
            selector.register(sock, selectors.EVENT_READ, "client")
        return True

    def _read(self, selector: selectors.BaseSelector, heads: _Heads,
              sock: socket.socket) -> None:
        try:
            chunk = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        data = heads.extend(sock, chunk)
        if not chunk or len(data) > MAX_HEAD_BYTES:
            heads.pop(sock)
            self._drop(selector, sock)
        elif b"\r\n\r\n" in data or b"\n\n" in data:  # the head is whole: http.server's turn
            address = heads.pop(sock)
            selector.unregister(sock)
            if self._pool is None or not self._slots.acquire(blocking=False):
                self._release(sock)  # overloaded: refuse fast rather than queue without bound
                return
            head = bytes(data)
            self._pool.submit(lambda: self._answer(sock, head, address))

    # -- a pool thread: answers one complete request -------------------------------------------
    def _answer(self, sock: socket.socket, head: bytes, address: Any) -> None:
        try:
            if self._stopping.is_set():
                return
            handler = _Handler(sock, head, address, self)
            sock.setblocking(True)
            sock.settimeout(WRITE_DEADLINE)  # a total deadline for sendall
            sock.sendall(handler.response())
        except Exception as exc:  # a client gone away, a full buffer past the deadline
            log.debug("http client %s: %s", address, exc)
        finally:
            self._release(sock)
            self._slots.release()

    def _drop(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        try:
            selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        self._release(sock)

    def _release(self, sock: socket.socket) -> None:
        self.private_fds.discard(sock.fileno())  # first: its number may be reused once closed
        sock.close()


class _Heads:
    """Connections whose request head is still arriving, oldest (earliest deadline) first."""

    def __init__(self) -> None:
        self._pending: OrderedDict[socket.socket, tuple[float, bytearray, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, sock: socket.socket, address: Any, deadline: float) -> None:
        self._pending[sock] = (deadline, bytearray(), address)

    def extend(self, sock: socket.socket, chunk: bytes) -> bytearray:
        data = self._pending[sock][1]
        data += chunk
        return data

    def pop(self, sock: socket.socket) -> Any:
        return self._pending.pop(sock)[2]

    def pop_oldest(self) -> socket.socket | None:
        return self._pending.popitem(last=False)[0] if self._pending else None

    def next_deadline(self) -> float | None:
        return next(iter(self._pending.values()))[0] if self._pending else None

    def expired(self, now: float) -> list[socket.socket]:
        gone = []
        while self._pending:
            sock, (deadline, _, _) = next(iter(self._pending.items()))
            if deadline > now:
                break
            del self._pending[sock]
            gone.append(sock)
        return gone

    def drain(self) -> list[socket.socket]:
        socks = list(self._pending)
        self._pending.clear()
        return socks


def _pending_limit() -> int:
    """Connections allowed to be reading a head: well inside the file descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 4))


class _Handler(BaseHTTPRequestHandler):
    """http.server's parsing of a head already read in full; the response goes to a buffer
    so that it is sent in one call, under one deadline."""

    protocol_version = "HTTP/1.1"
    endpoint: MetricsServer

    def __init__(self, sock: socket.socket, head: bytes, address: Any,
                 endpoint: MetricsServer) -> None:
        self.endpoint = endpoint
        self._head = head
        super().__init__(sock, address, None)  # type: ignore[arg-type]

    def setup(self) -> None:
        self.connection = self.request
        self.rfile = io.BytesIO(self._head)
        self.wfile = io.BytesIO()

    def finish(self) -> None:
        pass  # the caller sends response() and closes the socket

    def response(self) -> bytes:
        assert isinstance(self.wfile, io.BytesIO)
        return self.wfile.getvalue()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._metrics()
        elif path == "/healthz":
            self._healthz()
        elif path == "/readyz":
            self._readyz()
        else:
            self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

    def _metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        try:
            body = encoder(self.endpoint.registry)
        except Exception as exc:
            log.warning("metrics collection failed: %s", exc)
            self._reply(500, f"metrics collection failed: {exc}\n".encode())
            return
        self._reply(200, body, content_type)

    def _healthz(self) -> None:
        try:
            healthy = bool(self.endpoint.health())
        except Exception as exc:
            log.warning("health check failed: %s", exc)
            healthy = False
        self._reply(200 if healthy else 503, b"ok\n" if healthy else b"supervisor loop wedged\n")

    def _readyz(self) -> None:
        try:
            ready, detail = self.endpoint.readiness()
        except Exception as exc:
            log.warning("readiness check failed: %s", exc)
            ready, detail = False, {"ready": False, "error": str(exc)}
        self._reply(200 if ready else 503, json.dumps(detail).encode() + b"\n",
                    "application/json")

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)
