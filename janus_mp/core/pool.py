"""The supervisor's state as the policy sees it: services, their slots, their workers.

A *slot* is one of the N places of a pool (OTP's child): it keeps a lifecycle, a backoff state
and a generation across the processes that fill it. A *worker* is one process incarnation,
named by a number the policy hands out (never a pid: pids are reused). A slot has a ``current``
worker and, during a rolling replacement, an ``incoming`` one; replaced and scaled-down workers
drain as ``retiring``. Data and derivations only: :mod:`janus_mp.core.policy` moves it.

Invariants (held by the policy, checked by the property tests): a worker is in exactly one of
``slot.current``, ``slot.incoming`` or ``service.retiring`` until it exits; a slot never has two
current workers; every worker in ``SupervisorState.workers`` is alive as far as the policy knows.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from janus_mp.core.backoff import BackoffConfig, BackoffState, BreakerState, CircuitBreaker
from janus_mp.core.config import BRUTAL_KILL, INFINITY, SpawnOptions, SupervisorConfig
from janus_mp.core.counters import SupervisorMetrics
from janus_mp.core.exits import ExitPolicy, KillCause
from janus_mp.core.lifecycle import ServiceLifecycle, ServicePhase, TerminationReason
from janus_mp.core.timers import TimerKinds
from janus_mp.core.tree import Tree


class RandomSource(Protocol):
    """What the policy draws jitter from (``random.Random`` in production, seeded in tests)."""

    def randint(self, a: int, b: int) -> int: ...

    def uniform(self, a: float, b: float) -> float: ...


class SupervisorPhase(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class WorkerRole(StrEnum):
    CURRENT = "current"    # the slot's serving worker
    INCOMING = "incoming"  # its replacement, starting (rolling restart, recycling)
    RETIRING = "retiring"  # replaced or scaled away, draining
    STANDBY = "standby"    # booted and parked, in no slot until promoted (core.standby)


@dataclass(eq=False, slots=True)  # slots: a thousand of these live in the supervisor
class WorkerState:
    id: int
    service: str
    slot: int
    generation: int
    role: WorkerRole
    spawned_at: float
    pid: int | None = None
    ready_at: float | None = None
    stop_cause: KillCause | None = None
    term_at: float | None = None  # when SIGTERM is due, once asked to stop
    parked_at: float | None = None  # a standby that booted and waits to be promoted
    promoted: bool = False  # a standby that took a slot
    exit_announced: bool = False  # told its exit code: decided on, now tearing down
    timers: TimerKinds = field(default_factory=TimerKinds)
    probe_failures: int = 0  # consecutive failed health probes (core/health.py)
    stack_dump: str | None = None  # asked for before it was killed (core/dumps.py)

    @property
    def ready(self) -> bool:
        return self.ready_at is not None

    @property
    def serving(self) -> bool:
        """Ready, and its last health probe (if any) passed: what /readyz counts."""
        return self.ready_at is not None and not self.probe_failures

    @property
    def place(self) -> str:
        """``service[slot]``, or ``service[standby]`` for a standby (it has no slot yet)."""
        where = "standby" if self.role is WorkerRole.STANDBY else self.slot
        return f"{self.service}[{where}]"

    def label(self) -> str:
        return f"{self.place} (pid {self.pid})"


@dataclass(eq=False, slots=True)
class SlotState:
    index: int
    lifecycle: ServiceLifecycle
    backoff: BackoffState = field(default_factory=BackoffState)
    current: WorkerState | None = None
    incoming: WorkerState | None = None
    generation: int = 0
    last_exit_code: int | None = None
    restart_role: WorkerRole | None = None  # a RESTART timer is pending, for this role
    restarts: int = 0
    removed: bool = False  # scaled down: dropped once its workers are gone
    recycling: WorkerState | None = None  # the worker that asked to be replaced

    def workers(self) -> list[WorkerState]:
        return [w for w in (self.current, self.incoming) if w is not None]


class ServiceState:
    """One service: its lifecycle, its breaker and its slots."""

    def __init__(self, name: str, options: SpawnOptions, backoff: BackoffConfig,
                 now: float) -> None:
        self.name = name
        self.options = options
        self.backoff_config = backoff
        self.exit_policy: ExitPolicy = options.exit_policy()
        self.lifecycle = ServiceLifecycle(name, now)
        self.breaker = CircuitBreaker(backoff)
        self.slots: dict[int, SlotState] = {}
        self.desired = options.workers
        self.retiring: list[WorkerState] = []
        self.stopping = False
        self.stopped_by_request = False
        self.stop_reason: TerminationReason | None = None
        self.end_reason: TerminationReason | None = None
        self.rolling: deque[int] = deque()
        self.half_open_pending = False
        self.trial: WorkerState | None = None  # the half-open trial worker, once ready
        self.standby: list[WorkerState] = []  # parked or booting, oldest first
        self.standby_boot_failures = 0  # standbys in a row that died before parking
        self.standby_retry_pending = False  # a STANDBY timer will start the next one
        self.queued_fills = 0  # fresh slots waiting for their batch (core.startup)

    # -- derived ---------------------------------------------------------------------------
    def live_workers(self) -> list[WorkerState]:
        """Every live worker; standbys first (a stopping service stops them first)."""
        return [*self.standby, *(w for slot in self.slots.values() for w in slot.workers()),
                *self.retiring]

    def has_live_workers(self) -> bool:
        """Any worker still alive (stops at the first: settling asks this every loop turn)."""
        return bool(self.standby) or self.has_serving_workers()

    def has_serving_workers(self) -> bool:
        """Any worker alive that is, or was, a slot's (standbys aside)."""
        return bool(self.retiring) or any(
            slot.current is not None or slot.incoming is not None
            for slot in self.slots.values())

    def active_slots(self) -> list[SlotState]:
        """Slots that should hold a serving worker (not scaled away, not ended for good)."""
        return [s for s in self.slots.values()
                if not s.removed and s.lifecycle.phase is not ServicePhase.TERMINATED]

    def ready_count(self) -> int:
        return sum(1 for s in self.active_slots() if s.current is not None and s.current.serving)

    def is_ready(self) -> bool:
        active = self.active_slots()
        return bool(active) and self.ready_count() == len(active) and \
            self.breaker.state is BreakerState.CLOSED

    def workers_by_phase(self) -> Counter[str]:
        """Slots by phase, plus the standbys under ``standby`` (never ready capacity)."""
        phases = Counter(s.lifecycle.phase.value for s in self.slots.values() if not s.removed)
        if self.standby or self.options.standby:
            phases[WorkerRole.STANDBY.value] = len(self.standby)
        return phases

    def backoff_delay(self) -> float:
        delays = [s.backoff.last_delay for s in self.slots.values()
                  if s.lifecycle.phase is ServicePhase.BACKING_OFF]
        return max(delays, default=0.0)

    def restarts(self) -> int:
        return sum(s.restarts for s in self.slots.values())

    def grace(self, config: SupervisorConfig) -> float:
        """Cooperative stop time before SIGTERM: the service's stop_timeout or the default
        (0 for brutal_kill, which kills at once; infinite for infinity, which never signals)."""
        stop_timeout = self.options.stop_timeout
        if stop_timeout is None:
            return config.shutdown_timeout
        if stop_timeout == BRUTAL_KILL:
            return 0.0
        if stop_timeout == INFINITY:
            return math.inf
        assert isinstance(stop_timeout, (int, float))  # validated by SpawnOptions
        return float(stop_timeout)

    @property
    def brutal_kill(self) -> bool:
        return self.options.stop_timeout == BRUTAL_KILL


