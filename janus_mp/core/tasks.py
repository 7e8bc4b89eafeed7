"""A task pool's decisions: which worker runs which task, retries, quarantine, timeouts, cancel.

    submit ──────────────► Submitted ───┐
    worker connects ─────► WorkerJoined ├─► handle(book, event, now) ─► Send, Resolve,
    result frame ────────► TaskEnded    │     (decides)                  KillWorker, Interrupt,
    worker says bye ─────► WorkerLeaving│                                Retire, Schedule,
    supervisor exit path ► WorkerLost   │                                Released, Drained
    deadline due ────────► TimerDue     │
    cancel / shutdown ───► CancelAsked, Closing

Invariants (the hypothesis machine in tests/unit/test_tasks_machine.py checks them):
- a worker holds at most one task, and a task sent to a worker is the one it runs, so the
  task a dead worker held is exactly the task that was running when it died;
- every submitted task gets exactly one ``Resolve``; a task runs again only when its worker
  died under it and it has retries left (or its worker left before starting it);
- a task whose runs killed ``max_worker_deaths`` workers is resolved POISON, never sent again;
- after ``max_boot_failures`` workers in a row died before joining (a failing initializer, a
  refused process setting), the pool is broken: what waits and what comes is resolved BROKEN
  at once, until a worker joins.

A queue place (``max_queued``) is taken by a submission and given back (``Released``) when the
task leaves the queue for the first time: a retried task goes back to the front without one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from janus_mp.core.notices import LifecycleNotice, NoticeKind
from janus_mp.core.task_messages import (
    CancelAsked,
    Closing,
    Drained,
    Ending,
    Interrupt,
    KillWorker,
    Outcome,
    Released,
    Resolve,
    Retire,
    Schedule,
    Send,
    Submitted,
    TaskAction,
    TaskEnded,
    TaskEvent,
    TaskTimer,
    TimerDue,
    TimerKind,
    Unschedule,
    WorkerExit,
    WorkerJoined,
    WorkerLeaving,
    WorkerLost,
)
from janus_mp.errors import ConfigError


@dataclass(frozen=True)
class TaskRules:
    """The pool-wide rules the policy applies (per-task timeout and retries come with each)."""

    max_worker_deaths: int = 3
    cancel_grace: float = 1.0  # a cancelled running task has this long to stop before a kill
    max_tasks_per_worker: int | None = None
    max_boot_failures: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.max_boot_failures, bool) or not isinstance(
                self.max_boot_failures, int) or self.max_boot_failures < 1:
            raise ConfigError("max_boot_failures", "must be an integer >= 1")
        if isinstance(self.max_worker_deaths, bool) or not isinstance(self.max_worker_deaths,
                                                                      int) \
                or self.max_worker_deaths < 1:
            raise ConfigError("max_worker_deaths", "must be an integer >= 1")
        if isinstance(self.cancel_grace, bool) or not isinstance(self.cancel_grace,
                                                                 (int, float)) \
                or not 0 <= self.cancel_grace < float("inf"):
            raise ConfigError("cancel_grace", "must be a finite number >= 0")
        if self.max_tasks_per_worker is not None and (
                isinstance(self.max_tasks_per_worker, bool)
                or not isinstance(self.max_tasks_per_worker, int)
                or self.max_tasks_per_worker < 1):
            raise ConfigError("max_tasks_per_worker", "must be an integer >= 1 or unset")


class TaskState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"


@dataclass
class Task:
    id: int
    timeout: float | None
    retries: int
    state: TaskState = TaskState.QUEUED
    worker: int | None = None
    runs: int = 0
    deaths: int = 0
    holds_place: bool = True  # a queue place until it first leaves the queue
    cancelling: bool = False
    started_at: float = 0.0


@dataclass
class PoolWorker:
    id: int
    task: int | None = None
    done: int = 0
    leaving: bool = False  # recycled or stopping: it gets nothing more


@dataclass
class TaskBook:
    """A pool's tasks and workers. ``outcomes`` counts every ``Resolve`` by outcome."""

    rules: TaskRules = field(default_factory=TaskRules)
    tasks: dict[int, Task] = field(default_factory=dict)
    queue: deque[int] = field(default_factory=deque)  # may hold ids of ended tasks: skipped
    workers: dict[int, PoolWorker] = field(default_factory=dict)
    idle: dict[int, None] = field(default_factory=dict)  # ordered set: first joined, first used
    queued: int = 0
    busy: int = 0
    outcomes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    closing: bool = False
    drained: bool = False
    boot_failures: int = 0  # workers in a row that died before joining
    boot_exit: WorkerExit | None = None  # the last of them

    @property
    def broken(self) -> bool:
        return self.boot_failures >= self.rules.max_boot_failures


