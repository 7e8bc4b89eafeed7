"""The control socket: a unix socket speaking one JSON line in, one JSON line out.

Security: the socket is created mode 0600 inside a 0700 directory, and every peer's uid is
checked (SO_PEERCRED) against ours; requests are bounded in size, time and nesting
(control_wire.py) and parsed as JSON only — nothing received is ever unpickled. A stale
socket left by a killed supervisor is reclaimed; a live one belongs to another supervisor and
is refused.

Commands: status, restart, scale, stop, start, reload, upgrade, shutdown, events, logs (see
``Deployment.handle``). Two replies stream, both a :class:`StreamReply`: ``events`` and
``logs`` with ``follow``. Each answers ``{"ok": true, "result": ..., "stream": true}`` first
and then one JSON line per item, on the same connection, until the stream ends or the client goes
away or stops reading for ``SEND_DEADLINE``. A streaming client gives its connection place back
once its request is read and holds one of ``MAX_FOLLOWERS`` places instead, so streams never
take the places one-shot commands need; one client, :func:`follow`, reads them both.

In an upgrade the listening socket is shared by two supervisors: the new one adopts it
(``inherited_fd``) and the old one stops with ``keep_path``. Neither ever calls ``shutdown()``
on it — that would stop the socket itself, for both — so the accept thread is woken by a pipe.
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

from janus_mp.app.control_wire import one_line, read_request, send
from janus_mp.errors import ConfigError, JanusError
from janus_mp.private_fds import PrivateFds
from janus_mp.safe_paths import (
    check_private_directory,
    identity,
    reclaim_socket_path,
    unlink_if_same,
)

log = logging.getLogger("janus_mp.control")

#: Connections read and answered at once, at most: each holds a descriptor (and a thread) for
#: up to READ_DEADLINE, and a flood of them must not take the descriptors a worker's spawn
#: needs. The others wait in the backlog. A stream (``events -f``, ``logs -f``) gives its
#: place back once its request is read, so one-shot commands always find one.
MAX_CONNECTIONS = 64
#: Streams followed at once, at most, on places of their own; one more is refused.
MAX_FOLLOWERS = 16
#: At stop, how long connections being answered get to send their reply.
REPLY_GRACE = 1.0
#: Connections the kernel queues for us while the accept thread is busy; past it, a client's
#: connect fails with EAGAIN and ``call`` retries until its timeout.
BACKLOG = 128


#: How often an idle stream looks whether its client is still there.
STREAM_IDLE_CHECK = 1.0


@dataclass
class StreamReply:
    """A handler's reply that is many lines: ``first`` is the result of the opening line, then
    ``items`` yields JSON-able objects, or None when it has nothing for a while (the server
    then checks the client is still connected). ``items`` runs in the connection's own thread:
    a client that stops reading blocks only that thread (and is dropped after SEND_DEADLINE),
    so whatever feeds ``items`` must not wait for it. ``close`` runs when the stream ends,
    however it ends — refused for want of a follower's place too."""

    items: Iterator[Any]
    close: Callable[[], None]
    #: The items end by themselves (``events`` without follow): answered on the connection's
    #: own place, like any one-shot command, never refused for want of a follower's place.
    finite: bool = False
    first: Any = None


def default_run_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(base, "janus-mp") if base else f"/tmp/janus-mp-{os.getuid()}"


def default_socket_path(name: str = "janus-mp") -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return os.path.join(default_run_dir(), f"{safe}.sock")


