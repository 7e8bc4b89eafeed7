"""The service lifecycle state machine (pure: callers pass ``now``).

Phases and the transition table follow the original supervisor, plus ``circuit_open`` for the
half-open retry. Any other move — including one to the same phase — raises TransitionError and
leaves the lifecycle as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from janus_mp.errors import JanusError


class ServicePhase(StrEnum):
    """Where a service (or one worker slot) is; the value is what status output shows."""

    STARTING = "starting"
    RUNNING = "running"
    BACKING_OFF = "backing_off"
    CIRCUIT_OPEN = "circuit_open"
    STOPPING = "stopping"
    TERMINATED = "terminated"

    @property
    def is_alive(self) -> bool:
        return self is not ServicePhase.TERMINATED

    @property
    def is_terminal(self) -> bool:
        return self is ServicePhase.TERMINATED


_P = ServicePhase
TRANSITIONS: Mapping[ServicePhase, frozenset[ServicePhase]] = MappingProxyType({
    _P.STARTING: frozenset({_P.RUNNING, _P.BACKING_OFF, _P.CIRCUIT_OPEN, _P.STOPPING,
                            _P.TERMINATED}),
    _P.RUNNING: frozenset({_P.BACKING_OFF, _P.CIRCUIT_OPEN, _P.STOPPING, _P.TERMINATED}),
    _P.BACKING_OFF: frozenset({_P.STARTING, _P.CIRCUIT_OPEN, _P.STOPPING, _P.TERMINATED}),
    _P.CIRCUIT_OPEN: frozenset({_P.STARTING, _P.STOPPING, _P.TERMINATED}),
    _P.STOPPING: frozenset({_P.TERMINATED}),
    _P.TERMINATED: frozenset(),
})


class TransitionError(JanusError):
    """A move the table forbids: a bug in the caller, never a user mistake."""

    def __init__(self, from_phase: ServicePhase, to_phase: ServicePhase) -> None:
        super().__init__(f"invalid lifecycle transition: {from_phase.value} → {to_phase.value}")
        self.from_phase = from_phase
        self.to_phase = to_phase


class TerminationKind(StrEnum):
    """Why a worker or service ended; the value is the Prometheus ``reason`` label."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    CIRCUIT_BREAKER_OPEN = "circuit_breaker_open"
    UNRECOVERABLE = "unrecoverable"
    FAILED = "failed"
    KILLED = "killed"
    WATCHDOG_TIMEOUT = "watchdog_timeout"
    START_TIMEOUT = "start_timeout"
    RECYCLED = "recycled"
    REPLACED = "replaced"
    STOPPED = "stopped"
    HALTED = "halted"
    UNHEALTHY = "unhealthy"
    OOM_KILLED = "oom_killed"


#: Linux signal names, kept here so this module needs no ``signal`` import.
_SIGNAL_NAMES = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
                 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV",
                 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM", 17: "SIGCHLD",
                 18: "SIGCONT", 19: "SIGSTOP", 24: "SIGXCPU", 25: "SIGXFSZ", 31: "SIGSYS"}


@dataclass(frozen=True)
class TerminationReason:
    """A kind plus the numbers that explain it; build with the named constructors."""

    kind: TerminationKind
    exit_code: int | None = None
    signal: int | None = None
    failures: int | None = None
    max_retries: int | None = None
    message: str | None = None

    @classmethod
    def completed(cls) -> TerminationReason:
        return cls(TerminationKind.COMPLETED)

    @classmethod
    def cancelled(cls) -> TerminationReason:
        return cls(TerminationKind.CANCELLED)

    @classmethod
    def circuit_breaker_open(cls, failures: int, max_retries: int) -> TerminationReason:
        return cls(TerminationKind.CIRCUIT_BREAKER_OPEN, failures=failures,
                   max_retries=max_retries)

    @classmethod
    def unrecoverable(cls, message: str) -> TerminationReason:
        return cls(TerminationKind.UNRECOVERABLE, message=message)

    @classmethod
    def failed(cls, exit_code: int) -> TerminationReason:
        return cls(TerminationKind.FAILED, exit_code=exit_code)

    @classmethod
    def killed(cls, signal: int) -> TerminationReason:
        return cls(TerminationKind.KILLED, signal=signal)

    @classmethod
    def watchdog_timeout(cls) -> TerminationReason:
        return cls(TerminationKind.WATCHDOG_TIMEOUT)

    @classmethod
    def start_timeout(cls) -> TerminationReason:
        return cls(TerminationKind.START_TIMEOUT)

    @classmethod
    def recycled(cls) -> TerminationReason:
        return cls(TerminationKind.RECYCLED)

    @classmethod
    def replaced(cls) -> TerminationReason:
        return cls(TerminationKind.REPLACED)

    @classmethod
    def stopped(cls) -> TerminationReason:
        return cls(TerminationKind.STOPPED)

    @classmethod
    def unhealthy(cls) -> TerminationReason:
        return cls(TerminationKind.UNHEALTHY)

    @classmethod
    def oom_killed(cls) -> TerminationReason:
        return cls(TerminationKind.OOM_KILLED)

    @classmethod
    def halted(cls, exit_code: int) -> TerminationReason:
        return cls(TerminationKind.HALTED, exit_code=exit_code)

    @property
    def label(self) -> str:
        return self.kind.value

    def __str__(self) -> str:
        k = self.kind
        if k is TerminationKind.CIRCUIT_BREAKER_OPEN:
            return f"circuit breaker open ({self.failures}/{self.max_retries} failures)"
        if k is TerminationKind.UNRECOVERABLE:
            return f"unrecoverable: {self.message}"
        if k is TerminationKind.FAILED:
            return f"failed (exit code {self.exit_code})"
        if k is TerminationKind.OOM_KILLED:
            return "killed by the kernel's OOM killer (its cgroup's memory_max)"
        if k is TerminationKind.HALTED:
            return f"halted (exit code {self.exit_code})"
        if k is TerminationKind.KILLED:
            name = _SIGNAL_NAMES.get(self.signal or 0)
            return f"killed by signal {self.signal}" + (f" ({name})" if name else "")
        return k.value.replace("_", " ")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``kind``, ``text`` (the one-line message) and whichever numbers are set."""
        data = {key: value for key, value in asdict(self).items() if value is not None}
        data["kind"] = self.kind.value
        data["text"] = str(self)
        return data


@dataclass(frozen=True)
class ServiceLifecycleSnapshot:
    """The seed's snapshot, plus what the supervisor knows about the slot's processes.

    Plain data so the CLI, the HTTP endpoint and tests all read the same thing.
    """

    service_name: str
    phase: ServicePhase
    start_count: int
    total_failures: int
    last_error: str | None
    cumulative_running_secs: float
    age_secs: float
    time_in_phase_secs: float
    termination_reason: TerminationReason | None
    worker: int | None = None
    generation: int = 0
    pids: tuple[int, ...] = ()
    last_exit_code: int | None = None
    ready: int = 0
    desired: int = 0
    restarts: int = 0
    breaker: str = "closed"
    backoff_delay: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the phase as its value, the reason as a dict with ``kind`` and ``text``."""
        data = asdict(self)
        data["phase"] = self.phase.value
        data["pids"] = list(self.pids)
        data["termination_reason"] = (self.termination_reason.to_dict()
                                      if self.termination_reason is not None else None)
        return data


