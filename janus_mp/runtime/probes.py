"""Running health probes off the loop: a few threads, results back through the call pipe.

    loop: RunProbe ─► ProbeRunner.run (resolves the address now) ─► thread pool
                                                                      │ http.client GET / TCP
                                                                      │ connect / a command
    loop: ProbeFinished ◄── Loop.call(wait=False) ◄───────────────────┘

The loop never waits for a probe: it hands the probe to the pool and goes on. Every probe is
bounded as a whole by the check's ``timeout``: a socket timeout bounds one read only, so
:class:`_Deadlines` cuts the probe's socket at its deadline (a server that answers 200 and
drips its body would hold the probe for ever); a command is killed, with its whole process
group, whenever it ends. A service has at most ``PER_SERVICE`` probes running, the rest of its
probes wait in its own queue: one slow service cannot take every thread. Client sockets are
created as private fds, so a worker forked meanwhile holds no copy that would keep a probed
connection open. The HTTP exchange is http.client's; janus-mp parses nothing itself.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import logging
import os
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable

from janus_mp.core import events as ev
from janus_mp.core.actions import RunProbe
from janus_mp.core.health_check import HealthCheck, ProbeKind
from janus_mp.private_fds import PrivateFds
from janus_mp.runtime.helper_children import HelperChildren

log = logging.getLogger("janus_mp.probes")

#: Probes running at once, across all services; more wait their turn in the pool's queue.
MAX_PROBE_THREADS = 8
#: Probes of one service running at once: the others' probes always find a thread.
PER_SERVICE = 2
#: Bytes of an HTTP probe's response body read (and thrown away) before closing.
MAX_BODY = 64 * 1024

Address = tuple[str, int] | str  # (host, port), or a unix socket path


class ProbeRunner:
    def __init__(self, private_fds: PrivateFds, children: HelperChildren,
                 deliver: Callable[[ev.ProbeFinished], None]) -> None:
        self._private_fds = private_fds
        self._children = children
        self._deliver = deliver
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False
        self._running: Counter[str] = Counter()
        self._waiting: dict[str, deque[tuple[RunProbe, tuple[str, ...]]]] = {}
        self._deadlines = _Deadlines()

    def run(self, action: RunProbe, service: str, listeners: tuple[str, ...]) -> None:
        """Start one probe (loop thread); its ProbeFinished arrives later."""
        with self._lock:
            if self._closed:
                return
            if self._running[service] >= PER_SERVICE:
                self._waiting.setdefault(service, deque()).append((action, listeners))
                return
            self._submit(action, service, listeners)

    def _submit(self, action: RunProbe, service: str, listeners: tuple[str, ...]) -> None:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                MAX_PROBE_THREADS, thread_name_prefix="janus-mp-probe")
        self._running[service] += 1
        self._pool.submit(self._probe, action, service, listeners)

    def close(self) -> None:
        """No new probe starts; running ones end within their timeout, unanswered."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            self._waiting.clear()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        self._deadlines.close()

    def _probe(self, action: RunProbe, service: str, listeners: tuple[str, ...]) -> None:
        try:
            healthy, detail = self._check(action, service, listeners)
        except Exception as exc:  # a probe bug must not leave the worker unprobed forever
            log.exception("%s[%d]: health probe failed to run", service, action.slot)
            healthy, detail = False, f"probe error: {type(exc).__name__}: {exc}"
        with self._lock:
            self._running[service] -= 1
            waiting = self._waiting.get(service)
            if waiting and not self._closed:
                queued, queued_listeners = waiting.popleft()
                self._submit(queued, service, queued_listeners)
            if self._closed:
                return
            self._deliver(ev.ProbeFinished(action.worker, healthy, detail))

    def _check(self, action: RunProbe, service: str,
               listeners: tuple[str, ...]) -> tuple[bool, str]:
        check = action.check
        if check.kind is ProbeKind.COMMAND:
            return self._command(action, service)
        address = probe_address(check, action.slot, listeners)
        if address is None:
            return False, "no address to probe: the service has no TCP or unix listener"
        deadline = time.monotonic() + check.timeout
        try:
            sock = self._connect(address, check.timeout)
        except OSError as exc:
            return False, f"cannot connect to {_show(address)}: {exc.strerror or exc}"
        try:
            if check.kind is ProbeKind.TCP:
                return True, f"connected to {_show(address)}"
            self._deadlines.watch(sock, deadline)
            healthy, detail = _http_get(sock, address, check)
            if not self._deadlines.forget(sock):  # cut at its deadline
                return False, f"GET {check.http} on {_show(address)}: no whole answer " \
                              f"within {check.timeout:g}s"
            return healthy, detail
        finally:
            self._deadlines.forget(sock)  # before the close: its fd number may be reused
            self._private_fds.close_socket(sock)

    def _connect(self, address: Address, timeout: float) -> socket.socket:
        if isinstance(address, str):
            sock = self._private_fds.new_socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
            sock = self._private_fds.new_socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError:
            self._private_fds.close_socket(sock)
            raise
        return sock

    def _command(self, action: RunProbe, service: str) -> tuple[bool, str]:
        check = action.check
        env = dict(os.environ, JANUS_SERVICE=service, JANUS_SLOT=str(action.slot),
                   JANUS_PID=str(action.pid or ""))
        try:
            code = self._children.run(check.command or (), env, check.timeout, quiet=True,
                                      kill_group=True)
        except OSError as exc:
            return False, f"cannot run {check.describe()}: {exc.strerror or exc}"
        if code is None:
            return False, f"{check.describe()} ran past its {check.timeout:g}s timeout"
        return code == 0, f"{check.describe()} exited {code}"