class ControlServer:
    def __init__(self, path: str, handler: Callable[[dict[str, Any]], Any],
                 private_fds: PrivateFds | None = None,
                 inherited_fd: int | None = None) -> None:
        self.path = path
        #: The listening socket handed over by the supervisor before us (an upgrade).
        self.inherited_fd = inherited_fd
        self.handler = handler
        self.private_fds = private_fds or PrivateFds()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._identity: tuple[int, int] | None = None
        self._slots = threading.Semaphore(_connection_limit())
        self._followers = threading.Semaphore(MAX_FOLLOWERS)
        self._wake_r = self._wake_w = -1
        self._answering: set[threading.Thread] = set()
        self._answering_lock = threading.Lock()

    def start(self) -> None:
        if self.inherited_fd is not None:
            sock = socket.socket(fileno=self.inherited_fd)
            sock.set_inheritable(False)
            self.inherited_fd = None
            self._identity = identity(self.path)
        else:
            sock = self._bind()
        sock.setblocking(False)
        self.private_fds.add(sock.fileno())
        self._sock = sock
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.private_fds.add(self._wake_r)
        self.private_fds.add(self._wake_w)
        self._thread = threading.Thread(target=self._serve, name="janus-mp-control",
                                        daemon=True)
        self._thread.start()

    @property
    def fileno(self) -> int | None:
        """The listening socket's fd (to hand it over), None when stopped."""
        return self._sock.fileno() if self._sock is not None else None

    def _bind(self) -> socket.socket:
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
        return sock

    def _reclaim_stale(self) -> None:
        state = reclaim_socket_path(self.path)
        if state == "not a socket":
            raise ConfigError("control_socket", f"{self.path} exists and is not a socket")
        if state == "in use":
            raise JanusError(f"another janus-mp supervisor is running on {self.path}")
        if state == "reclaimed":  # nobody listened: left behind by a dead supervisor
            log.info("reclaimed stale control socket %s", self.path)

    def stop(self, *, keep_path: bool = False) -> None:
        """Stop accepting, give replies being sent REPLY_GRACE, remove the socket's file
        (unless ``keep_path``: another supervisor listens on it now)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")  # wakes the accept thread out of poll
        self._slots.release()  # wakes the accept thread if it waits for a free slot
        if self._thread is not None:
            self._thread.join(5)
        self.private_fds.discard(sock.fileno())
        sock.close()
        for fd in (self._wake_r, self._wake_w):
            self.private_fds.discard(fd)
            os.close(fd)
        self._wake_r = self._wake_w = -1
        deadline = time.monotonic() + REPLY_GRACE
        with self._answering_lock:
            answering = list(self._answering - {threading.current_thread()})
        for thread in answering:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not keep_path:
            unlink_if_same(self.path, self._identity)  # not a file someone put there since

    def _serve(self) -> None:
        while True:
            self._slots.acquire()  # a connection in hand costs a descriptor: keep a reserve
            sock = self._sock
            if sock is None:
                return
            try:
                if not _wait_readable(sock, self._wake_r):  # wait without the lock...
                    self._slots.release()
                    return  # woken: stopping
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
                thread = threading.Thread(target=self._serve_one, args=(conn,), daemon=True,
                                          name="janus-mp-control-conn")
                with self._answering_lock:
                    self._answering.add(thread)
                thread.start()
            except RuntimeError as exc:  # can't start new thread: a pids limit, for a moment
                with self._answering_lock:
                    self._answering.discard(thread)
                self._close(conn)  # refuse this one, live on: the next connection tries again
                log.warning("control socket refused a connection: %s", exc)
                threading.Event().wait(0.05)

    def _serve_one(self, conn: socket.socket) -> None:
        holds_slot = True
        try:
            stream = self._serve_request(conn)
            if stream is not None:
                # A follower lives on a place of its own: the connection slot goes back now.
                self._slots.release()
                holds_slot = False
                try:
                    stream()
                finally:
                    self._followers.release()
        finally:
            self.private_fds.discard(conn.fileno())
            conn.close()
            if holds_slot:
                self._slots.release()
            with self._answering_lock:
                self._answering.discard(threading.current_thread())

    def _close(self, conn: socket.socket) -> None:
        self.private_fds.discard(conn.fileno())
        conn.close()
        self._slots.release()

    def _serve_request(self, conn: socket.socket) -> Callable[[], None] | None:
        """Answer a one-shot request; for a stream, send nothing and return what sends it
        (run by the caller once it holds a follower's place)."""
        try:
            if not _peer_allowed(conn):
                send(conn, {"ok": False, "error": "permission denied"})
                return None
            request = read_request(conn)
            result = self.handler(request)
            if isinstance(result, StreamReply) and result.finite:
                _stream(conn, result)
                return None
            if isinstance(result, StreamReply):
                if not self._followers.acquire(blocking=False):
                    result.close()
                    raise JanusError(f"too many followers ({MAX_FOLLOWERS}): try again later")
                return lambda: _stream(conn, result)
            reply = {"ok": True, "result": result}
        except (JanusError, KeyError, ValueError, TypeError) as exc:
            reply = {"ok": False, "error": one_line(exc)}
        except Exception as exc:  # a bug must not take the supervisor down
            log.exception("control request failed")
            reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        with contextlib.suppress(OSError):
            send(conn, reply)
        return None


def _stream(conn: socket.socket, reply: StreamReply) -> None:
    """Send the stream's items as lines until it ends or the client has gone."""
    try:
        conn.settimeout(SEND_DEADLINE)  # a client that stops reading is dropped
        send(conn, {"ok": True, "result": reply.first, "stream": True})
        for item in reply.items:
            if item is None:
                if _client_gone(conn):
                    return
                continue
            send(conn, item)
    except OSError:
        return  # the client went away mid-line
    finally:
        reply.close()


def _client_gone(conn: socket.socket) -> bool:
    """Has a streaming client hung up? (It sends nothing after its request: EOF or an error
    means gone; stray bytes are left unread.)"""
    poller = select.poll()
    poller.register(conn, select.POLLIN | select.POLLHUP | select.POLLERR)
    if not poller.poll(0):
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


#: Seconds a streaming reply may stay unable to send before its client is dropped (a
#: client that never reads holds a thread and a follower's place until then).
SEND_DEADLINE = 10.0


def _peer_allowed(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (os.getuid(), 0)


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
        while b"\n" not in data:  # the reply is its first line (a stream's items may follow)
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
    return _result(data.split(b"\n", 1)[0])


def _result(line: bytes) -> Any:
    """The result of a reply line; a refusal (or no reply) raises its one-line error."""
    try:
        reply = json.loads(line)
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
        yield _result(first)
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


def _wait_readable(sock: socket.socket, wake_fd: int) -> bool:
    """Wait until ``sock`` can accept (True) or ``wake_fd`` is written (False: stopping).
    poll, not select: select() cannot watch an fd numbered 1024 or more, and a supervisor
    with a thousand workers has thousands of fds."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poller.register(wake_fd, select.POLLIN)
    return all(fd != wake_fd for fd, _ in poller.poll())
