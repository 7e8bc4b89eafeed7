"""A task pool's decisions: which worker runs which task, retries, quarantine, timeouts, cancel.

    submit ──────────────► Submitted ───┐
    worker connects ─────► WorkerJoined ├─► handle(book, event, now) ─► Send, Resolve,
    result frame ────────► TaskEnded    │     (decides)                  KillWorker, Interrupt,
    worker says bye ─────► WorkerLeaving│                                Retire, Schedule,
    supervisor exit path ► WorkerLost   │                                Released, Drained
    deadline due ────────► TimerDue     │
    cancel / shutdown ───► CancelAsked, Closing

Invariants (the hypothesis machine in tests/unit/test_tasks_machine.py checks them):
- a worker runs the tasks sent to it in order, one at a time; it holds at most ``prefetch``
  more behind the one it runs (only when no worker is idle), so the task a dead worker was
  running is the first it held, and the others never started: they go back to the queue;
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
    Skip,
    Submitted,
    TaskAction,
    TaskEnded,
    TaskEvent,
    TaskTimer,
    TimerDue,
    TimerKind,
    Unschedule,
    WorkerClosed,
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
    #: Tasks a busy worker may hold beyond the one it runs, when no worker is idle: it starts
    #: the next one without waiting for a round trip through the supervisor.
    prefetch: int = 1

    def __post_init__(self) -> None:
        for key, minimum in (("max_worker_deaths", 1), ("max_boot_failures", 1),
                             ("prefetch", 0)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(key, f"must be an integer >= {minimum}")
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
    SENT = "sent"        # held by a worker behind the task it runs
    RUNNING = "running"  # the first task its worker holds


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
    """``held``: the tasks sent to it, in order; the first one runs. A first id that is no
    longer a task is one whose outcome was decided while it ran (a timeout, a cancel's kill):
    the worker is being killed, and what it holds behind it has not started."""

    id: int
    held: deque[int] = field(default_factory=deque)
    done: int = 0
    leaving: bool = False  # recycled, stopping or being killed: it gets nothing more


@dataclass
class TaskBook:
    """A pool's tasks and workers. ``outcomes`` counts every ``Resolve`` by outcome."""

    rules: TaskRules = field(default_factory=TaskRules)
    tasks: dict[int, Task] = field(default_factory=dict)
    queue: deque[int] = field(default_factory=deque)  # may hold ids of ended tasks: skipped
    workers: dict[int, PoolWorker] = field(default_factory=dict)
    idle: dict[int, None] = field(default_factory=dict)  # ordered sets: first joined, first used
    roomy: dict[int, None] = field(default_factory=dict)  # busy, may take one more (prefetch)
    queued: int = 0
    outcomes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    closing: bool = False
    drained: bool = False
    boot_failures: int = 0  # workers in a row that died before joining
    boot_exit: WorkerExit | None = None  # the last of them

    @property
    def broken(self) -> bool:
        return self.boot_failures >= self.rules.max_boot_failures

    @property
    def busy(self) -> int:
        """Workers running a task (O(workers): for status and metrics, once a turn)."""
        return sum(1 for worker in self.workers.values() if worker.held)


def handle(book: TaskBook, event: TaskEvent, now: float) -> list[TaskAction]:
    """Apply ``event`` at ``now``; return what the runtime must do, in order."""
    out: list[TaskAction] = []
    match event:
        case Submitted():
            _submitted(book, event, out)
        case WorkerJoined(worker=worker):
            book.workers[worker] = PoolWorker(worker)
            book.boot_failures = 0
            _place(book, book.workers[worker])
        case TaskEnded():
            _ended(book, event, now, out)
        case WorkerLeaving(worker=worker):
            _leaving(book, worker, out)
        case WorkerClosed(worker=worker):
            if worker in book.workers:
                book.workers[worker].leaving = True
                _place(book, book.workers[worker])
        case WorkerLost(worker=worker, exit=exit_, last_words=last_words):
            _last_words(book, worker, last_words, now, out)
            _lost(book, worker, exit_, out)
        case TimerDue(key=key):
            _timer_due(book, key, out)
        case CancelAsked(task=task_id):
            _cancel(book, task_id, now, out)
        case Closing(cancel_queued=cancel_queued):
            book.closing = True
            if cancel_queued:
                _fail_queue(book, Outcome.CANCELLED, None, out)
                for task in [t for t in book.tasks.values() if t.state is TaskState.SENT]:
                    _drop_held(book, task, out)
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


def _ended(book: TaskBook, event: TaskEnded, now: float, out: list[TaskAction]) -> None:
    worker = book.workers.get(event.worker)
    if worker is None or event.task not in worker.held:
        return
    task = book.tasks.get(event.task)
    if worker.held[0] != event.task:
        # Answered before its turn: a held task cancelled before it started, skipped.
        if task is None:
            worker.held.remove(event.task)
            _place(book, worker)
        return
    worker.held.popleft()
    if task is not None:  # else it was decided while it ran: the worker is being killed
        worker.done += 1
        if event.ending is Ending.INTERRUPTED and not task.cancelling:
            _cancel_timers(task, out)  # (cannot happen: interrupts are sent when cancelling)
            _requeue(book, task)
        else:
            outcome = {Ending.RETURNED: Outcome.DONE, Ending.RAISED: Outcome.RAISED,
                       Ending.INTERRUPTED: Outcome.CANCELLED}[event.ending]
            _resolve(book, task, outcome, out)
        limit = book.rules.max_tasks_per_worker
        if limit is not None and worker.done >= limit and not worker.leaving:
            worker.leaving = True
            out.append(Retire(worker.id))
    _start_next(book, worker, now, out)
    _place(book, worker)


def _leaving(book: TaskBook, worker_id: int, out: list[TaskAction]) -> None:
    """It runs nothing more: what it still holds was sent after its last task, never started."""
    worker = book.workers.get(worker_id)
    if worker is None:
        return
    worker.leaving = True
    _place(book, worker)
    _give_back(book, worker, list(worker.held), out)
    worker.held.clear()


def _last_words(book: TaskBook, worker_id: int, last_words: tuple[TaskEvent, ...], now: float,
                out: list[TaskAction]) -> None:
    """What a dead worker sent before it died counts; it gets nothing more meanwhile."""
    worker = book.workers.get(worker_id)
    if worker is None:
        return
    worker.leaving = True
    _place(book, worker)
    for said in last_words:
        if isinstance(said, TaskEnded) and said.worker == worker_id:
            _ended(book, said, now, out)
        elif isinstance(said, WorkerLeaving) and said.worker == worker_id:
            _leaving(book, worker_id, out)


def _lost(book: TaskBook, worker_id: int, exit_: WorkerExit, out: list[TaskAction]) -> None:
    worker = book.workers.pop(worker_id, None)
    book.idle.pop(worker_id, None)
    book.roomy.pop(worker_id, None)
    if worker is None:
        _died_booting(book, exit_, out)
        return
    if not worker.held:
        return
    ran, *behind = worker.held
    _give_back(book, worker, behind, out)  # they never started
    task = book.tasks.get(ran)
    if task is None:
        return  # decided while it ran (its timeout, its cancel): the kill did this
    task.deaths += 1
    _cancel_timers(task, out)
    if task.cancelling:
        _resolve(book, task, Outcome.CANCELLED, out)
    elif task.deaths >= book.rules.max_worker_deaths:
        _resolve(book, task, Outcome.POISON, out, exit_)
    elif task.runs <= task.retries:
        _requeue(book, task)
    else:
        _resolve(book, task, Outcome.DIED, out, exit_)


def _died_booting(book: TaskBook, exit_: WorkerExit, out: list[TaskAction]) -> None:
    if exit_.returncode == 0:
        return  # stopped before it joined (a standby at shutdown): not a failure
    book.boot_failures += 1
    book.boot_exit = exit_
    if book.broken:
        _fail_queue(book, Outcome.BROKEN, exit_, out)


def _timer_due(book: TaskBook, key: TaskTimer, out: list[TaskAction]) -> None:
    task = book.tasks.get(key.task)
    if task is None or task.state is not TaskState.RUNNING or task.worker is None:
        return
    worker = book.workers[task.worker]
    if key.kind is TimerKind.TIMEOUT:
        why, outcome = f"task ran past its timeout ({task.timeout:g} s)", Outcome.TIMEOUT
    else:
        why, outcome = "cancelled task did not stop in time", Outcome.CANCELLED
    # The worker is killed. Its first id stays (no longer a task): a result that was on its
    # way is dropped, and what it holds behind waits for its exit (WorkerLost) to go back.
    worker.leaving = True
    _place(book, worker)
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
    if task.state is TaskState.SENT:
        _drop_held(book, task, out)
        return
    task.cancelling = True
    _interrupt(book, task, now, out)


# -- assignment --------------------------------------------------------------------------------
def _assign(book: TaskBook, now: float, out: list[TaskAction]) -> None:
    """Queued tasks, oldest first, to idle workers (first joined first), then — only when no
    worker is idle — one more to each busy worker with room (``prefetch``)."""
    released = 0
    while book.queue and (book.idle or book.roomy):
        task = book.tasks.get(book.queue.popleft())
        if task is None or task.state is not TaskState.QUEUED:
            continue  # cancelled while queued
        worker = book.workers[next(iter(book.idle or book.roomy))]
        worker.held.append(task.id)
        task.state, task.worker = TaskState.SENT, worker.id
        task.runs += 1
        book.queued -= 1
        if task.holds_place:
            task.holds_place = False
            released += 1
        out.append(Send(worker.id, task.id))
        _start_next(book, worker, now, out)
        _place(book, worker)
    if released:
        out.append(Released(released))


def _start_next(book: TaskBook, worker: PoolWorker, now: float, out: list[TaskAction]) -> None:
    """The worker's first held task runs from ``now``: its timeout starts."""
    if not worker.held:
        return
    task = book.tasks.get(worker.held[0])
    if task is None or task.state is not TaskState.SENT:
        return
    task.state, task.started_at = TaskState.RUNNING, now
    if task.timeout is not None:
        out.append(Schedule(TaskTimer(TimerKind.TIMEOUT, task.id), now + task.timeout))


def _place(book: TaskBook, worker: PoolWorker) -> None:
    """File the worker as idle, roomy (may take one more) or neither."""
    book.idle.pop(worker.id, None)
    book.roomy.pop(worker.id, None)
    if worker.leaving or worker.id not in book.workers:
        return
    if not worker.held:
        book.idle[worker.id] = None
        return
    limit = book.rules.max_tasks_per_worker
    if len(worker.held) <= book.rules.prefetch and (
            limit is None or worker.done + len(worker.held) < limit):
        book.roomy[worker.id] = None


# -- helpers -----------------------------------------------------------------------------------
def _interrupt(book: TaskBook, task: Task, now: float, out: list[TaskAction]) -> None:
    assert task.worker is not None
    out.append(Interrupt(task.worker, task.id))
    out.append(Schedule(TaskTimer(TimerKind.CANCEL, task.id), now + book.rules.cancel_grace))


def _drop_held(book: TaskBook, task: Task, out: list[TaskAction]) -> None:
    """A task held behind the running one is cancelled: it ends now, and the worker is told to
    drop it. Its id stays held until the worker answers for it (INTERRUPTED when it dropped
    it; a result, dropped, if it had started it meanwhile), so the order of what the worker
    runs stays known."""
    assert task.worker is not None
    out.append(Skip(task.worker, task.id))
    _resolve(book, task, Outcome.CANCELLED, out)


def _give_back(book: TaskBook, worker: PoolWorker, ids: list[int],
               out: list[TaskAction]) -> None:
    """Tasks a worker held but never started go back to the front of the queue, in order: they
    were not a run."""
    for task_id in reversed(ids):
        task = book.tasks.get(task_id)
        if task is None or task.worker != worker.id:
            continue
        task.runs -= 1
        _cancel_timers(task, out)
        if task.cancelling:  # (a running task being cancelled that said BYE: it ends)
            _resolve(book, task, Outcome.CANCELLED, out)
        else:
            _requeue(book, task)


def _fail_queue(book: TaskBook, outcome: Outcome, exit_: WorkerExit | None,
                out: list[TaskAction]) -> None:
    for task_id in list(book.queue):
        task = book.tasks.get(task_id)
        if task is not None and task.state is TaskState.QUEUED:
            _resolve(book, task, outcome, out, exit_)
    book.queue.clear()


def _requeue(book: TaskBook, task: Task) -> None:
    task.state, task.worker, task.cancelling = TaskState.QUEUED, None, False
    book.queue.appendleft(task.id)
    book.queued += 1


def _cancel_timers(task: Task, out: list[TaskAction]) -> None:
    if task.timeout is not None and task.state is TaskState.RUNNING:
        out.append(Unschedule(TaskTimer(TimerKind.TIMEOUT, task.id)))
    if task.cancelling:
        out.append(Unschedule(TaskTimer(TimerKind.CANCEL, task.id)))


def _resolve(book: TaskBook, task: Task, outcome: Outcome, out: list[TaskAction],
             exit_: WorkerExit | None = None) -> None:
    """The task's one outcome. Its worker's ``held`` is the caller's to keep right."""
    if task.state is TaskState.QUEUED:
        book.queued -= 1
        if task.holds_place:
            task.holds_place = False
            out.append(Released(1))
    _cancel_timers(task, out)
    del book.tasks[task.id]
    book.outcomes[outcome] += 1
    out.append(Resolve(task.id, outcome, exit_, task.deaths))
