"""The task pool's decisions on a fake clock: assignment, retries, quarantine, timeouts,
cancellation, backpressure and draining (core/tasks.py)."""

from __future__ import annotations

import pytest

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
    TaskEnded,
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
from janus_mp.core.tasks import TaskBook, TaskRules, handle
from janus_mp.errors import ConfigError

KILLED = WorkerExit(-9)


def of(kind, actions):
    return [a for a in actions if isinstance(a, kind)]


def test_idle_workers_take_queued_tasks_oldest_first():
    book = TaskBook(TaskRules(prefetch=0))
    assert of(Send, handle(book, Submitted(1), 0.0)) == []
    handle(book, Submitted(2), 0.0)
    out = handle(book, WorkerJoined(10), 0.0)
    assert of(Send, out) == [Send(10, 1)] and Released(1) in out
    out = handle(book, WorkerJoined(11), 0.0)
    assert of(Send, out) == [Send(11, 2)]
    assert book.busy == 2 and book.queued == 0
    out = handle(book, TaskEnded(10, 1, Ending.RETURNED), 1.0)
    assert of(Resolve, out) == [Resolve(1, Outcome.DONE)]
    assert book.busy == 1 and list(book.idle) == [10]


def test_a_worker_death_fails_only_the_task_it_held():
    book = TaskBook(TaskRules(prefetch=0))
    for task in (1, 2, 3):
        handle(book, Submitted(task), 0.0)
    handle(book, WorkerJoined(10), 0.0)
    handle(book, WorkerJoined(11), 0.0)
    out = handle(book, WorkerLost(10, KILLED), 1.0)
    assert of(Resolve, out) == [Resolve(1, Outcome.DIED, KILLED, 1)]
    assert book.queued == 1 and 2 in book.tasks and 3 in book.tasks
    handle(book, WorkerJoined(12), 1.0)  # the replacement takes what waits
    assert book.tasks[3].worker == 12


def test_retries_run_a_task_again_after_a_death_then_it_dies_for_good():
    book = TaskBook()
    handle(book, Submitted(1, retries=1), 0.0)
    handle(book, WorkerJoined(10), 0.0)
    out = handle(book, WorkerLost(10, KILLED), 1.0)
    assert of(Resolve, out) == [] and book.queued == 1
    assert of(Released, out) == []  # a retry holds no queue place
    out = handle(book, WorkerJoined(11), 1.0)
    assert of(Send, out) == [Send(11, 1)]
    out = handle(book, WorkerLost(11, WorkerExit(-11)), 2.0)
    assert of(Resolve, out) == [Resolve(1, Outcome.DIED, WorkerExit(-11), 2)]


def test_a_task_that_kills_max_worker_deaths_workers_is_poison():
    book = TaskBook(TaskRules(max_worker_deaths=3))
    handle(book, Submitted(1, retries=10), 0.0)
    for worker in (10, 11):
        handle(book, WorkerJoined(worker), 0.0)
        assert of(Resolve, handle(book, WorkerLost(worker, KILLED), 0.0)) == []
    handle(book, WorkerJoined(12), 0.0)
    out = handle(book, WorkerLost(12, KILLED), 0.0)
    assert of(Resolve, out) == [Resolve(1, Outcome.POISON, KILLED, 3)]
    assert not book.tasks and book.outcomes[Outcome.POISON] == 1


def test_timeout_kills_the_worker_and_fails_the_task_alone():
    book = TaskBook()
    out = handle(book, Submitted(1, timeout=5.0), 0.0)
    out = handle(book, WorkerJoined(10), 1.0)
    key = TaskTimer(TimerKind.TIMEOUT, 1)
    assert Schedule(key, 6.0) in out
    handle(book, Submitted(2), 2.0)
    out = handle(book, TimerDue(key), 6.0)
    assert KillWorker(10, "task ran past its timeout (5 s)") in out
    assert of(Resolve, out) == [Resolve(1, Outcome.TIMEOUT)]
    assert of(Send, out) == []  # nothing more for the doomed worker
    out = handle(book, WorkerLost(10, KILLED), 6.1)
    assert of(Resolve, out) == [] and 2 in book.tasks  # task 2 waits for a live worker
    handle(book, WorkerJoined(11), 6.2)
    assert book.tasks[2].worker == 11


def test_a_result_beats_its_timeout():
    book = TaskBook()
    handle(book, Submitted(1, timeout=5.0), 0.0)
    handle(book, WorkerJoined(10), 0.0)
    out = handle(book, TaskEnded(10, 1, Ending.RAISED), 4.0)
    assert Unschedule(TaskTimer(TimerKind.TIMEOUT, 1)) in out
    assert of(Resolve, out) == [Resolve(1, Outcome.RAISED)]
    assert of(KillWorker, handle(book, TimerDue(TaskTimer(TimerKind.TIMEOUT, 1)), 5.0)) == []


