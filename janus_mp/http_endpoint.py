"""The supervisor's HTTP endpoint: /metrics, /healthz, /readyz, in background threads.

Never on the supervisor loop: handlers ask the loop through ``call_in_loop`` with a deadline.
Slow or hostile clients are bounded: a per-connection socket timeout (slowloris), a header size
limit (http.server's own), and a cap on concurrent connections beyond which new ones are closed
at once, so a scrape still gets through while hundreds of idle sockets are open.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from janus_mp.errors import JanusError

log = logging.getLogger("janus_mp.http")

READ_TIMEOUT = 5.0
MAX_CONNECTIONS = 32


class MetricsServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, registry: CollectorRegistry,
                 health: Callable[[], bool],
                 readiness: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self.host = host
        self.requested_port = port
        self.registry = registry
        self.health = health
        self.readiness = readiness
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"endpoint": self})
        try:
            self._server = _Server((self.host, self.requested_port), handler)
        except OSError as exc:
            raise JanusError(f"cannot serve metrics on {self.host}:{self.requested_port}: "
                             f"{exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._accept_loop, args=(self._server,),
                                        name="janus-mp-http", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def fileno(self) -> int:
        return self._server.fileno() if self._server is not None else -1

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        try:
            server.socket.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(5)
        server.server_close()

    @staticmethod
    def _accept_loop(server: _Server) -> None:
        """Block in accept(): no poll interval, so an idle endpoint costs no wake-ups."""
        while True:
            try:
                request, address = server.socket.accept()
            except OSError:
                return  # shut down
            try:
                server.process_request(request, address)
            except Exception:
                server.shutdown_request(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: refuse at once rather than queue behind
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    endpoint: MetricsServer
    timeout = READ_TIMEOUT  # socket timeout per read: a trickling client is cut off
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, encoder(self.endpoint.registry), content_type)
            elif path == "/healthz":
                ok = self.endpoint.health()
                self._reply(200 if ok else 503, b"ok\n" if ok else b"supervisor loop wedged\n")
            elif path == "/readyz":
                ready, detail = self.endpoint.readiness()
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
