"""What a task pool's policy (``core/tasks.py``) hears and what it asks for, as frozen data.

The runtime (``janus_mp/pools``) turns happenings into these events — a submission, a worker
connecting, a result frame, a worker's exit from the supervisor's exit path, a due deadline —
and performs the actions in order. Task and worker ids are plain integers the runtime chose.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """How a task ended: exactly one per submitted task."""

    DONE = "done"            # the function returned
    RAISED = "raised"        # the function raised (or its argument/result did not pickle)
    DIED = "died"            # its worker died under it, retries used up
    TIMEOUT = "timeout"      # it ran past its timeout: its worker was killed
    POISON = "poison"        # it has killed max_worker_deaths workers: never run again
    CANCELLED = "cancelled"  # cancelled (queued: removed; running: stopped), or pool shut down
    BROKEN = "broken"        # the pool's workers die before they can take a task


class Ending(StrEnum):
    """What a worker says about the task it ran."""

    RETURNED = "returned"
    RAISED = "raised"
    INTERRUPTED = "interrupted"  # the cooperative stop reached it


class TimerKind(StrEnum):
    TIMEOUT = "timeout"  # the task's time is up: kill its worker         (task)
    CANCEL = "cancel"    # a cancelled task did not stop in time: kill    (task)


@dataclass(frozen=True, order=True)
class TaskTimer:
    kind: TimerKind
    task: int


@dataclass(frozen=True)
class WorkerExit:
    """A pool worker's exit as the supervisor saw it (its returncode: < 0 is minus a signal)."""

    returncode: int
    oom_killed: bool = False

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None

    @property
    def code(self) -> int | None:
        return self.returncode if self.returncode >= 0 else None


# -- events ------------------------------------------------------------------------------------
class TaskEvent:
    """Base class: every event is a frozen dataclass."""


@dataclass(frozen=True)
class Submitted(TaskEvent):
    task: int
    timeout: float | None = None
    retries: int = 0


@dataclass(frozen=True)
class WorkerJoined(TaskEvent):
    """A pool worker connected and can take a task."""

    worker: int


@dataclass(frozen=True)
class TaskEnded(TaskEvent):
    worker: int
    task: int
    ending: Ending


@dataclass(frozen=True)
class WorkerLeaving(TaskEvent):
    """The worker will run nothing more (recycled, stopped): what it holds never started."""

    worker: int


@dataclass(frozen=True)
class WorkerClosed(TaskEvent):
    """The worker's connection ended: it gets nothing more; its exit decides what it held."""

    worker: int


@dataclass(frozen=True)
class WorkerLost(TaskEvent):
    """The worker's process ended (the supervisor's exit path); also for a worker that never
    joined (it died booting). ``last_words``: what it sent that was not read yet (TaskEnded,
    WorkerLeaving), applied first — nothing is sent to it meanwhile."""

    worker: int
    exit: WorkerExit
    last_words: tuple[TaskEvent, ...] = ()


@dataclass(frozen=True)
class TimerDue(TaskEvent):
    key: TaskTimer


@dataclass(frozen=True)
class CancelAsked(TaskEvent):
    task: int


@dataclass(frozen=True)
class Closing(TaskEvent):
    """No more submissions; with ``cancel_queued``, what waits is cancelled."""

    cancel_queued: bool = False


# -- actions -----------------------------------------------------------------------------------
class TaskAction:
    """Base class: every action is a frozen dataclass."""


@dataclass(frozen=True)
class Send(TaskAction):
    worker: int
    task: int


@dataclass(frozen=True)
class Resolve(TaskAction):
    """The task's one outcome; ``exit`` for DIED and POISON (the last death), ``deaths``
    how many workers died running it."""

    task: int
    outcome: Outcome
    exit: WorkerExit | None = None
    deaths: int = 0


@dataclass(frozen=True)
class Skip(TaskAction):
    """The worker holds ``task`` behind the one it runs: it drops it when it gets there (and
    answers INTERRUPTED)."""

    worker: int
    task: int


@dataclass(frozen=True)
class KillWorker(TaskAction):
    worker: int
    why: str


@dataclass(frozen=True)
class Interrupt(TaskAction):
    """Cooperative stop of ``task``, which the worker runs: it is named, so an interrupt that
    arrives after it ended never stops the next one."""

    worker: int
    task: int


@dataclass(frozen=True)
class Retire(TaskAction):
    """The worker ran max_tasks_per_worker tasks: have it recycled (it gets no more)."""

    worker: int


@dataclass(frozen=True)
class Schedule(TaskAction):
    key: TaskTimer
    at: float


@dataclass(frozen=True)
class Unschedule(TaskAction):
    key: TaskTimer


@dataclass(frozen=True)
class Released(TaskAction):
    """``count`` places of the bounded queue are free again (backpressure)."""

    count: int


@dataclass(frozen=True)
class Drained(TaskAction):
    """Closing, and every task has its outcome: the pool may stop."""