class _Deadlines:
    """Shuts probe sockets down at their deadlines, from one thread: the read blocked on it
    returns at once. A socket is forgotten before it is closed, so a number reused by another
    fd is never shut down."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[socket.socket, float] = {}
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, sock: socket.socket, deadline: float) -> None:
        with self._cond:
            self._due[sock] = deadline
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="janus-mp-probe-deadlines")
                self._thread.start()
            self._cond.notify()

    def forget(self, sock: socket.socket) -> bool:
        """Stop watching ``sock``; False if its deadline had already cut it."""
        with self._cond:
            return self._due.pop(sock, None) is not None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for sock, deadline in list(self._due.items()):
                    if deadline <= now:
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                        del self._due[sock]
                nearest = min(self._due.values(), default=None)
                self._cond.wait(None if nearest is None else max(nearest - now, 0.0))


def probe_address(check: HealthCheck, slot: int, listeners: tuple[str, ...]) -> Address | None:
    """Where to probe slot ``slot``: ``port``/``tcp`` + slot, or the service's first listener."""
    if check.tcp is not None:
        return check.host, check.tcp + slot
    if check.port is not None:
        return check.host, check.port + slot
    for listener in listeners:
        if listener.startswith("unix:"):
            return listener[len("unix:"):]
        host, sep, port = listener.rpartition(":")
        if sep and port.isdigit():
            host = host.strip("[]")
            if host in ("0.0.0.0", ""):
                host = "127.0.0.1"
            elif host == "::":
                host = "::1"
            return host, int(port)
    return None


class _ConnectedHTTP(http.client.HTTPConnection):
    """http.client over a socket we connected ourselves (a private fd, or a unix socket)."""

    def __init__(self, sock: socket.socket, host: str, timeout: float) -> None:
        super().__init__(host, timeout=timeout)
        self.sock = sock

    def connect(self) -> None:  # already connected
        return

    def close(self) -> None:  # the probe closes the socket (it is a registered private fd)
        self.sock = None


def _http_get(sock: socket.socket, address: Address, check: HealthCheck) -> tuple[bool, str]:
    host = address[0] if isinstance(address, tuple) else "localhost"
    conn = _ConnectedHTTP(sock, host, check.timeout)
    try:
        conn.request("GET", check.http or "/", headers={"User-Agent": "janus-mp-probe",
                                                         "Connection": "close"})
        response = conn.getresponse()
        response.read(MAX_BODY)
    except (OSError, http.client.HTTPException) as exc:
        return False, f"GET {check.http} on {_show(address)}: {type(exc).__name__}: {exc}"
    finally:
        conn.close()
    status = f"GET {check.http} on {_show(address)}: HTTP {response.status}"
    return 200 <= response.status < 400, status


def _show(address: Address) -> str:
    return f"unix:{address}" if isinstance(address, str) else f"{address[0]}:{address[1]}"
