"""What happens to the supervisor, as frozen data: the policy's only input.

The runtime turns OS happenings (a pidfd readable, a message on a worker's pipe, a signal, a
deadline) and API calls into these; tests build them by hand. Workers are named by the number
the policy gave them in its ``Spawn`` action, never by pid (pids are reused).
"""

from __future__ import annotations

from dataclasses import dataclass

from janus_mp.core.config import SpawnOptions
from janus_mp.core.timers import TimerKey
from janus_mp.core.tree import ServiceGroup


class Event:
    """Base class: every event is a frozen dataclass."""


# -- from workers ------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerStarted(Event):
    worker: int
    pid: int


@dataclass(frozen=True)
class SpawnFailed(Event):
    """fork/exec failed (EAGAIN under a pids limit, ENOMEM): the slot backs off."""

    worker: int
    error: str


@dataclass(frozen=True)
class WorkerReady(Event):
    worker: int


@dataclass(frozen=True)
class WorkerExiting(Event):
    """The worker's service returned ``returncode`` (or a fatal signal hit it: ``returncode``
    is minus the signal's number); its process is tearing down."""

    worker: int
    returncode: int


@dataclass(frozen=True)
class WorkerParked(Event):
    """A standby booted (service loaded, metrics initialised) and waits to be promoted."""

    worker: int


@dataclass(frozen=True)
class RecycleAsked(Event):
    worker: int
    why: str


@dataclass(frozen=True)
class WorkerExited(Event):
    """``returncode`` as multiprocess reports it: >= 0 an exit status, < 0 minus a signal."""

    worker: int
    returncode: int
    #: The kernel's OOM killer sent the SIGKILL (the service's cgroup counted one more).
    oom_killed: bool = False


# -- from the clock and from what the runtime measured for the policy --------------------------
@dataclass(frozen=True)
class TimerDue(Event):
    key: TimerKey


@dataclass(frozen=True)
class HeartbeatRead(Event):
    """Answer to ``ReadHeartbeat``: the worker's last heartbeat on the policy's clock."""

    worker: int
    last: float


@dataclass(frozen=True)
class RssMeasured(Event):
    """Answer to ``MeasureRss``: resident set sizes in bytes, by worker (missing: gone)."""

    service: str
    samples: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ProbeFinished(Event):
    """Answer to ``RunProbe``: healthy or not, and what was seen (for the log)."""

    worker: int
    healthy: bool
    detail: str


@dataclass(frozen=True)
class StackDumpRead(Event):
    """Answer to ``ReadStackDump``: the worker's stack dump (empty: it wrote none in time)."""

    worker: int
    text: str


# -- commands (API, control socket, signals) ---------------------------------------------------
@dataclass(frozen=True)
class Begin(Event):
    """run_until_shutdown() started: start every registered service, in start order."""


@dataclass(frozen=True)
class Register(Event):
    name: str
    options: SpawnOptions


@dataclass(frozen=True)
class RegisterGroup(Event):
    """A supervision-tree group over registered services and groups (before Begin)."""

    group: ServiceGroup


@dataclass(frozen=True)
class Update(Event):
    """New options for a service (a reload); ``code_changed``: its code/identity differs."""

    name: str
    options: SpawnOptions
    code_changed: bool


@dataclass(frozen=True)
class Remove(Event):
    name: str


@dataclass(frozen=True)
class StartService(Event):
    name: str


@dataclass(frozen=True)
class StopService(Event):
    name: str


@dataclass(frozen=True)
class RestartService(Event):
    """Rolling restart: one slot at a time, the new worker ready before the old one stops."""

    name: str


@dataclass(frozen=True)
class Scale(Event):
    """``workers``: an absolute size; ``delta``: relative to the size at the moment the loop
    applies it (so concurrent ``+1``s all count)."""

    name: str
    workers: int | None = None
    delta: int | None = None


@dataclass(frozen=True)
class Shutdown(Event):
    status: int = 0
    fast: bool = False


@dataclass(frozen=True)
class SignalReceived(Event):
    """A signal the core has a meaning for: TERM, INT, QUIT, TTIN, TTOU (by name)."""

    name: str
