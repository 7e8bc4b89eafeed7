"""The JanusService contract: what a supervised service implements.

A service object is built once in the supervisor and runs in every worker of its pool:
``run(ctx)`` is called inside each worker process and returns (or raises) to end that worker.
Its return value is the worker's exit code: ``None`` or 0 is a clean exit.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from janus_mp.core.cancel import CancellationToken
from janus_mp.errors import ServiceLoadError

#: Messages on the pipe between a worker and the supervisor (bytes, never pickles).
READY = b"r"
CANCEL = b"c"
RECYCLE = b"R"  # followed by a short reason: "replace me gracefully"
PARKED = b"p"  # a standby booted and waits
EXITING = b"x"  # followed by the exit code: run() is over, the process tears down
PROMOTE = b"P"  # followed by b"SLOT GENERATION MAX_REQUESTS" (0: none): a standby runs now


class JanusService(ABC):
    """Subclass and implement :meth:`run`. ``name`` names the service (metrics, logs, CLI)."""

    name: str = ""
    #: Addresses the supervisor binds for this service before its workers start
    #: (``HOST:PORT``, ``unix:PATH``, ``fd://N``); each worker gets them as ``ctx.listeners``.
    binds: tuple[str, ...] = ()
    backlog: int = 2048
    #: False for services that cannot call ``ctx.heartbeat()`` (foreign code, external
    #: programs): a watchdog would kill them while they work, so one is refused.
    can_heartbeat: bool = True

    @abstractmethod
    def run(self, ctx: WorkerContext) -> int | None:
        """Serve until ``ctx.shutdown`` is cancelled; runs in each worker process."""

    def identity(self) -> object:
        """What a reload compares: a different identity rolls the pool onto the new service."""
        return (type(self), self.binds, self.backlog)


class CallableService(JanusService):
    """A plain ``fn(ctx)`` as a service."""

    def __init__(self, fn: Callable[[WorkerContext], Any], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "") or "service"

    def identity(self) -> object:
        return (type(self), self.fn)

    def run(self, ctx: WorkerContext) -> int | None:
        result = self.fn(ctx)
        return result if isinstance(result, int) and not isinstance(result, bool) else None

    def __repr__(self) -> str:
        return f"CallableService({self.fn!r}, name={self.name!r})"


def as_service(target: object, name: str | None = None) -> JanusService:
    """Accept a JanusService instance, a JanusService subclass, or a callable ``fn(ctx)``."""
    if isinstance(target, type) and issubclass(target, JanusService):
        target = target()
    if isinstance(target, JanusService):
        if name:
            target.name = name
        if not target.name:
            target.name = type(target).__name__.lower()
        return target
    if callable(target):
        return CallableService(target, name)
    raise ServiceLoadError(
        f"{target!r} is not a service: expected a JanusService or a callable taking ctx"
    )


class WorkerContext:
    """Handed to ``service.run(ctx)`` inside the worker."""

    def __init__(self, *, service: str, index: int, generation: int,
                 shutdown: CancellationToken, conn: Any, heartbeat: Any,
                 listeners: tuple[Any, ...] = (), max_requests: int | None = None,
                 stop_timeout: float = 30.0, watchdog_timeout: float | None = None) -> None:
        self.service = service
        self.index = index
        self.generation = generation
        self.shutdown: CancellationToken = shutdown
        self.pid = os.getpid()
        self.logger = logging.getLogger(f"janus_mp.worker.{service}")
        #: Listening sockets the supervisor bound for this service, shared by the whole pool.
        self.listeners: tuple[Any, ...] = listeners
        #: Requests after which a request-serving service should call :meth:`recycle`.
        self.max_requests = max_requests
        #: Seconds the worker has, once ``shutdown`` is cancelled, before it gets SIGTERM.
        self.stop_timeout = stop_timeout
        #: The service's watchdog: without a ``heartbeat()`` this often the worker is killed.
        self.watchdog_timeout = watchdog_timeout
        self._conn = conn  # the worker's end of the duplex pipe to the supervisor
        self._heartbeat = heartbeat  # a shared double: the last heartbeat, time.monotonic()
        self._ready = False
        self._recycle_asked = False
        self._lock = threading.Lock()

    def ready(self) -> None:
        """Tell the supervisor this worker can serve (moves it to RUNNING). Idempotent."""
        self.heartbeat()
        with self._lock:  # one sender at a time: messages must not interleave on the pipe
            if self._ready:
                return
            self._ready = True
            try:
                self._conn.send_bytes(READY)
            except OSError:
                pass  # supervisor gone: the bridge is already taking the worker down

    def announce_exit(self, code: int) -> None:
        """Called by janus-mp once ``run`` is over (services need not): the supervisor decides
        on the exit code at once instead of waiting for the process teardown."""
        with self._lock:
            try:
                self._conn.send_bytes(EXITING + str(code & 0xFF).encode())
            except OSError:
                pass  # supervisor gone: the bridge is already taking the worker down

    def recycle(self, reason: str = "asked by the worker") -> None:
        """Ask to be replaced gracefully: the supervisor starts a successor, and once it is
        ready, cancels ``shutdown`` here (termination reason "recycled"). Keep serving until
        then. Idempotent; thread-safe."""
        with self._lock:
            if self._recycle_asked:
                return
            self._recycle_asked = True
            try:
                self._conn.send_bytes(RECYCLE + reason.encode("utf-8", "replace")[:60])
            except OSError:
                pass

    def heartbeat(self) -> None:
        """Prove liveness to the watchdog: one store to shared memory, no system call."""
        self._heartbeat.value = time.monotonic()

    @property
    def is_ready(self) -> bool:
        return self._ready

    def __repr__(self) -> str:
        return f"<WorkerContext {self.service}[{self.index}] gen={self.generation} pid={self.pid}>"