class ServiceLifecycle:
    """One service's (or one worker slot's) phase, with the original's bookkeeping."""

    __slots__ = ("service_name", "created_at", "phase", "phase_entered_at", "start_count",
                 "total_failures", "last_error", "termination_reason", "_running_total")

    def __init__(self, service_name: str, now: float) -> None:
        self.service_name = service_name
        self.created_at = now
        self.phase = ServicePhase.STARTING
        self.phase_entered_at = now
        self.start_count = 1
        self.total_failures = 0
        self.last_error: str | None = None
        self.termination_reason: TerminationReason | None = None
        self._running_total = 0.0

    def transition(self, to: ServicePhase, now: float) -> None:
        """Move to ``to``; an illegal move raises and changes nothing."""
        if to not in TRANSITIONS[self.phase]:
            raise TransitionError(self.phase, to)
        if self.phase is ServicePhase.RUNNING:
            self._running_total += max(0.0, now - self.phase_entered_at)
        self.phase = to
        self.phase_entered_at = now

    def mark_running(self, now: float) -> None:
        self.transition(ServicePhase.RUNNING, now)

    def mark_backing_off(self, now: float, error: str) -> None:
        self.transition(ServicePhase.BACKING_OFF, now)
        self.record_failure(error)

    def mark_starting(self, now: float) -> None:
        """A restart: only a backing-off or circuit-open slot starts again."""
        if self.phase not in (ServicePhase.BACKING_OFF, ServicePhase.CIRCUIT_OPEN):
            raise TransitionError(self.phase, ServicePhase.STARTING)
        self.transition(ServicePhase.STARTING, now)
        self.start_count += 1

    def mark_circuit_open(self, now: float, error: str | None = None) -> None:
        """The breaker opened; counts no failure (the one that tripped it is already in)."""
        self.transition(ServicePhase.CIRCUIT_OPEN, now)
        if error is not None:
            self.last_error = error

    def mark_stopping(self, now: float) -> None:
        self.transition(ServicePhase.STOPPING, now)

    def mark_terminated(self, now: float, reason: TerminationReason) -> None:
        self.transition(ServicePhase.TERMINATED, now)
        self.termination_reason = reason

    def record_failure(self, error: str) -> None:
        """Count a failure that does not change the phase."""
        self.total_failures += 1
        self.last_error = error

    def running_secs(self, now: float) -> float:
        """Time spent running so far, including the current run."""
        live = now - self.phase_entered_at if self.phase is ServicePhase.RUNNING else 0.0
        return self._running_total + max(0.0, live)

    def snapshot(self, now: float, **extra: Any) -> ServiceLifecycleSnapshot:
        """The state at ``now``; ``extra`` fills the supervisor's fields (worker, pids, ...)."""
        return ServiceLifecycleSnapshot(
            service_name=self.service_name,
            phase=self.phase,
            start_count=self.start_count,
            total_failures=self.total_failures,
            last_error=self.last_error,
            cumulative_running_secs=self.running_secs(now),
            age_secs=max(0.0, now - self.created_at),
            time_in_phase_secs=max(0.0, now - self.phase_entered_at),
            termination_reason=self.termination_reason,
            **extra,
        )