def test_a_late_result_after_the_timeout_is_ignored():
    book = TaskBook()
    handle(book, Submitted(1, timeout=1.0), 0.0)
    handle(book, WorkerJoined(10), 0.0)
    handle(book, TimerDue(TaskTimer(TimerKind.TIMEOUT, 1)), 1.0)
    assert handle(book, TaskEnded(10, 1, Ending.RETURNED), 1.0) == []
    assert book.outcomes[Outcome.TIMEOUT] == 1 and book.outcomes[Outcome.DONE] == 0


def test_cancelling_a_queued_task_removes_it_and_frees_its_place():
    book = TaskBook()
    handle(book, Submitted(1), 0.0)
    out = handle(book, CancelAsked(1), 0.0)
    assert of(Resolve, out) == [Resolve(1, Outcome.CANCELLED)] and Released(1) in out
    assert of(Send, handle(book, WorkerJoined(10), 0.0)) == []
    assert book.queued == 0


def test_cancelling_a_running_task_interrupts_then_kills():
    book = TaskBook(TaskRules(cancel_grace=2.0))
    handle(book, Submitted(1), 0.0)
    handle(book, WorkerJoined(10), 0.0)
    out = handle(book, CancelAsked(1), 1.0)
    key = TaskTimer(TimerKind.CANCEL, 1)
    assert out == [Interrupt(10, 1), Schedule(key, 3.0)]
    assert handle(book, CancelAsked(1), 1.5) == []  # idempotent
    out = handle(book, TimerDue(key), 3.0)
    assert of(KillWorker, out) and of(Resolve, out) == [Resolve(1, Outcome.CANCELLED)]


def test_a_cancelled_task_that_stops_cooperatively_keeps_its_worker():
    book = TaskBook()
    handle(book, Submitted(1), 0.0)
    handle(book, WorkerJoined(10), 0.0)
    handle(book, CancelAsked(1), 1.0)
    out = handle(book, TaskEnded(10, 1, Ending.INTERRUPTED), 1.1)
    assert Unschedule(TaskTimer(TimerKind.CANCEL, 1)) in out
    assert of(Resolve, out) == [Resolve(1, Outcome.CANCELLED)]
    assert list(book.idle) == [10]


def test_a_leaving_worker_gives_back_the_task_it_never_started():
    book = TaskBook()
    handle(book, Submitted(1), 0.0)
    handle(book, WorkerJoined(10), 0.0)
    out = handle(book, WorkerLeaving(10), 0.0)
    assert of(Resolve, out) == [] and book.queued == 1 and book.tasks[1].runs == 0
    assert handle(book, WorkerLost(10, WorkerExit(0)), 0.0) == []
    handle(book, WorkerJoined(11), 0.0)
    assert book.tasks[1].worker == 11


def test_max_tasks_per_worker_retires_the_worker():
    book = TaskBook(TaskRules(max_tasks_per_worker=2))
    for task in (1, 2, 3):
        handle(book, Submitted(task), 0.0)
    handle(book, WorkerJoined(10), 0.0)
    handle(book, TaskEnded(10, 1, Ending.RETURNED), 0.0)
    out = handle(book, TaskEnded(10, 2, Ending.RETURNED), 0.0)
    assert Retire(10) in out and of(Send, out) == []
    assert book.queued == 1


def test_closing_drains_then_says_so_once():
    book = TaskBook(TaskRules(prefetch=0))
    handle(book, Submitted(1), 0.0)
    handle(book, Submitted(2), 0.0)
    handle(book, WorkerJoined(10), 0.0)
    out = handle(book, Closing(cancel_queued=True), 0.0)
    assert of(Resolve, out) == [Resolve(2, Outcome.CANCELLED)] and not of(Drained, out)
    out = handle(book, TaskEnded(10, 1, Ending.RETURNED), 0.0)
    assert of(Drained, out) == [Drained()]
    assert handle(book, WorkerJoined(11), 0.0) == []


def test_a_submission_after_closing_is_cancelled():
    book = TaskBook()
    handle(book, Closing(), 0.0)
    out = handle(book, Submitted(1), 0.0)
    assert of(Resolve, out) == [Resolve(1, Outcome.CANCELLED)]


def test_a_task_id_is_submitted_once():
    book = TaskBook()
    handle(book, Submitted(1), 0.0)
    with pytest.raises(ValueError):
        handle(book, Submitted(1), 0.0)