@dataclass(frozen=True)
class ExitRecord:
    """One worker exit, for ``status`` and ``top`` (``at`` on the policy's clock)."""

    at: float
    service: str
    worker: int
    generation: int
    pid: int | None
    exit_code: int
    reason: str
    uptime_secs: float
    stack_dump: str | None = None  # every thread's stack, asked for before a SIGKILL

    def to_dict(self, wall_offset: float) -> dict[str, Any]:
        """JSON-safe, ``at`` turned into wall-clock time (``wall_offset`` = wall − clock)."""
        return {"at": self.at + wall_offset, "service": self.service, "worker": self.worker,
                "generation": self.generation, "pid": self.pid, "exit_code": self.exit_code,
                "reason": self.reason, "uptime_secs": self.uptime_secs,
                "stack_dump": self.stack_dump}


class SupervisorState:
    """Everything the policy decides from; owned by the loop thread."""

    def __init__(self, config: SupervisorConfig, rng: RandomSource) -> None:
        self.config = config
        self.rng = rng
        self.phase = SupervisorPhase.IDLE
        self.exit_status = 0
        self.started_at = 0.0
        self.options: dict[str, SpawnOptions] = {}  # registered services, in order
        self.services: dict[str, ServiceState] = {}  # started ones (and removed, draining)
        self.removed: set[str] = set()  # removed by a reload, still draining
        self.workers: dict[int, WorkerState] = {}
        self.next_worker = 1
        self.shutdown_stages: list[list[str]] = []
        self.root_cancelled = False
        self.metrics = SupervisorMetrics()
        self.recent_exits: deque[ExitRecord] = deque(maxlen=50)
        #: Fresh slots waiting to be filled, a batch per loop turn (core.startup).
        self.fill_queue: deque[tuple[ServiceState, int]] = deque()
        self.tree = Tree()  # groups (supervision trees) and services waiting to start

    def start_order(self) -> list[str]:
        return sorted(self.options, key=lambda n: self.options[n].start_order)

    def new_worker_id(self) -> int:
        number = self.next_worker
        self.next_worker += 1
        return number
