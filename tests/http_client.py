"""A tiny HTTP client for tests (TCP or unix socket), and a load loop that counts outcomes."""

from __future__ import annotations

import http.client
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def get(address: str, path: str = "/", timeout: float = 10.0, method: str = "GET",
        body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request to ``HOST:PORT`` or ``unix:PATH``; raises OSError on connection failure."""
    if address.startswith("unix:"):
        conn: http.client.HTTPConnection = _UnixConnection(address[5:], timeout)
    else:
        host, _, port = address.rpartition(":")
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@dataclass
class Load:
    """``clients`` threads requesting ``path`` in a loop until stopped."""

    address: str
    clients: int = 3
    path: str = "/"
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    pids: Counter[str] = field(default_factory=Counter)
    bodies: Counter[bytes] = field(default_factory=Counter)
    last_body: bytes = b""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, daemon=True)
                         for _ in range(self.clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                status, headers, body = get(self.address, self.path, timeout=10)
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            with self._lock:
                if status == 200:
                    self.ok += 1
                    self.pids[headers.get("x-pid", "?")] += 1
                    self.bodies[body] += 1
                    self.last_body = body
                else:
                    self.failures.append(f"HTTP {status}")
