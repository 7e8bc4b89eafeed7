"""What the policy asks the runtime to do, as frozen data: the policy's only output.

The runtime performs them in order and decides nothing; some answer with an event
(``Spawn`` → ``WorkerStarted`` or ``SpawnFailed``; ``ReadHeartbeat`` → ``HeartbeatRead``;
``MeasureRss`` → ``RssMeasured``; ``RunProbe`` → ``ProbeFinished``, later; ``ReadStackDump`` →
``StackDumpRead``), which it feeds back before any other happening.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from janus_mp.core.health_check import HealthCheck
from janus_mp.core.notices import LifecycleNotice
from janus_mp.core.timers import TimerKey


class Action:
    """Base class: every action is a frozen dataclass."""


class LogLevel(IntEnum):  # the values of the logging module's levels
    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40


class StopSignal(StrEnum):
    TERM = "SIGTERM"
    KILL = "SIGKILL"


@dataclass(frozen=True)
class Spawn(Action):
    """Start worker number ``worker`` in ``slot`` of ``service`` (generation for titles)."""

    worker: int
    service: str
    slot: int
    generation: int
    max_requests: int | None  # this worker's recycle threshold, jitter applied
    stop_timeout: float  # the cooperative grace it gets once asked to stop
    standby: bool = False  # boot, then park until a Promote (slot -1 until then)


@dataclass(frozen=True)
class Promote(Action):
    """A parked standby takes ``slot`` (one message): it runs the service from now on."""

    worker: int
    service: str
    slot: int
    generation: int
    max_requests: int | None


@dataclass(frozen=True)
class OpenService(Action):
    """A service starts (again): give it a fresh node under the root of the cancellation tree
    (a stopped service's node stays cancelled)."""

    service: str


@dataclass(frozen=True)
class CancelWorker(Action):
    """Cooperative stop: cancel the worker's node of the cancellation tree."""

    worker: int
    reason: str


@dataclass(frozen=True)
class CancelService(Action):
    """Cancel a service's node (its workers' nodes and everything under them follow)."""

    service: str
    reason: str


@dataclass(frozen=True)
class CancelRoot(Action):
    reason: str


@dataclass(frozen=True)
class SignalWorker(Action):
    """Signal the worker's pid and its process group (a worker may have left its group)."""

    worker: int
    signal: StopSignal


@dataclass(frozen=True)
class ScheduleTimer(Action):
    key: TimerKey
    at: float


@dataclass(frozen=True)
class CancelTimer(Action):
    key: TimerKey


@dataclass(frozen=True)
class ReadHeartbeat(Action):
    worker: int


@dataclass(frozen=True)
class MeasureRss(Action):
    service: str
    workers: tuple[int, ...]


@dataclass(frozen=True)
class ReleaseListeners(Action):
    """A removed service's sockets close (its draining workers keep their own copies)."""

    service: str


@dataclass(frozen=True)
class ForgetService(Action):
    """A removed service has fully stopped: drop its spec and its cancellation node."""

    service: str


@dataclass(frozen=True)
class ShutdownStarted(Action):
    fast: bool


@dataclass(frozen=True)
class Log(Action):
    level: LogLevel
    message: str


@dataclass(frozen=True)
class Publish(Action):
    """Tell subscribers (API, ``janus-mp events``, hooks) about a lifecycle happening."""

    notice: LifecycleNotice


@dataclass(frozen=True)
class RunProbe(Action):
    """Run the worker's health probe off the loop; ``ProbeFinished`` comes back when done."""

    worker: int
    slot: int
    pid: int | None
    check: HealthCheck


@dataclass(frozen=True)
class RequestStackDump(Action):
    """Ask the worker (its pid only, not its group) to write every thread's stack."""

    worker: int


@dataclass(frozen=True)
class ReadStackDump(Action):
    """Read what the worker wrote since ``RequestStackDump``; answered by ``StackDumpRead``."""

    worker: int
