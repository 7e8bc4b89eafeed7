"""Runtime state of one service's pool: its slots, their worker processes and derived counts.

A *slot* is one of the N places of a pool (OTP's child): it keeps a lifecycle, a backoff state
and a generation across the processes that fill it. A *worker* is one process incarnation. A slot
has a ``current`` worker and, during a rolling replacement, an ``incoming`` one; replaced and
scaled-down workers drain in ``retiring``. Data and derivations only: the supervisor acts.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from janus_mp.core.backoff import BackoffConfig, BackoffState, BreakerState, CircuitBreaker
from janus_mp.core.cancel import CancellationToken
from janus_mp.core.config import SpawnOptions
from janus_mp.core.exits import ExitPolicy, KillCause
from janus_mp.core.lifecycle import (
    ServiceLifecycle,
    ServiceLifecycleSnapshot,
    ServicePhase,
    TerminationReason,
)
from janus_mp.core.timers import Timer
from janus_mp.service import JanusService


@dataclass(frozen=True)
class ServiceSpec:
    """What the user asked for; a stopped service restarts from here with fresh state."""

    name: str
    service: JanusService
    options: SpawnOptions
    payload: JanusService | bytes  # bytes: pickled once for spawn/forkserver workers


@dataclass(eq=False)
class Worker:
    service: str
    slot: int
    generation: int
    process: Any
    pid: int
    pidfd: int | None
    conn: Any
    token: CancellationToken
    heartbeat: Any
    started_at: float
    direct_child: bool
    ready_at: float | None = None
    stop_cause: KillCause | None = None
    role: str = "current"  # current | incoming | retiring
    timers: list[Timer] = field(default_factory=list)
    exited: bool = False

    @property
    def ready(self) -> bool:
        return self.ready_at is not None

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


@dataclass(eq=False)
class Slot:
    index: int
    lifecycle: ServiceLifecycle
    backoff: BackoffState = field(default_factory=BackoffState)
    current: Worker | None = None
    incoming: Worker | None = None
    generation: int = 0
    last_exit_code: int | None = None
    restart_timer: Timer | None = None
    restarts: int = 0
    removed: bool = False  # scaled down: dropped once its worker is reaped
    recycling: Worker | None = None  # the worker that asked to be replaced (max_requests...)

    def workers(self) -> list[Worker]:
        return [w for w in (self.current, self.incoming) if w is not None]

    def cancel_restart(self) -> None:
        if self.restart_timer is not None:
            self.restart_timer.cancel()
            self.restart_timer = None


class ServiceRuntime:
    """One running service: its token node, its lifecycle, its breaker and its slots."""

    def __init__(self, spec: ServiceSpec, token: CancellationToken, backoff: BackoffConfig,
                 now: float) -> None:
        self.spec = spec
        self.name = spec.name
        self.options = spec.options
        self.token = token
        self.backoff_config = backoff
        self.exit_policy: ExitPolicy = spec.options.exit_policy()
        self.lifecycle = ServiceLifecycle(spec.name, now)
        self.breaker = CircuitBreaker(backoff)
        self.slots: dict[int, Slot] = {}
        self.desired = spec.options.workers
        self.retiring: list[Worker] = []
        self.stopping = False
        self.stop_reason: TerminationReason | None = None
        self.end_reason: TerminationReason | None = None
        self.rolling: deque[int] = deque()
        self.half_open_timer: Timer | None = None
        self.trial_timer: Timer | None = None
        self.rss_timer: Timer | None = None
        self.stopped_by_request = False
        self.half_open_pending = False

    # -- derived ---------------------------------------------------------------------------
    def live_workers(self) -> list[Worker]:
        found = [w for slot in self.slots.values() for w in slot.workers()]
        return found + list(self.retiring)

    def active_slots(self) -> list[Slot]:
        """Slots that should hold a serving worker (not scaled away, not ended for good)."""
        return [s for s in self.slots.values()
                if not s.removed and s.lifecycle.phase is not ServicePhase.TERMINATED]

    def ready_count(self) -> int:
        return sum(1 for s in self.active_slots() if s.current is not None and s.current.ready)

    def is_ready(self) -> bool:
        active = self.active_slots()
        return bool(active) and self.ready_count() == len(active) and \
            self.breaker.state is BreakerState.CLOSED

    def workers_by_phase(self) -> Counter[str]:
        return Counter(s.lifecycle.phase.value for s in self.slots.values() if not s.removed)

    def backoff_delay(self) -> float:
        delays = [s.backoff.last_delay for s in self.slots.values()
                  if s.lifecycle.phase is ServicePhase.BACKING_OFF]
        return max(delays, default=0.0)

    def restarts(self) -> int:
        return sum(s.restarts for s in self.slots.values())

    def snapshot(self, now: float, listening: tuple[str, ...] = ()) -> ServiceSnapshot:
        workers = tuple(
            slot.lifecycle.snapshot(
                now,
                worker=slot.index,
                generation=slot.generation,
                pids=tuple(w.pid for w in slot.workers()),
                last_exit_code=slot.last_exit_code,
                ready=int(slot.current is not None and slot.current.ready),
                desired=1,
                restarts=slot.restarts,
                backoff_delay=slot.backoff.last_delay,
            )
            for slot in sorted(self.slots.values(), key=lambda s: s.index)
            if not slot.removed
        )
        service = self.lifecycle.snapshot(
            now,
            pids=tuple(w.pid for w in self.live_workers()),
            generation=max((s.generation for s in self.slots.values()), default=0),
            ready=self.ready_count(),
            desired=self.desired,
            restarts=self.restarts(),
            breaker=self.breaker.state.value,
            backoff_delay=self.backoff_delay(),
            last_exit_code=_last_exit(self.slots.values()),
        )
        return ServiceSnapshot(name=self.name, service=service, workers=workers,
                               critical=self.options.critical, listening=listening)


def _last_exit(slots: Any) -> int | None:
    codes = [s.last_exit_code for s in slots if s.last_exit_code is not None]
    return codes[-1] if codes else None


@dataclass(frozen=True)
class ServiceSnapshot:
    name: str
    service: ServiceLifecycleSnapshot
    workers: tuple[ServiceLifecycleSnapshot, ...]
    critical: bool = False
    #: Where the service's listeners are bound (ApiModuleAdapter), real ports included.
    listening: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "critical": self.critical, **self.service.to_dict(),
                "listening": list(self.listening),
                "workers": [w.to_dict() for w in self.workers]}


@dataclass(frozen=True)
class SupervisorSnapshot:
    """Everything ``status``, ``/readyz`` and tests read, as plain data."""

    state: str
    pid: int
    uptime_secs: float
    exit_status: int
    services: tuple[ServiceSnapshot, ...]

    def service(self, name: str) -> ServiceSnapshot:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "pid": self.pid, "uptime_secs": self.uptime_secs,
                "exit_status": self.exit_status,
                "services": [s.to_dict() for s in self.services]}