def handle(book: TaskBook, event: TaskEvent, now: float) -> list[TaskAction]:
    """Apply ``event`` at ``now``; return what the runtime must do, in order."""
    out: list[TaskAction] = []
    match event:
        case Submitted():
            _submitted(book, event, out)
        case WorkerJoined(worker=worker):
            book.workers[worker] = PoolWorker(worker)
            book.idle[worker] = None
            book.boot_failures = 0
        case TaskEnded():
            _ended(book, event, out)
        case WorkerLeaving(worker=worker):
            _leaving(book, worker, out)
        case WorkerLost(worker=worker, exit=exit_):
            _lost(book, worker, exit_, out)
        case TimerDue(key=key):
            _timer_due(book, key, out)
        case CancelAsked(task=task_id):
            _cancel(book, task_id, now, out)
        case Closing(cancel_queued=cancel_queued):
            book.closing = True
            if cancel_queued:
                for task_id in list(book.queue):
                    task = book.tasks.get(task_id)
                    if task is not None and task.state is TaskState.QUEUED:
                        _resolve(book, task, Outcome.CANCELLED, out)
                book.queue.clear()
        case _:
            raise TypeError(f"not a task event: {event!r}")
    _assign(book, now, out)
    if book.closing and not book.tasks and not book.drained:
        book.drained = True
        out.append(Drained())
    return out


#: Outcomes told as a ``task_failed`` notice: those of the pool's making, not the function's.
NOTABLE = {Outcome.DIED: "its worker died", Outcome.TIMEOUT: "it ran past its timeout",
           Outcome.POISON: "it killed max_worker_deaths workers: quarantined",
           Outcome.BROKEN: "the pool's workers die before they can take a task"}


def notice_for(pool: str, resolve: Resolve, now: float) -> LifecycleNotice | None:
    """The notice ``events`` and ``subscribe()`` get for a task's outcome, if any."""
    why = NOTABLE.get(resolve.outcome)
    if why is None:
        return None
    exit_ = resolve.exit
    return LifecycleNotice(
        NoticeKind.TASK_FAILED, now, service=pool, reason=resolve.outcome.value,
        exit_code=None if exit_ is None else exit_.returncode,
        message=f"task {resolve.task}: {why}" + ("" if exit_ is None or not exit_.oom_killed
                                                 else " (OOM kill)"))


# -- handlers ----------------------------------------------------------------------------------
def _submitted(book: TaskBook, event: Submitted, out: list[TaskAction]) -> None:
    if event.task in book.tasks:
        raise ValueError(f"task {event.task} submitted twice")
    task = Task(event.task, event.timeout, event.retries)
    book.tasks[task.id] = task
    book.queue.append(task.id)
    book.queued += 1
    if book.closing:  # submitted after close (a race the runtime lost): it ends at once
        book.queue.pop()
        _resolve(book, task, Outcome.CANCELLED, out)
    elif book.broken:
        book.queue.pop()
        _resolve(book, task, Outcome.BROKEN, out, book.boot_exit)


def _ended(book: TaskBook, event: TaskEnded, out: list[TaskAction]) -> None:
    worker = book.workers.get(event.worker)
    if worker is None or worker.task != event.task:
        return  # its outcome was decided already (a timeout, a cancel's kill): too late
    task = book.tasks[event.task]
    _unhold(book, worker)
    worker.done += 1
    if event.ending is Ending.INTERRUPTED and not task.cancelling:
        _requeue(book, task)  # (cannot happen: an interrupt is sent only while cancelling)
    else:
        outcome = {Ending.RETURNED: Outcome.DONE, Ending.RAISED: Outcome.RAISED,
                   Ending.INTERRUPTED: Outcome.CANCELLED}[event.ending]
        _resolve(book, task, outcome, out)
    limit = book.rules.max_tasks_per_worker
    if limit is not None and worker.done >= limit and not worker.leaving:
        worker.leaving = True
        out.append(Retire(worker.id))
    if not worker.leaving:
        book.idle[worker.id] = None


def _leaving(book: TaskBook, worker_id: int, out: list[TaskAction]) -> None:
    worker = book.workers.get(worker_id)
    if worker is None:
        return
    worker.leaving = True
    book.idle.pop(worker_id, None)
    if worker.task is not None:  # sent after it decided to leave: it never started
        task = book.tasks[worker.task]
        _unhold(book, worker)
        task.runs -= 1
        _cancel_timers(task, out)
        _requeue(book, task)


