"""A hypothesis state machine over the task policy: tasks are submitted, workers join, finish,
leave, die, time out and are cancelled in any order on a fake clock. Every submitted task ends
in exactly one outcome (none lost, none twice), a task runs again only after its worker died
under it or left before starting it, and counts stay consistent."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from janus_mp.core.task_messages import (
    CancelAsked,
    Closing,
    Drained,
    Ending,
    KillWorker,
    Outcome,
    Released,
    Resolve,
    Schedule,
    Send,
    Skip,
    Submitted,
    TaskEnded,
    TimerDue,
    Unschedule,
    WorkerClosed,
    WorkerExit,
    WorkerJoined,
    WorkerLeaving,
    WorkerLost,
)
from janus_mp.core.tasks import TaskBook, TaskRules, handle
from janus_mp.core.timers import Deadlines, TimerKey, TimerKind


class TaskMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = TaskBook(TaskRules(max_worker_deaths=3, cancel_grace=1.0,
                                       max_tasks_per_worker=4, prefetch=1))
        self.now = 0.0
        self.next_task = 0
        self.next_worker = 0
        self.submitted: set[int] = set()
        self.resolved: dict[int, Outcome] = {}
        self.running: dict[int, list[int]] = {}  # worker -> tasks sent to it, in order
        self.skips: list[tuple[int, int]] = []
        self.live: set[int] = set()  # joined, not lost
        self.killed: set[int] = set()
        self.sends: dict[int, int] = {}
        self.deaths: dict[int, int] = {}
        self.places = 0  # queue places taken and not yet released
        self.timers = Deadlines()
        self.keys: dict[TimerKey, object] = {}
        self.drained = 0

    def feed(self, event) -> None:
        for action in handle(self.book, event, self.now):
            match action:
                case Send(worker=w, task=t):
                    assert w in self.live and w not in self.killed
                    assert t not in self.resolved
                    held = self.running.setdefault(w, [])
                    assert len(held) <= self.book.rules.prefetch, "more than prefetch behind"
                    held.append(t)
                    self.sends[t] = self.sends.get(t, 0) + 1
                case Skip(worker=w, task=t):
                    self.skips.append((w, t))
                case Resolve(task=t, outcome=outcome):
                    assert t in self.submitted and t not in self.resolved, "resolved twice"
                    self.resolved[t] = outcome
                    if outcome is Outcome.POISON:
                        assert self.deaths.get(t, 0) == 3
                case KillWorker(worker=w):
                    self.killed.add(w)
                case Released(count=n):
                    self.places -= n
                    assert self.places >= 0
                case Schedule(key=key, at=at):
                    tk = TimerKey(TimerKind.USER, str(key.kind), key.task)
                    self.keys[tk] = key
                    self.timers.schedule(tk, at)
                case Unschedule(key=key):
                    self.timers.cancel(TimerKey(TimerKind.USER, str(key.kind), key.task))
                case Drained():
                    self.drained += 1

    @rule(timeout=st.sampled_from([None, 0.5, 2.0]), retries=st.integers(0, 3))
    def submit(self, timeout, retries):
        task, self.next_task = self.next_task, self.next_task + 1
        self.submitted.add(task)
        self.places += 1
        self.feed(Submitted(task, timeout, retries))

    @precondition(lambda self: len(self.live) < 4)
    @rule()
    def join(self):
        worker, self.next_worker = self.next_worker, self.next_worker + 1
        self.live.add(worker)
        self.feed(WorkerJoined(worker))

    @precondition(lambda self: any(self.running.values()))
    @rule(data=st.data(), ending=st.sampled_from(list(Ending)))
    def finish(self, data, ending):
        worker = data.draw(st.sampled_from(sorted(w for w, h in self.running.items() if h)))
        task = self.running[worker].pop(0)
        self.feed(TaskEnded(worker, task, ending))

    @precondition(lambda self: bool(self.skips))
    @rule()
    def skip(self):
        worker, task = self.skips.pop(0)
        held = self.running.get(worker, [])
        if task in held[1:]:  # not started yet: the worker drops it
            held.remove(task)
            self.feed(TaskEnded(worker, task, Ending.INTERRUPTED))

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data(), code=st.sampled_from([-9, -11, 1, 0]), said=st.integers(0, 2))
    def die(self, data, code, said):
        """It dies; its last ``said`` results were still unread."""
        worker = data.draw(st.sampled_from(sorted(self.live)))
        held = self.running.pop(worker, [])
        last_words = tuple(TaskEnded(worker, task, Ending.RETURNED) for task in held[:said])
        held = held[said:]
        if held and held[0] not in self.resolved:
            self.deaths[held[0]] = self.deaths.get(held[0], 0) + 1
        self.live.discard(worker)
        self.feed(WorkerLost(worker, WorkerExit(code), last_words))

    @rule(code=st.sampled_from([1, -9, 0]))
    def die_booting(self, code):
        worker, self.next_worker = self.next_worker, self.next_worker + 1
        self.feed(WorkerLost(worker, WorkerExit(code)))

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def close_connection(self, data):
        self.feed(WorkerClosed(data.draw(st.sampled_from(sorted(self.live)))))

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def leave(self, data):
        worker = data.draw(st.sampled_from(sorted(self.live)))
        self.running.pop(worker, None)  # what it still held it never started
        self.feed(WorkerLeaving(worker))

    @rule(data=st.data())
    def cancel(self, data):
        if self.submitted:
            self.feed(CancelAsked(data.draw(st.sampled_from(sorted(self.submitted)))))

    @rule(dt=st.sampled_from([0.1, 0.6, 1.5, 3.0]))
    def advance(self, dt):
        self.now += dt
        for key in self.timers.pop_due(self.now):
            self.feed(TimerDue(self.keys[key]))  # type: ignore[arg-type]

    @rule(cancel_queued=st.booleans())
    def close(self, cancel_queued):
        self.feed(Closing(cancel_queued))

    @invariant()
    def counts_agree(self):
        book = self.book
        assert set(book.tasks) | set(self.resolved) == self.submitted
        assert not set(book.tasks) & set(self.resolved)
        assert sum(book.outcomes.values()) == len(self.resolved)
        assert book.busy == sum(1 for w in book.workers.values() if w.held)
        for worker in book.workers.values():
            assert len(worker.held) <= 1 + book.rules.prefetch
            assert not (worker.id in book.idle and worker.held)
            assert list(worker.held) == self.running.get(worker.id, [])[:len(worker.held)] \
                or worker.leaving
        assert book.queued == sum(1 for t in book.tasks.values() if t.state == "queued")
        assert self.drained <= 1

    def teardown(self):
        # Whatever happened, live workers that do their work end every task: none is lost.
        self.advance(100.0)
        for _ in range(len(self.submitted) * 4 + 8):
            for worker in sorted(self.live - self.killed):
                while self.running.get(worker):
                    self.feed(TaskEnded(worker, self.running[worker].pop(0), Ending.RETURNED))
            for worker in sorted(self.killed & self.live):
                self.running.pop(worker, None)
                self.live.discard(worker)
                self.feed(WorkerLost(worker, WorkerExit(-9)))
            if not self.book.tasks:
                break
            if not any(not w.leaving for w in self.book.workers.values()):
                self.join()
        assert not self.book.tasks, "tasks left without an outcome"
        assert set(self.resolved) == self.submitted
        for task, outcome in self.resolved.items():
            runs = self.sends.get(task, 0)
            assert runs <= 1 + self.deaths.get(task, 0) + 4, (task, runs)
            if outcome is Outcome.DONE:
                assert runs >= 1
        assert self.places == 0


TestTaskMachine = TaskMachine.TestCase
TestTaskMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, derandomize=True, database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
