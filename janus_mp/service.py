"""The JanusService contract: what a supervised service implements.

A service object is built once in the supervisor and runs in every worker of its pool:
``run(ctx)`` is called inside each worker process and returns (or raises) to end that worker.
Its return value is the worker's exit code: ``None`` or 0 is a clean exit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from janus_mp.errors import ServiceLoadError

if TYPE_CHECKING:
    from janus_mp.worker import WorkerContext


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