@pytest.mark.parametrize("kwargs, key", [
    ({"max_worker_deaths": 0}, "max_worker_deaths"),
    ({"cancel_grace": -1}, "cancel_grace"),
    ({"max_tasks_per_worker": 0}, "max_tasks_per_worker"),
    ({"max_boot_failures": 0}, "max_boot_failures"),
])
def test_rules_are_checked(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        TaskRules(**kwargs)


def test_notices_tell_the_outcomes_of_the_pools_making():
    from janus_mp.core.notices import NoticeKind
    from janus_mp.core.tasks import notice_for

    died = notice_for("crunch", Resolve(4, Outcome.DIED, WorkerExit(-9, oom_killed=True), 1), 2.0)
    assert died is not None and died.kind is NoticeKind.TASK_FAILED
    assert died.to_dict() == {"event": "task_failed", "at": 2.0, "service": "crunch",
                              "exit_code": -9, "reason": "died",
                              "message": "task 4: its worker died (OOM kill)"}
    assert notice_for("crunch", Resolve(5, Outcome.TIMEOUT), 0.0).reason == "timeout"
    assert notice_for("crunch", Resolve(6, Outcome.RAISED), 0.0) is None
    assert notice_for("crunch", Resolve(7, Outcome.DONE), 0.0) is None


def test_workers_dying_before_they_join_break_the_pool_until_one_joins():
    book = TaskBook(TaskRules(max_boot_failures=2))
    handle(book, Submitted(1), 0.0)
    assert handle(book, WorkerLost(10, WorkerExit(1)), 0.0) == []
    assert handle(book, WorkerLost(11, WorkerExit(0)), 0.0) == []  # a clean stop: no failure
    out = handle(book, WorkerLost(12, WorkerExit(1)), 0.0)
    assert of(Resolve, out) == [Resolve(1, Outcome.BROKEN, WorkerExit(1))]
    out = handle(book, Submitted(2), 0.0)  # broken: what comes fails at once
    assert of(Resolve, out) == [Resolve(2, Outcome.BROKEN, WorkerExit(1))]
    assert book.queued == 0 and not book.tasks
    handle(book, WorkerJoined(13), 0.0)
    assert of(Send, handle(book, Submitted(3), 0.0)) == [Send(13, 3)]


def test_prefetch_only_when_no_worker_is_idle_and_in_order():
    book = TaskBook(TaskRules(prefetch=1))
    handle(book, WorkerJoined(10), 0.0)
    handle(book, WorkerJoined(11), 0.0)
    out = []
    for task in (1, 2, 3, 4, 5):
        out += handle(book, Submitted(task), 0.0)
    assert of(Send, out) == [Send(10, 1), Send(11, 2), Send(10, 3), Send(11, 4)]
    assert book.queued == 1 and book.busy == 2
    assert book.tasks[1].state == "running" and book.tasks[3].state == "sent"
    out = handle(book, TaskEnded(10, 1, Ending.RETURNED), 1.0)
    assert of(Send, out) == [Send(10, 5)]  # 3 runs now, 5 waits behind it
    assert book.tasks[3].state == "running" and book.tasks[3].started_at == 1.0


def test_a_prefetched_task_starts_its_timeout_when_it_starts():
    book = TaskBook(TaskRules(prefetch=1))
    handle(book, WorkerJoined(10), 0.0)
    handle(book, Submitted(1, timeout=5.0), 0.0)
    out = handle(book, Submitted(2, timeout=5.0), 0.0)
    assert of(Schedule, out) == []  # sent, not started
    out = handle(book, TaskEnded(10, 1, Ending.RETURNED), 3.0)
    assert Schedule(TaskTimer(TimerKind.TIMEOUT, 2), 8.0) in out


def test_a_death_fails_the_running_task_and_gives_back_the_ones_behind():
    book = TaskBook(TaskRules(prefetch=2))
    handle(book, WorkerJoined(10), 0.0)
    for task in (1, 2, 3):
        handle(book, Submitted(task), 0.0)
    out = handle(book, WorkerLost(10, KILLED), 1.0)
    assert of(Resolve, out) == [Resolve(1, Outcome.DIED, KILLED, 1)]
    assert list(book.queue) == [2, 3] and book.tasks[2].runs == 0
    out = handle(book, WorkerJoined(11), 1.0)
    assert of(Send, out) == [Send(11, 2), Send(11, 3)]


def test_a_timed_out_worker_gives_back_what_it_held_behind_at_its_exit():
    book = TaskBook(TaskRules(prefetch=1))
    handle(book, WorkerJoined(10), 0.0)
    handle(book, Submitted(1, timeout=1.0), 0.0)
    handle(book, Submitted(2), 0.0)
    out = handle(book, TimerDue(TaskTimer(TimerKind.TIMEOUT, 1)), 1.0)
    assert of(Resolve, out) == [Resolve(1, Outcome.TIMEOUT)] and of(KillWorker, out)
    assert 2 in book.tasks and book.queued == 0  # held, until the worker is gone
    out = handle(book, WorkerLost(10, KILLED), 1.5)
    assert of(Resolve, out) == [] and list(book.queue) == [2]


def test_a_late_result_of_a_timed_out_task_means_the_next_one_started():
    book = TaskBook(TaskRules(prefetch=1))
    handle(book, WorkerJoined(10), 0.0)
    handle(book, Submitted(1, timeout=1.0), 0.0)
    handle(book, Submitted(2), 0.0)
    handle(book, TimerDue(TaskTimer(TimerKind.TIMEOUT, 1)), 1.0)
    assert handle(book, TaskEnded(10, 1, Ending.RETURNED), 1.0) == []  # dropped
    assert book.tasks[2].state == "running"
    out = handle(book, WorkerLost(10, KILLED), 1.5)  # so the kill hit task 2 running
    assert of(Resolve, out) == [Resolve(2, Outcome.DIED, KILLED, 1)]


def test_cancelling_a_prefetched_task_ends_it_and_the_worker_drops_it():
    book = TaskBook(TaskRules(prefetch=1))
    handle(book, WorkerJoined(10), 0.0)
    handle(book, Submitted(1), 0.0)
    handle(book, Submitted(2), 0.0)
    assert handle(book, CancelAsked(2), 0.5) == [Skip(10, 2), Resolve(2, Outcome.CANCELLED)]
    assert list(book.workers[10].held) == [1, 2]  # until the worker answers for it
    assert handle(book, TaskEnded(10, 2, Ending.INTERRUPTED), 0.6) == []  # it dropped it
    assert list(book.workers[10].held) == [1]


def test_a_prefetched_task_cancelled_after_it_started_runs_out_its_result_dropped():
    book = TaskBook(TaskRules(prefetch=1))
    handle(book, WorkerJoined(10), 0.0)
    for task in (1, 2, 3):
        handle(book, Submitted(task), 0.0)
    handle(book, CancelAsked(2), 0.5)
    out = handle(book, TaskEnded(10, 1, Ending.RETURNED), 1.0)
    assert of(Interrupt, out) == [] and of(Send, out) == [Send(10, 3)]
    assert handle(book, TaskEnded(10, 2, Ending.RETURNED), 1.1) == []
    assert book.tasks[3].state == "running" and book.outcomes[Outcome.CANCELLED] == 1


def test_shutdown_cancels_prefetched_tasks_too():
    book = TaskBook(TaskRules(prefetch=1))
    handle(book, WorkerJoined(10), 0.0)
    for task in (1, 2, 3):
        handle(book, Submitted(task), 0.0)
    out = handle(book, Closing(cancel_queued=True), 0.0)
    assert of(Resolve, out) == [Resolve(3, Outcome.CANCELLED), Resolve(2, Outcome.CANCELLED)]
    assert of(Skip, out) == [Skip(10, 2)]
    out = handle(book, TaskEnded(10, 1, Ending.RETURNED), 1.0)
    assert of(Drained, out) == [Drained()]


def test_prefetch_respects_max_tasks_per_worker():
    book = TaskBook(TaskRules(prefetch=1, max_tasks_per_worker=1))
    handle(book, WorkerJoined(10), 0.0)
    handle(book, Submitted(1), 0.0)
    out = handle(book, Submitted(2), 0.0)
    assert of(Send, out) == []  # it will be retired after task 1


def test_a_closed_connection_gets_nothing_more_and_its_exit_decides():
    book = TaskBook(TaskRules(prefetch=0))
    handle(book, WorkerJoined(10), 0.0)
    handle(book, WorkerClosed(10), 0.0)
    assert of(Send, handle(book, Submitted(1), 0.0)) == []
    assert of(Resolve, handle(book, WorkerLost(10, KILLED), 0.0)) == []
    assert book.queued == 1


def test_last_words_count_before_the_death():
    book = TaskBook(TaskRules(prefetch=1))
    handle(book, WorkerJoined(10), 0.0)
    for task in (1, 2, 3):
        handle(book, Submitted(task), 0.0)
    out = handle(book, WorkerLost(10, KILLED, (TaskEnded(10, 1, Ending.RETURNED),)), 1.0)
    assert of(Resolve, out) == [Resolve(1, Outcome.DONE), Resolve(2, Outcome.DIED, KILLED, 1)]
    assert of(Send, out) == []  # nothing for the dead worker, even after its result
    assert list(book.queue) == [3]
