"""Workers forked from a small process that writes nothing: the zygote.

    supervisor ── socketpair: "fork", fds (SCM_RIGHTS) ──► zygote ── clone(CLONE_PARENT) ──┐
       ▲  ◄──────────── the new pid ───────────────────────  │                            │
       │                                                     (writes nothing, sleeps)     ▼
       └──────── parent of the worker: pidfd, wait, exit status ◄──────────────── worker

Every page a parent writes after a fork becomes the child's own: the old copy stays with the
child, the parent takes a new one. The supervisor writes all the time (its loop, its tables,
every spawn's bookkeeping), so a worker it forks ends up sole owner of the supervisor's pages
as they were at that fork — megabytes per worker — and every fork copies the page tables of a
heap that grows with the number of workers. The zygote is forked from the supervisor once,
before the loop starts, with the services' code already imported; afterwards it only sleeps in
``recvmsg`` and forks. Its children share its pages with each other and with it.

A worker must still be the supervisor's own child: its exit status, its pidfd, process groups
and the orphan rules all rest on that. ``os.fork`` cannot say so; the zygote calls the raw
``clone`` system call with ``CLONE_PARENT`` (through ctypes, the GIL held) and runs the
interpreter's own before/after-fork steps around it, as ``os.fork`` does. The zygote is
single-threaded, so no lock of glibc's can be held at that moment (glibc's ``pthread_atfork``
handlers do not run around a raw clone).

What a worker needs travels as the spawn start method sends it (``multiprocess``'s reducers
turn its pipe, sockets and shared memory into fds, passed here with SCM_RIGHTS), in a memfd
(never in the socket's own bytes). Objects the zygote already holds (the service objects and
hooks registered before it was forked) travel as references, so a service that cannot be
pickled still runs in a zygote's worker. The zygote builds the worker before it forks, so the
child starts with it made instead of writing to shared pages to build it.

The zygote dies with the supervisor (``PR_SET_PDEATHSIG``, and end of file on its socket). If
it dies or stops answering, the supervisor forks a new one; a worker it cannot make (an
unpicklable service registered later, a kernel that refuses the clone) is forked by the
supervisor itself, as without a zygote.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import gc
import io
import logging
import os
import pickle
import platform
import select
import signal
import socket
import struct
import sys
import threading
from collections.abc import Iterable
from typing import Any

import multiprocess.heap  # noqa: F401 - what unpickling a worker's shared memory imports: in
import multiprocess.sharedctypes  # noqa: F401 - the zygote once, not in every worker
from multiprocess import context as mp_context
from multiprocess import reduction as mp_reduction

from janus_mp import osproc

log = logging.getLogger("janus_mp.supervisor")

#: Raw clone's number where the kernel's argument order makes (flags, 0, 0, 0, 0) valid.
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(platform.machine())
_CLONE_PARENT = 0x00008000
_PR_SET_PDEATHSIG = 1
#: How long the supervisor waits for the zygote's answer before it replaces the zygote.
ANSWER_TIMEOUT = 2.0
#: A request's fds at most (SCM_MAX_FD is 253): a worker's pipe, output pipes, shared
#: memory chunks, listeners, its lifeline.
_MAX_FDS = 128
_REQUEST = struct.Struct("=I")  # how many fds follow
_ANSWER = struct.Struct("=q")  # the new pid, or -errno, or:
_UNLOADABLE = -(1 << 40)  # the zygote could not load what it was sent
#: Signals a terminal or a service manager sends to a whole group or cgroup: the zygote has
#: nothing to stop (it dies with the supervisor); its children reset them (runtime/worker.py).
_IGNORED = ("SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGTTIN",
            "SIGTTOU", "SIGWINCH")

#: In the zygote and its children: the objects sent by reference (id in the supervisor → the
#: zygote's copy of the same object), and the fds a new worker received.
_known: dict[int, Any] = {}
_received: list[int] = []
#: In the zygote and its children: every prometheus metric the supervisor held when it forked
#: the zygote (runtime.metrics' worker_init moves them to the worker's files).
_metrics_made_before: list[Any] = []


def available() -> bool:
    """Whether this machine can fork workers from a zygote."""
    return _SYS_CLONE is not None and sys.platform == "linux" and hasattr(os, "memfd_create")


class ZygoteUnavailable(Exception):
    """This worker must be forked by the supervisor itself (said why)."""


class Zygote:
    """The supervisor's handle on its zygote: start it, ask it for workers, stop it."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self._pidfd: int | None = None  # its identity: the pid alone may be reaped and reused
        self._sock: socket.socket | None = None
        self._known: dict[int, Any] = {}
        self._close_fds: tuple[int, ...] = ()
        #: Every prometheus metric found when the zygote was forked (see start()).
        self.metrics_made_before = _metrics_made_before

    def start(self, known: Iterable[Any], close_fds: Iterable[int] = ()) -> int:
        """Fork the zygote; ``known`` objects (services, hooks) reach workers by reference.
        ``close_fds``: the supervisor's own fds, which the zygote closes (its workers get
        their listeners and lifelines passed); it keeps the rest, so that its workers inherit
        what the program opened, as workers the supervisor forks do."""
        from janus_mp.metrics import premade

        self._known = {id(obj): obj for obj in known if obj is not None}
        self._close_fds = tuple(close_fds)
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        supervisor = os.getpid()
        _known.clear()
        _known.update(self._known)
        # Walked here, once: a walk over every object in a worker would write to every page
        # it shares with the zygote.
        _metrics_made_before[:] = premade.every_metric()
        pid = os.fork()
        if pid == 0:  # the zygote: never returns
            code = 1
            try:
                parent.close()
                osproc.close_fds(self._close_fds)
                _serve(child, supervisor)
                code = 0
            finally:
                os._exit(code)
        child.close()
        parent.settimeout(ANSWER_TIMEOUT)
        self._sock, self.pid, self._pidfd = parent, pid, osproc.pidfd_open(pid)
        return pid

    @property
    def fileno(self) -> int | None:
        """The supervisor's end of the zygote's socket (a worker it forks itself closes it)."""
        return self._sock.fileno() if self._sock is not None else None

    def fork(self, process: Any, lifeline: int | None) -> int:
        """Start ``process`` (an unstarted multiprocess Process whose only argument is a
        WorkerSpec) as a child of the supervisor; its pid. Raises ZygoteUnavailable when this
        worker must be forked by the supervisor, OSError when the kernel refused a process."""
        if self._sock is None:
            raise ZygoteUnavailable("no zygote")
        passed = _PassedFds()
        spec = process._args[0]
        saved = spec.lifeline
        try:
            if lifeline is not None:
                spec.lifeline = _FdRef(passed.duplicate_for_child(lifeline))
            payload = _dumps(process, passed, self._known)
        finally:
            spec.lifeline = saved
        memfd = os.memfd_create("janus-mp-worker", os.MFD_CLOEXEC)
        try:
            _write_all(memfd, payload)
            fds = [memfd, *passed.fds]
            try:
                answer = self._ask(fds)
            except (OSError, EOFError) as exc:  # dead, or wedged past the timeout
                why = "stopped answering" if isinstance(exc, TimeoutError) else "died"
                self._replace(why)
                try:
                    answer = self._ask(fds)  # once, of the new one
                except (OSError, EOFError):
                    self.close()
                    raise ZygoteUnavailable(f"the zygote {why}, and so did a new one") \
                        from None
        finally:
            os.close(memfd)
        (pid,) = _ANSWER.unpack(answer)
        if pid == _UNLOADABLE:
            raise ZygoteUnavailable("the zygote could not load it")
        if pid < 0:
            raise OSError(-pid, os.strerror(-pid))
        return int(pid)

    def _ask(self, fds: list[int]) -> bytes:
        if self._sock is None:
            raise EOFError("no zygote")
        os.lseek(fds[0], 0, os.SEEK_SET)
        self._sock.sendmsg([_REQUEST.pack(len(fds))],
                           [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        return _recv_exactly(self._sock, _ANSWER.size)

    def _replace(self, why: str) -> None:
        old = self.pid
        self.close()
        log.warning("the zygote (pid %s) %s: forking a new one", old, why)
        self.start(self._known.values(), self._close_fds)

    def close(self) -> None:
        """Stop the zygote (end of file on its socket) and reap it."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        pid, pidfd, self.pid, self._pidfd = self.pid, self._pidfd, None, None
        if pid is None or pidfd is None:
            return
        try:
            if not select.select([pidfd], [], [], 1.0)[0]:
                with contextlib.suppress(OSError):  # stopped or wedged
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                select.select([pidfd], [], [], 1.0)
            osproc.reap_nonblocking(pid)  # unless the orphan reaper took it already
        finally:
            os.close(pidfd)


# -- the supervisor's side of a request ----------------------------------------------------------
class _PassedFds:
    """Stands in for multiprocess's spawning Popen while a worker is pickled: each fd its
    reducers meet is listed, to be passed with SCM_RIGHTS, and pickled as its index."""

    def __init__(self) -> None:
        self.fds: list[int] = []

    def duplicate_for_child(self, fd: int) -> int:
        self.fds.append(fd)
        return len(self.fds) - 1

    DupFd: type[Any]  # set below: multiprocess's reducers build one per fd


class _InheritedFd:
    """An fd passed to the new worker, by its index among those received."""

    def __init__(self, index: int) -> None:
        self.index = index

    def detach(self) -> int:
        return _received[self.index]


_PassedFds.DupFd = _InheritedFd


class _FdRef:
    """A raw fd of the spec (its lifeline), as the new worker numbers it."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return _received_fd, (self.index,)


def _received_fd(index: int) -> int:
    return _received[index]


class _Pickler(pickle.Pickler):
    """The stdlib's C pickler with multiprocess's reducers (fds, shared memory, connections),
    and objects the zygote holds sent by reference."""

    def __init__(self, file: io.BytesIO, known: dict[int, Any]) -> None:
        super().__init__(file, pickle.HIGHEST_PROTOCOL)
        self.dispatch_table = {**mp_reduction.ForkingPickler._copyreg_dispatch_table,
                               **mp_reduction.ForkingPickler._extra_reducers}
        self._known = known

    def persistent_id(self, obj: Any) -> int | None:
        return id(obj) if id(obj) in self._known else None


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        return _known[pid]


def _dumps(process: Any, passed: _PassedFds, known: dict[int, Any]) -> bytes:
    buffer = io.BytesIO()
    mp_context.set_spawning_popen(passed)
    try:
        _Pickler(buffer, known).dump(process)
    except Exception as exc:  # an object that cannot travel: the supervisor forks this one
        raise ZygoteUnavailable(f"cannot send it to the zygote: {type(exc).__name__}: "
                                f"{exc}") from None
    finally:
        mp_context.set_spawning_popen(None)
    return buffer.getvalue()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data


# -- the zygote ---------------------------------------------------------------------------------
def _serve(sock: socket.socket, supervisor: int) -> None:
    """The zygote's whole life: one fork per request until the supervisor goes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor:
        return  # the supervisor died before the death signal was armed
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # a terminal's ^C is for the supervisor's group, not this one
    if threading.current_thread() is threading.main_thread():
        signal.set_wakeup_fd(-1)
        for name in _IGNORED:
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _set_title("janus-mp: zygote")
    raw_clone = ctypes.PyDLL(None, use_errno=True).syscall  # PyDLL: the GIL stays held
    raw_clone.restype = ctypes.c_long
    raw_clone.argtypes = [ctypes.c_long] * 6
    # Looked up once here: a lookup in each child would build them in each child.
    before, after_in_parent, after_in_child = (
        ctypes.pythonapi.PyOS_BeforeFork, ctypes.pythonapi.PyOS_AfterFork_Parent,
        ctypes.pythonapi.PyOS_AfterFork_Child)
    # Nothing the zygote inherited is ever collected (it would write to every object's
    # header, taking pages away from the workers that share them): only its own garbage is.
    gc.disable()
    gc.freeze()
    while True:
        try:
            fds = _receive(sock)
        except EOFError:
            return
        # The worker is built here, before the fork: its child starts with it made (a build
        # in each child writes to pages shared with the zygote, one copy-on-write fault per
        # page), and the zygote rebuilds it each time in pages that are its own already.
        try:
            process = _load(fds)
        except Exception:
            osproc.close_fds(fds)
            sock.sendall(_ANSWER.pack(_UNLOADABLE))
            continue
        before()
        pid = raw_clone(_SYS_CLONE, _CLONE_PARENT | signal.SIGCHLD, 0, 0, 0, 0)
        if pid == 0:
            after_in_child()
            _become(sock, process)  # never returns
        err = ctypes.get_errno()
        after_in_parent()
        sock.sendall(_ANSWER.pack(pid if pid > 0 else -(err or 1)))
        del process  # its pipes and sockets close with it; then the rest of what came
        osproc.close_fds(fds)
        gc.collect()  # the zygote's own young objects only: the inherited ones are frozen


def _receive(sock: socket.socket) -> list[int]:
    fds = array.array("i")
    message, ancillary, _flags, _addr = sock.recvmsg(
        _REQUEST.size, socket.CMSG_SPACE(_MAX_FDS * fds.itemsize))
    if len(message) < _REQUEST.size:
        raise EOFError("the supervisor is gone")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return list(fds)


def _load(fds: list[int]) -> Any:
    """The worker's Process object, read from the memfd (the first fd) with its fds."""
    memfd, *passed = fds
    _received[:] = passed
    with open(memfd, "rb", closefd=False) as payload:
        process = _Unpickler(payload).load()
    metrics = process._args[0].metrics
    if metrics is not None:
        metrics.use_metrics_made_before(_metrics_made_before)
    return process


def _become(sock: socket.socket, process: Any) -> None:
    """In the new worker: run it. Never returns."""
    code = 1
    try:
        sock.close()
        gc.enable()
        code = process._bootstrap(parent_sentinel=None)
    finally:
        os._exit(code)


def _set_title(title: str) -> None:
    with contextlib.suppress(ImportError):
        import setproctitle

        setproctitle.setproctitle(title)
