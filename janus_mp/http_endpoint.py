"""The supervisor's HTTP endpoint: /metrics, /healthz, /readyz, in background threads.

Never on the supervisor loop: handlers ask the loop through ``call_in_loop`` with a deadline.

Hostile clients cannot stall scrapes. One selector thread accepts connections and reads their
request headers, all at once and without threads per connection; a request must arrive whole
within ``HEADER_DEADLINE`` seconds (slowloris) and within ``MAX_HEADER_BYTES`` (huge headers),
and at most ``MAX_PENDING`` connections wait (the oldest is dropped past that). Only complete
requests reach the small handler pool, which parses them with http.server. An idle endpoint
blocks in ``select`` with no timeout: no wake-ups.
"""

from __future__ import annotations

import io
import json
import logging
import os
import selectors
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from janus_mp.errors import JanusError
from janus_mp.private_fds import PrivateFds

log = logging.getLogger("janus_mp.http")

HEADER_DEADLINE = 2.0
MAX_HEADER_BYTES = 16 * 1024
MAX_PENDING = 1024
HANDLER_THREADS = 4
WRITE_TIMEOUT = 5.0


class MetricsServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, registry: CollectorRegistry,
                 health: Callable[[], bool],
                 readiness: Callable[[], tuple[bool, dict[str, Any]]],
                 private_fds: PrivateFds | None = None) -> None:
        self.host = host
        self.private_fds = private_fds or PrivateFds()
        self.requested_port = port
        self.registry = registry
        self.health = health
        self.readiness = readiness
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._wake_r = self._wake_w = -1

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.requested_port))
            listener.listen(512)
        except OSError as exc:
            listener.close()
            raise JanusError(f"cannot serve metrics on {self.host}:{self.requested_port}: "
                             f"{exc.strerror or exc}") from None
        listener.setblocking(False)
        self._listener = listener
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for fd in (listener.fileno(), self._wake_r, self._wake_w):
            self.private_fds.add(fd)
        self._pool = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="janus-mp-http")
        self._thread = threading.Thread(target=self._serve, name="janus-mp-http-accept",
                                        daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    @property
    def port(self) -> int:
        assert self._listener is not None
        return int(self._listener.getsockname()[1])

    def stop(self) -> None:
        if self._listener is None:
            return
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(5)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for fd in (self._listener.fileno(), self._wake_r, self._wake_w):
            self.private_fds.discard(fd)
        self._listener.close()
        self._listener = None
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_r = self._wake_w = -1

    # -- the accepting and header-reading thread ---------------------------------------------
    def _serve(self) -> None:
        assert self._listener is not None and self._pool is not None
        selector = selectors.DefaultSelector()
        self.private_fds.add(selector.fileno())
        selector.register(self._listener, selectors.EVENT_READ, "accept")
        selector.register(self._wake_r, selectors.EVENT_READ, "stop")
        pending: OrderedDict[socket.socket, tuple[float, bytearray, Any]] = OrderedDict()
        try:
            while True:
                timeout = None
                if pending:
                    oldest = next(iter(pending.values()))[0]
                    timeout = max(0.0, oldest - time.monotonic())
                for key, _ in selector.select(timeout):
                    if key.data == "stop":
                        return
                    if key.data == "accept":
                        self._accept(selector, pending)
                    else:
                        self._read(selector, pending, key.fileobj)  # type: ignore[arg-type]
                now = time.monotonic()
                while pending:
                    sock, (deadline, _, _) = next(iter(pending.items()))
                    if deadline > now:
                        break
                    self._drop(selector, pending, sock)  # too slow: slowloris
        finally:
            for sock in list(pending):
                self._drop(selector, pending, sock)
            self.private_fds.discard(selector.fileno())
            selector.close()

    def _accept(self, selector: selectors.BaseSelector,
                pending: OrderedDict[socket.socket, tuple[float, bytearray, Any]]) -> None:
        assert self._listener is not None
        for _ in range(64):
            try:
                sock, address = self.private_fds.accept(self._listener)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: refuse, keep serving
                log.warning("metrics endpoint cannot accept: %s", exc)
                return
            if len(pending) >= MAX_PENDING:
                self._drop(selector, pending, next(iter(pending)))
            sock.setblocking(False)
            pending[sock] = (time.monotonic() + HEADER_DEADLINE, bytearray(), address)
            selector.register(sock, selectors.EVENT_READ, "client")

    def _read(self, selector: selectors.BaseSelector,
              pending: OrderedDict[socket.socket, tuple[float, bytearray, Any]],
              sock: socket.socket) -> None:
        deadline, data, address = pending[sock]
        try:
            chunk = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk or len(data) + len(chunk) > MAX_HEADER_BYTES:
            self._drop(selector, pending, sock)
            return
        data += chunk
        if b"\r\n\r\n" in data or b"\n\n" in data:
            selector.unregister(sock)
            del pending[sock]
            assert self._pool is not None
            self._pool.submit(self._handle, sock, bytes(data), address)

    def _drop(self, selector: selectors.BaseSelector,
              pending: OrderedDict[socket.socket, tuple[float, bytearray, Any]],
              sock: socket.socket) -> None:
        pending.pop(sock, None)
        try:
            selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if fd >= 0:
            self.private_fds.discard(fd)
        sock.close()

    def _handle(self, sock: socket.socket, data: bytes, address: Any) -> None:
        try:
            sock.setblocking(True)
            sock.settimeout(WRITE_TIMEOUT)
            _Handler((sock, data), address, self)  # type: ignore[arg-type]
        except Exception as exc:
            log.debug("http client %s: %s", address, exc)
        finally:
            self._close(sock)


class _Handler(BaseHTTPRequestHandler):
    """http.server's parser over a request whose headers were already read in full."""

    server: MetricsServer  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.connection, data = self.request
        self.rfile = io.BytesIO(data)
        self.wfile = self.connection.makefile("wb")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        endpoint = self.server
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, encoder(endpoint.registry), content_type)
            elif path == "/healthz":
                ok = endpoint.health()
                self._reply(200 if ok else 503, b"ok\n" if ok else b"supervisor loop wedged\n")
            elif path == "/readyz":
                ready, detail = endpoint.readiness()
                self._reply(200 if ready else 503, json.dumps(detail).encode() + b"\n",
                            "application/json")
            else:
                self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")
        except Exception as exc:
            log.warning("error serving %s: %s", path, exc)
            self._reply(503, f"unavailable: {exc}\n".encode())

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
