"""The body of a pool's worker: an ordinary janus-mp service that runs tasks.

    dispatcher (supervisor)                    worker (this service's run)
    ───────────────────────                    ──────────────────────────
    listening AF_UNIX socket ◄── connect ───── after the initializer: HELLO
    TASK(id, call) ─────────────────────────► unpickle, call, pickle
                   ◄──────────────────────── RESULT(id, value) / RAISED(id, exc+traceback)
    TASK behind TASK (prefetch) ────────────► run in order, one at a time
    CANCEL(id) [+ SIGINT if it runs] ───────► skip it, or TaskInterrupted in the running call
                   ◄──────────────────────── INTERRUPTED(id)
    RETIRE ─────────────────────────────────► ctx.recycle(): a successor is started
    token cancelled (stop, recycle) ────────► read side shut: BYE, return

The worker reaches the dispatcher by the address in its service (a plain string), never by an
inherited fd, so it does not matter how it was forked. It runs the tasks it was sent in the
order it got them, one at a time.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from janus_mp.pools import payloads
from janus_mp.pools.frames import FrameError, FrameReader, Kind, frame
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
    """Reads frames into ``pending`` (tasks, in order) and ``cancelled`` (ids), runs tasks one
    at a time. While a task runs nothing reads the socket, except the SIGINT handler: it reads
    what waits and stops the task only if a CANCEL names it."""

    def __init__(self, sock: socket.socket, ctx: WorkerContext) -> None:
        self.sock = sock
        self.ctx = ctx
        self.reader = FrameReader()
        self.pending: deque[tuple[int, bytes]] = deque()
        self.cancelled: set[int] = set()
        self.current = -1  # the task running, -1 between tasks
        self.closed = False

    def serve(self) -> None:
        sock, ctx = self.sock, self.ctx
        # A stop (or a recycle) ends the wait for the next task; a running task finishes.
        ctx.shutdown.on_cancel(lambda _node: self._shut_read())
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            sock.sendall(frame(Kind.HELLO))
            while not ctx.shutdown.is_cancelled():
                # Wait for work only when there is none; else just pick up what came.
                self._take(wait=not self.pending)
                if not self.pending:
                    if self.closed:
                        break
                    continue
                task, body = self.pending.popleft()
                if task in self.cancelled:
                    self.cancelled.discard(task)
                    sock.sendall(frame(Kind.INTERRUPTED, task))
                    continue
                sock.sendall(self._run(task, body))
                self.cancelled.discard(task)
                if signal.getsignal(signal.SIGINT) is not self._on_interrupt:
                    signal.signal(signal.SIGINT, self._on_interrupt)  # a task took it
            with contextlib.suppress(OSError):
                sock.sendall(frame(Kind.BYE))  # what it still holds it never started
        except (BrokenPipeError, ConnectionResetError):
            pass  # the dispatcher is gone: the pool is closing
        finally:
            signal.signal(signal.SIGINT, previous)

    def _take(self, *, wait: bool) -> None:
        """Read what the dispatcher sent (waiting for it if ``wait``) into pending/cancelled."""
        try:
            data = self.sock.recv(self.reader.wanted(), 0 if wait else socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            self.closed = True
            return
        for kind, task, body in self.reader.feed(data):
            if kind is Kind.TASK:
                self.pending.append((task, body))
            elif kind is Kind.CANCEL:
                self.cancelled.add(task)
            elif kind is Kind.RETIRE:
                self.ctx.recycle("max_tasks_per_worker reached")

    def _run(self, task: int, body: bytes) -> bytes:
        try:
            self.current = task
            try:
                fn, args, kwargs = payloads.loads(body)
                value = fn(*args, **kwargs)
            finally:
                self.current = -1
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
        running = self.current
        if running < 0:
            return  # between tasks: the CANCEL frame, read before the next one, decides
        # The main thread is inside the task: nothing else reads the socket meanwhile.
        with contextlib.suppress(OSError, FrameError):
            self._take(wait=False)
        if running in self.cancelled:
            self.cancelled.discard(running)
            self.current = -1
            raise TaskInterrupted()

    def _shut_read(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)
