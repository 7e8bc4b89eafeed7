"""The body of a pool's worker: an ordinary janus-mp service that runs tasks.

    dispatcher (supervisor)                    worker (this service's run)
    ───────────────────────                    ──────────────────────────
    listening AF_UNIX socket ◄── connect ───── after the initializer: HELLO
    TASK(id, call) ─────────────────────────► unpickle, call, pickle
                   ◄──────────────────────── RESULT(id, value) / RAISED(id, exc+traceback)
    SIGINT (cooperative cancel) ────────────► TaskInterrupted in the running call
                   ◄──────────────────────── INTERRUPTED(id)
    RETIRE ─────────────────────────────────► ctx.recycle(): a successor is started
    token cancelled (stop, recycle) ────────► read side shut: BYE, return

The worker reaches the dispatcher by the address in its service (a plain string), never by an
inherited fd, so it does not matter how it was forked. It holds one task at a time: the task
it was sent is the task it runs.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Callable
from typing import Any

from janus_mp.pools import payloads
from janus_mp.pools.frames import FrameReader, Kind, frame
from janus_mp.service import JanusService, WorkerContext
from janus_mp.targets import import_target


class TaskInterrupted(BaseException):
    """Raised inside a running task when its pool cancels it (a BaseException, like
    KeyboardInterrupt, so that ``except Exception`` in the task does not swallow it)."""


class TaskLoop(JanusService):
    """Runs the tasks its pool's dispatcher sends; one instance per pool."""

    can_heartbeat = False  # a task may run for long: no watchdog

    def __init__(self, name: str, address: str,
                 initializer: Callable[..., Any] | str | None = None,
                 initargs: tuple[Any, ...] = ()) -> None:
        self.name = name
        self.address = address
        self.initializer = initializer
        self.initargs = initargs

    def identity(self) -> object:
        return (type(self), self.address, self.initializer, self.initargs)

    def run(self, ctx: WorkerContext) -> int | None:
        initializer = self.initializer
        if isinstance(initializer, str):  # "module:attr" from a config file
            initializer = import_target(initializer)
        if initializer is not None:
            initializer(*self.initargs)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.address)
        except OSError:
            sock.close()
            if ctx.shutdown.is_cancelled():
                return 0
            raise
        with sock:
            _Runner(sock, ctx).serve()
        return 0


class _Runner:
    def __init__(self, sock: socket.socket, ctx: WorkerContext) -> None:
        self.sock = sock
        self.ctx = ctx
        self.running = False

    def serve(self) -> None:
        sock, ctx = self.sock, self.ctx
        # A stop (or a recycle) ends the wait for the next task; a running task finishes.
        ctx.shutdown.on_cancel(lambda _node: self._shut_read())
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            sock.sendall(frame(Kind.HELLO))
            reader = FrameReader()
            while not ctx.shutdown.is_cancelled():
                data = sock.recv(1 << 20)
                if not data:
                    break
                for kind, task, body in reader.feed(data):
                    if kind is Kind.TASK:
                        sock.sendall(self._run(task, body))
                        if signal.getsignal(signal.SIGINT) is not self._on_interrupt:
                            signal.signal(signal.SIGINT, self._on_interrupt)  # a task took it
                    elif kind is Kind.RETIRE:
                        ctx.recycle("max_tasks_per_worker reached")
            with contextlib.suppress(OSError):
                sock.sendall(frame(Kind.BYE))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the dispatcher is gone: the pool is closing
        finally:
            signal.signal(signal.SIGINT, previous)

    def _run(self, task: int, body: bytes) -> bytes:
        try:
            self.running = True
            try:
                fn, args, kwargs = payloads.loads(body)
                value = fn(*args, **kwargs)
            finally:
                self.running = False
        except TaskInterrupted:
            return frame(Kind.INTERRUPTED, task)
        except BaseException as exc:
            return frame(Kind.RAISED, task, payloads.raised(exc))
        try:
            return frame(Kind.RESULT, task, payloads.dumps(value))
        except Exception as exc:
            failure = payloads.UnpicklableResult(
                f"the result ({type(value).__name__}) could not be pickled: "
                f"{type(exc).__name__}: {exc}")
            return frame(Kind.RAISED, task, payloads.raised(failure))

    def _on_interrupt(self, _signum: int, _frame: Any) -> None:
        if self.running:  # a late interrupt, between tasks, is for nobody
            self.running = False
            raise TaskInterrupted()

    def _shut_read(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)