def _lost(book: TaskBook, worker_id: int, exit_: WorkerExit, out: list[TaskAction]) -> None:
    worker = book.workers.pop(worker_id, None)
    book.idle.pop(worker_id, None)
    if worker is None:
        _died_booting(book, exit_, out)
        return
    if worker.task is None:
        return
    task = book.tasks[worker.task]
    _unhold(book, worker)
    task.deaths += 1
    if task.cancelling:
        _resolve(book, task, Outcome.CANCELLED, out)
    elif task.deaths >= book.rules.max_worker_deaths:
        _resolve(book, task, Outcome.POISON, out, exit_)
    elif task.runs <= task.retries:
        _cancel_timers(task, out)
        _requeue(book, task)
    else:
        _resolve(book, task, Outcome.DIED, out, exit_)


def _died_booting(book: TaskBook, exit_: WorkerExit, out: list[TaskAction]) -> None:
    if exit_.returncode == 0:
        return  # stopped before it joined (a standby at shutdown): not a failure
    book.boot_failures += 1
    book.boot_exit = exit_
    if book.broken:
        for task_id in list(book.queue):
            task = book.tasks.get(task_id)
            if task is not None and task.state is TaskState.QUEUED:
                _resolve(book, task, Outcome.BROKEN, out, exit_)
        book.queue.clear()


def _timer_due(book: TaskBook, key: TaskTimer, out: list[TaskAction]) -> None:
    task = book.tasks.get(key.task)
    if task is None or task.state is not TaskState.RUNNING or task.worker is None:
        return
    worker = book.workers[task.worker]
    if key.kind is TimerKind.TIMEOUT:
        why, outcome = f"task ran past its timeout ({task.timeout:g} s)", Outcome.TIMEOUT
    else:
        why, outcome = "cancelled task did not stop in time", Outcome.CANCELLED
    # The worker is killed with whatever it holds: nothing more goes to it, and its exit
    # (WorkerLost, later) finds no task to blame.
    _unhold(book, worker)
    worker.leaving = True
    out.append(KillWorker(worker.id, why))
    _resolve(book, task, outcome, out)


def _cancel(book: TaskBook, task_id: int, now: float, out: list[TaskAction]) -> None:
    task = book.tasks.get(task_id)
    if task is None or task.cancelling:
        return
    if task.state is TaskState.QUEUED:
        _resolve(book, task, Outcome.CANCELLED, out)  # its queue entry is skipped later
        return
    assert task.worker is not None
    task.cancelling = True
    out.append(Interrupt(task.worker))
    key = TaskTimer(TimerKind.CANCEL, task.id)
    out.append(Schedule(key, now + book.rules.cancel_grace))


# -- assignment --------------------------------------------------------------------------------
def _assign(book: TaskBook, now: float, out: list[TaskAction]) -> None:
    """Idle workers take queued tasks, oldest first, first-joined worker first."""
    released = 0
    while book.idle and book.queue:
        task = book.tasks.get(book.queue.popleft())
        if task is None or task.state is not TaskState.QUEUED:
            continue  # cancelled while queued
        worker_id = next(iter(book.idle))
        del book.idle[worker_id]
        worker = book.workers[worker_id]
        worker.task = task.id
        task.state, task.worker, task.started_at = TaskState.RUNNING, worker_id, now
        task.runs += 1
        book.queued -= 1
        book.busy += 1
        if task.holds_place:
            task.holds_place = False
            released += 1
        out.append(Send(worker_id, task.id))
        if task.timeout is not None:
            out.append(Schedule(TaskTimer(TimerKind.TIMEOUT, task.id), now + task.timeout))
    if released:
        out.append(Released(released))


# -- helpers -----------------------------------------------------------------------------------
def _unhold(book: TaskBook, worker: PoolWorker) -> None:
    """The worker no longer holds its task (the task's own state is the caller's to set)."""
    if worker.task is not None:
        worker.task = None
        book.busy -= 1


def _requeue(book: TaskBook, task: Task) -> None:
    task.state, task.worker, task.cancelling = TaskState.QUEUED, None, False
    book.queue.appendleft(task.id)
    book.queued += 1


def _cancel_timers(task: Task, out: list[TaskAction]) -> None:
    if task.timeout is not None:
        out.append(Unschedule(TaskTimer(TimerKind.TIMEOUT, task.id)))
    if task.cancelling:
        out.append(Unschedule(TaskTimer(TimerKind.CANCEL, task.id)))


def _resolve(book: TaskBook, task: Task, outcome: Outcome, out: list[TaskAction],
             exit_: WorkerExit | None = None) -> None:
    if task.state is TaskState.QUEUED:
        book.queued -= 1
        if task.holds_place:
            task.holds_place = False
            out.append(Released(1))
    elif task.worker is not None:
        worker = book.workers.get(task.worker)
        if worker is not None and worker.task == task.id:
            _unhold(book, worker)
    _cancel_timers(task, out)
    del book.tasks[task.id]
    book.outcomes[outcome] += 1
    out.append(Resolve(task.id, outcome, exit_, task.deaths))
