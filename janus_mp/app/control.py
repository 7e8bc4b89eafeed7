"""The control socket: a unix socket speaking one JSON line in, one JSON line out.

Security: the socket is created mode 0600 inside a 0700 directory, and every peer's uid is
checked (SO_PEERCRED) against ours; requests are bounded (``MAX_REQUEST`` bytes, a read deadline)
and parsed as JSON only — nothing received is ever unpickled. A stale socket left by a killed
supervisor is reclaimed; a live one belongs to another supervisor and is refused.

Commands: status, restart, scale, stop, start, reload, shutdown, logs (see
``Deployment.handle``). ``logs`` with ``follow`` is the one streaming reply (:class:`Streaming`):
after its result, more JSON lines follow on the same connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from janus_mp.errors import ConfigError, JanusError
from janus_mp.private_fds import PrivateFds
from janus_mp.safe_paths import (
    check_private_directory,
    identity,
    reclaim_socket_path,
    unlink_if_same,
)

log = logging.getLogger("janus_mp.control")

MAX_REQUEST = 64 * 1024
READ_DEADLINE = 2.0
#: Connections served at once, at most: each holds a descriptor (and a thread) for up to
#: READ_DEADLINE, and a flood of them must not take the descriptors a worker's spawn needs.
#: The others wait in the backlog.
MAX_CONNECTIONS = 64
#: Connections the kernel queues for us while the accept thread is busy; past it, a client's
#: connect fails with EAGAIN and ``call`` retries until its timeout.
BACKLOG = 128


def default_run_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(base, "janus-mp") if base else f"/tmp/janus-mp-{os.getuid()}"


def default_socket_path(name: str = "janus-mp") -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return os.path.join(default_run_dir(), f"{safe}.sock")


class ControlServer:
    def __init__(self, path: str, handler: Callable[[dict[str, Any]], Any],
                 private_fds: PrivateFds | None = None) -> None:
        self.path = path
        self.handler = handler
        self.private_fds = private_fds or PrivateFds()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._identity: tuple[int, int] | None = None
        self._slots = threading.Semaphore(_connection_limit())

    def start(self) -> None:
        directory = os.path.dirname(self.path) or "."
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ConfigError("control_socket", f"cannot create {directory}: "
                              f"{exc.strerror or exc}") from None
        if os.path.abspath(directory) == os.path.abspath(default_run_dir()):
            check_private_directory(directory, "control_socket")
        self._reclaim_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # born 0600: no window where others could connect, and
        try:                         # no chmod afterwards (chmod would follow a swapped-in link)
            sock.bind(self.path)
        except OSError as exc:
            sock.close()
            raise ConfigError("control_socket", f"cannot bind {self.path}: "
                              f"{exc.strerror or exc}") from None
        finally:
            os.umask(old_umask)
        self._identity = identity(self.path)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        self.private_fds.add(sock.fileno())
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="janus-mp-control",
                                        daemon=True)
        self._thread.start()

    def _reclaim_stale(self) -> None:
        state = reclaim_socket_path(self.path)
        if state == "not a socket":
            raise ConfigError("control_socket", f"{self.path} exists and is not a socket")
        if state == "in use":
            raise JanusError(f"another janus-mp supervisor is running on {self.path}")
        if state == "reclaimed":  # nobody listened: left behind by a dead supervisor
            log.info("reclaimed stale control socket %s", self.path)

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        self.private_fds.discard(sock.fileno())
        sock.close()
        self._slots.release()  # wakes the accept thread if it waits for a free slot
        if self._thread is not None:
            self._thread.join(5)
        unlink_if_same(self.path, self._identity)  # not a file someone put there since

    def _serve(self) -> None:
        while True:
            self._slots.acquire()  # a connection in hand costs a descriptor: keep a reserve
            sock = self._sock
            if sock is None:
                return
            try:
                _wait_readable(sock)  # wait without the registry's lock...
                conn, _ = self.private_fds.accept(sock)  # ...then accept and register at once
                conn.setblocking(True)
            except BlockingIOError:
                self._slots.release()
                continue
            except (OSError, ValueError) as exc:
                self._slots.release()
                if isinstance(exc, ValueError):
                    return  # closed under us: shut down
                if self._sock is None or exc.errno in (22, 9):  # EINVAL/EBADF: shut down
                    return
                log.warning("control socket cannot accept: %s", exc)  # EMFILE: refuse, live on
                threading.Event().wait(0.05)
                continue
            try:
                threading.Thread(target=self._serve_one, args=(conn,), daemon=True,
                                 name="janus-mp-control-conn").start()
            except RuntimeError as exc:  # can't start new thread: a pids limit, for a moment
                self._close(conn)  # refuse this one, live on: the next connection tries again
                log.warning("control socket refused a connection: %s", exc)
                threading.Event().wait(0.05)

    def _serve_one(self, conn: socket.socket) -> None:
        try:
            self._serve_request(conn)
        finally:
            self._close(conn)

    def _close(self, conn: socket.socket) -> None:
        self.private_fds.discard(conn.fileno())
        conn.close()
        self._slots.release()

    def _serve_request(self, conn: socket.socket) -> None:
        if True:
            try:
                if not _peer_allowed(conn):
                    _send(conn, {"ok": False, "error": "permission denied"})
                    return
                request = _read_request(conn)
                result = self.handler(request)
                if isinstance(result, Streaming):
                    _send(conn, {"ok": True, "result": result.first})
                    _stream(conn, result)
                    return
                reply = {"ok": True, "result": result}
            except (JanusError, KeyError, ValueError, TypeError) as exc:
                reply = {"ok": False, "error": _one_line(exc)}
            except Exception as exc:  # a bug must not take the supervisor down
                log.exception("control request failed")
                reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
            with contextlib.suppress(OSError):
                _send(conn, reply)


@dataclass(frozen=True)
class Streaming:
    """A reply that goes on (``logs -f``): ``first`` is the result; then ``stream(send,
    client_gone)`` runs in the connection's own thread, sending one JSON object a line, until
    it returns. A client that stops reading blocks only that thread (and is dropped after
    SEND_DEADLINE); whatever feeds ``stream`` must not wait for it."""

    first: Any
    stream: Callable[[Callable[[dict[str, Any]], None], Callable[[], bool]], None]


#: Seconds a streaming reply may stay unable to send before its client is dropped.
SEND_DEADLINE = 30.0


def _stream(conn: socket.socket, streaming: Streaming) -> None:
    conn.settimeout(SEND_DEADLINE)
    poller = select.poll()
    poller.register(conn, select.POLLIN | select.POLLHUP)

    def client_gone() -> bool:  # a following client sends nothing: readable means it left
        return bool(poller.poll(0))

    with contextlib.suppress(OSError):
        streaming.stream(lambda obj: _send(conn, obj), client_gone)


def _peer_allowed(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (os.getuid(), 0)


def _read_request(conn: socket.socket) -> dict[str, Any]:
    conn.settimeout(READ_DEADLINE)
    data = b""
    while b"\n" not in data:
        try:
            chunk = conn.recv(4096)
        except TimeoutError:
            raise ValueError("request not received in time") from None
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError(f"request larger than {MAX_REQUEST} bytes")
    line = data.split(b"\n", 1)[0]
    try:
        request = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("request is not a JSON object on one line") from None
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        raise ValueError('request must be a JSON object with a "command" string')
    return request


def _send(conn: socket.socket, obj: Any) -> None:
    conn.sendall(json.dumps(obj, default=str).encode() + b"\n")


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and not isinstance(exc, JanusError) and exc.args:
        text = str(exc.args[0])  # KeyError's own str() adds quotes
    else:
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__


def call(path: str, command: str, timeout: float = 30.0, **args: Any) -> Any:
    """Client side: send one command, return its result or raise JanusError with its message.

    ``timeout`` bounds the whole exchange: connecting (retried while the socket's backlog is
    full), sending and reading the reply. Every failure is a one-line JanusError."""
    deadline = time.monotonic() + timeout
    sock = _connect(path, deadline, timeout)
    try:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        sock.sendall(json.dumps({"command": command, **args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        raise JanusError(f"no reply from the supervisor on {path} within {timeout:g}s") from None
    except OSError as exc:
        raise JanusError(f"talking to the supervisor on {path}: "
                         f"{exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        reply = json.loads(data)
    except json.JSONDecodeError:
        raise JanusError("the supervisor closed the connection without a reply") from None
    if not reply.get("ok"):
        raise JanusError(reply.get("error", "unknown error"))
    return reply.get("result")


def follow(path: str, command: str, timeout: float = 30.0, **args: Any) -> Iterator[Any]:
    """Client side of a streaming command: its result first, then every object the
    supervisor sends, until it closes the connection."""
    deadline = time.monotonic() + timeout
    sock = _connect(path, deadline, timeout)
    try:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        sock.sendall(json.dumps({"command": command, **args}).encode() + b"\n")
        reader = sock.makefile("rb")
        try:
            first = reader.readline()
        except TimeoutError:
            raise JanusError(f"no reply from the supervisor on {path} within "
                             f"{timeout:g}s") from None
        try:
            reply = json.loads(first)
        except json.JSONDecodeError:
            raise JanusError("the supervisor closed the connection without a reply") from None
        if not reply.get("ok"):
            raise JanusError(reply.get("error", "unknown error"))
        yield reply.get("result")
        sock.settimeout(None)
        for line in reader:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                return
    except OSError as exc:
        raise JanusError(f"talking to the supervisor on {path}: "
                         f"{exc.strerror or exc}") from None
    finally:
        sock.close()


def _connect(path: str, deadline: float, timeout: float) -> socket.socket:
    """A connected socket; waits and retries while the listen backlog is full (EAGAIN: many
    clients at once, or a supervisor too busy to accept) until ``deadline``."""
    pause = 0.005
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            sock.close()
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise JanusError(f"no supervisor is listening on {path}") from None
        except PermissionError:
            sock.close()
            raise JanusError(f"permission denied on {path}") from None
        except OSError as exc:
            sock.close()
            raise JanusError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise JanusError(f"the supervisor on {path} did not accept the connection within "
                             f"{timeout:g}s (its connection backlog stayed full)")
        _retry_pause(min(pause, remaining))
        pause = min(pause * 2, 0.1)


def _retry_pause(seconds: float) -> None:
    time.sleep(seconds)


def _connection_limit() -> int:
    """MAX_CONNECTIONS, or a quarter of the descriptor limit if that is smaller."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(4, min(MAX_CONNECTIONS, soft // 4))


def _wait_readable(sock: socket.socket) -> None:
    """poll, not select: select() cannot watch an fd numbered 1024 or more, and a supervisor
    with a thousand workers has thousands of fds."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poller.poll()
