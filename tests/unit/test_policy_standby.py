"""Standby workers, decided on a fake clock: promoted instead of a fork when a slot needs a
worker now, replenished behind the promotion, replaced without touching backoff or breaker,
retired when the service stops, trips, completes or changes, and first at shutdown."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from janus_mp.core import events as ev
from janus_mp.core import policy
from janus_mp.core.actions import Action, CancelWorker, Promote, Spawn
from janus_mp.core.backoff import BackoffConfig, BreakerState
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from janus_mp.core.lifecycle import ServicePhase
from janus_mp.core.pool import SupervisorPhase, WorkerRole, WorkerState
from janus_mp.core.standby import REFILL_AFTER
from janus_mp.core.startup import FILL_BATCH
from janus_mp.core.timers import TimerKind
from tests.unit.policy_helpers import (
    check_invariants,
    pool,
    restart_at,
    service_phase,
    slot_phase,
    timer,
)
from tests.unit.policy_sim import Sim

ZERO = BackoffConfig(initial_delay=0.0, max_delay=0.0, max_retries=0)


def standbys(sim: Sim, service: str = "a") -> list[WorkerState]:
    return list(sim.state.services[service].standby)


def park_all(sim: Sim, service: str = "a") -> list[WorkerState]:
    for worker in standbys(sim, service):
        if worker.parked_at is None:
            sim.feed(ev.WorkerParked(worker.id))
    return standbys(sim, service)


def of(kind: type, actions: list[Action]) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


def test_standbys_are_forked_after_the_pool_and_never_count_as_ready():
    sim = pool(2, standby=2, backoff=ZERO)
    spawns = sim.spawned
    assert [s.standby for s in spawns] == [False, False, True, True]
    assert [s.slot for s in spawns[2:]] == [-1, -1]
    park_all(sim)
    service = sim.state.services["a"]
    assert service.ready_count() == 2 and service.desired == 2
    assert service.workers_by_phase()["standby"] == 2
    snap = sim.snapshot().service("a")
    assert len(snap.standby_parked) == 2 and snap.service.ready == 2
    assert not set(snap.standby_parked) & set(snap.service.pids)
    check_invariants(sim)


def test_a_crash_with_no_delay_promotes_the_parked_standby_and_forks_a_new_one_once_it_runs():
    sim = pool(2, standby=1, backoff=ZERO)
    (standby,) = park_all(sim)
    victim = sim.current("a", 1)
    before = len(sim.log)
    sim.exit(victim, 1)  # no delay: promoted in the exit's own step
    after = sim.log[before:]
    promote = of(Promote, after)
    assert promote == [Promote(standby.id, "a", 1, 2, None)]
    assert not of(Spawn, after)  # no fork for slot 1, and none yet for a new standby
    assert sim.current("a", 1) is standby and standby.role is WorkerRole.CURRENT
    assert slot_phase(sim, 1) is ServicePhase.STARTING
    before = len(sim.log)
    sim.ready(standby)  # it runs: only now is its successor forked, off the critical path
    assert slot_phase(sim, 1) is ServicePhase.RUNNING
    assert [s.standby for s in of(Spawn, sim.log[before:])] == [True]
    metrics = sim.state.metrics.snapshot().services["a"]
    assert metrics.standby_promotions_total == 1 and metrics.restarts_total == 1
    check_invariants(sim)


def test_a_promoted_standby_slow_to_be_ready_is_replaced_after_refill_after():
    sim = pool(1, standby=1, backoff=ZERO, wait_for_ready=True)
    (standby,) = park_all(sim)
    sim.exit(sim.current("a", 0), 1)
    assert sim.current("a", 0) is standby and not standbys(sim)
    sim.advance(REFILL_AFTER)
    assert len(standbys(sim)) == 1


def test_without_a_parked_standby_the_slot_forks_as_always():
    sim = pool(1, standby=1, backoff=ZERO)  # the standby is still booting
    before = len(sim.log)
    sim.exit(sim.current("a", 0), 1)
    spawns = of(Spawn, sim.log[before:])
    assert [(s.slot, s.standby) for s in spawns] == [(0, False)]
    assert not of(Promote, sim.log[before:])


def test_a_backoff_delay_is_honoured_and_the_standby_is_promoted_when_it_is_due():
    sim = pool(1, standby=1, backoff=BackoffConfig(initial_delay=2.0, max_delay=2.0,
                                                   max_retries=0))
    (standby,) = park_all(sim)
    sim.exit(sim.current("a", 0), 1)
    due = restart_at(sim)
    assert due is not None and due > sim.now
    sim.advance(due - sim.now - 0.001)
    assert not of(Promote, sim.log)
    sim.advance(0.001)
    assert of(Promote, sim.log) and sim.current("a", 0) is standby


def test_a_killed_parked_standby_is_replaced_at_once_touching_no_backoff_or_breaker():
    sim = pool(1, standby=1, backoff=BackoffConfig(max_retries=1))
    serving = sim.current("a", 0)
    for _ in range(4):
        (standby,) = park_all(sim)
        before = len(sim.log)
        sim.exit(standby, -9)
        assert [s.standby for s in of(Spawn, sim.log[before:])] == [True]
    service = sim.state.services["a"]
    assert service.breaker.state is BreakerState.CLOSED
    slot = service.slots[0]
    assert slot.lifecycle.total_failures == 0 and slot.restarts == 0
    assert sim.current("a", 0) is serving
    check_invariants(sim)


def test_standbys_dying_while_booting_are_retried_later_and_later():
    sim = pool(1, standby=1, backoff=ZERO)
    delays = []
    for _ in range(4):
        (standby,) = standbys(sim)
        sim.exit(standby, 1)  # e.g. its service failed to load
        assert not standbys(sim)
        due = timer(sim, TimerKind.STANDBY)
        assert due is not None
        delays.append(due - sim.now)
        sim.advance(due - sim.now)
    assert delays == [1.0, 2.0, 4.0, 8.0]
    park_all(sim)  # one parks: the next boot death starts from the first delay again
    sim.exit(standbys(sim)[0], -9)
    assert timer(sim, TimerKind.STANDBY) is None and len(standbys(sim)) == 1


def test_a_fork_refused_for_a_standby_is_retried_later():
    sim = pool(1, ready=True, backoff=ZERO, standby=0)
    sim.fail_spawns = "EAGAIN"
    more = dataclasses.replace(sim.state.options["a"], standby=1)  # only standby changes
    sim.feed(ev.Update("a", more, False))
    assert not standbys(sim) and timer(sim, TimerKind.STANDBY) == sim.now + 1.0
    sim.fail_spawns = None
    sim.advance(1.0)
    assert len(standbys(sim)) == 1
    check_invariants(sim)


def test_shutdown_stops_every_standby_first_even_of_later_stages():
    sim = Sim()
    sim.register("first", SpawnOptions(name="first", workers=1, start_order=0, standby=1))
    sim.register("last", SpawnOptions(name="last", workers=1, start_order=1, standby=1))
    sim.begin()
    sim.ready_all()
    park_all(sim, "first")
    park_all(sim, "last")
    before = len(sim.log)
    sim.feed(ev.SignalReceived("SIGTERM"))
    cancelled = [a.worker for a in of(CancelWorker, sim.log[before:])]
    standby_ids = {w.id for name in ("first", "last") for w in standbys(sim, name)}
    assert set(cancelled[:2]) == standby_ids  # before the first stage ("last") is stopped
    assert sim.current("first", 0).id not in cancelled  # the later stage waits its turn
    sim.exit_cancelled()
    sim.exit_cancelled()
    assert sim.finished and not of(Spawn, sim.log[before:])


def test_a_tripped_breaker_retires_standbys_and_closing_it_brings_them_back():
    backoff = BackoffConfig(initial_delay=0.0, max_delay=0.0, max_retries=1, window=60.0,
                            half_open_after=5.0, trial_period=1.0)
    sim = pool(1, standby=1, backoff=backoff, keeper=True)
    service = sim.state.services["a"]
    while service.breaker.state is BreakerState.CLOSED:
        park_all(sim)
        sim.exit(sim.current("a", 0), 1)
        sim.advance(0.0)
        if service.slots[0].current is not None:
            sim.ready(sim.current("a", 0))
    assert service.breaker.state is BreakerState.OPEN
    assert all(w.stop_cause is not None for w in service.standby)
    sim.exit_cancelled()
    assert not service.standby
    sim.advance(5.0)  # half-open: one trial worker, no standby yet
    assert not service.standby
    sim.ready(sim.current("a", 0))
    sim.advance(1.0)  # the trial held: closed, and the standby is back
    assert service.breaker.state is BreakerState.CLOSED and len(service.standby) == 1
    check_invariants(sim)


def test_a_parked_standby_past_max_lifetime_is_retired_and_replaced():
    sim = pool(1, standby=1, backoff=ZERO, max_lifetime=10.0, ready=False)
    (standby,) = park_all(sim)  # parked at 0: its lifetime ends at 10
    sim.advance(5.0)
    sim.ready(sim.current("a", 0))  # ready at 5: the serving worker's ends at 15
    sim.advance(5.0)
    assert standby.stop_cause is not None and standby.id in sim.cancelled
    sim.exit(standby, 0)
    (fresh,) = standbys(sim)
    assert fresh is not standby
    assert sim.state.services["a"].slots[0].restarts == 0


def test_a_reload_resizes_standbys_and_a_changed_service_renews_them():
    sim = pool(1, standby=3, backoff=ZERO)
    first = park_all(sim)
    sim.feed(ev.Update("a", dataclasses.replace(sim.state.options["a"], standby=1), False))
    assert [w.stop_cause is not None for w in first] == [False, True, True]  # newest go
    assert not of(Spawn, sim.log[-5:])  # nothing else restarted
    sim.exit_cancelled()
    assert standbys(sim) == first[:1]
    sim.feed(ev.Update("a", dataclasses.replace(sim.state.options["a"], stop_timeout=3.0),
                       False))  # changed: rolling restart
    assert first[0].stop_cause is not None
    sim.exit(first[0], 0)
    assert len(standbys(sim)) == 1 and standbys(sim)[0] is not first[0]
    check_invariants(sim)


def test_a_service_that_completes_retires_its_standbys_and_then_ends():
    sim = pool(1, standby=1, restart="never", backoff=ZERO)
    (standby,) = park_all(sim)
    sim.exit(sim.current("a", 0), 0)
    assert standby.id in sim.cancelled
    assert service_phase(sim) is ServicePhase.STOPPING
    assert not sim.finished
    sim.exit(standby, 0)
    assert service_phase(sim) is ServicePhase.TERMINATED
    assert sim.state.services["a"].end_reason is not None
    assert sim.state.phase is not SupervisorPhase.RUNNING  # everything ended by itself


# -- fresh slots are filled a batch per loop turn (core.startup) -------------------------------
def test_a_large_pool_is_forked_a_batch_per_turn_then_its_standbys():
    sim = Sim(SupervisorConfig(max_workers=100))
    sim.register("a", SpawnOptions(name="a", workers=40, standby=2))
    sim.begin()
    assert len(sim.spawned) == FILL_BATCH  # the first batch in the Begin step
    assert timer(sim, TimerKind.FILL, service="") == sim.now  # the next one: next turn
    sim.advance(0.0)
    assert len(sim.spawned) == 42 and [s.standby for s in sim.spawned[-2:]] == [True, True]
    assert not any(s.standby for s in sim.spawned[:40])
    assert sorted(s.slot for s in sim.spawned[:40]) == list(range(40))
    check_invariants(sim)


def test_a_sigterm_between_batches_ends_the_slots_still_queued():
    sim = Sim(SupervisorConfig(max_workers=100))
    sim.register("a", SpawnOptions(name="a", workers=40))
    sim.begin()
    sim.feed(ev.SignalReceived("SIGTERM"))  # arrives before the second batch's turn
    sim.advance(0.0)
    assert len(sim.spawned) == FILL_BATCH  # nothing more was forked
    phases = {s.lifecycle.phase for s in sim.state.services["a"].slots.values()
              if s.current is None}
    assert phases == {ServicePhase.TERMINATED}
    sim.exit_cancelled()
    assert sim.finished


def test_scaling_up_by_many_is_batched_too():
    sim = pool(2, config=SupervisorConfig(max_workers=100))
    sim.feed(ev.Scale("a", workers=50))
    assert len(sim.spawned) == 2 + FILL_BATCH
    sim.advance(0.0)
    assert len(sim.spawned) == 50
    sim.ready_all()
    assert sim.state.services["a"].ready_count() == 50
    check_invariants(sim)


def test_a_fork_refused_with_no_backoff_delay_is_retried_on_the_next_turn_not_in_a_spin():
    sim = pool(1, backoff=ZERO)
    sim.fail_spawns = "EAGAIN"
    sim.exit(sim.current("a", 0), 1)  # restarted at once: that fork fails...
    assert len(sim.spawned) == 2
    assert restart_at(sim) == sim.now  # ...and the retry waits for the loop's next turn
    sim.fail_spawns = None
    sim.advance(0.0)
    assert len(sim.spawned) == 3 and sim.current("a", 0).pid is not None


def _decided_both_ways(event_of: Any) -> tuple[list[Action], list[Action], list[Action],
                                                 dict[str, int], Sim]:
    """The same exit decided by two identical pools: once listing every action, once handing
    the Promote to an urgent callback. Returns (listed, urgent ones, the rest, what was
    recorded when the callback ran, the urgent pool)."""
    listed_sim, urgent_sim = pool(2, standby=1, backoff=ZERO), pool(2, standby=1, backoff=ZERO)
    for sim in (listed_sim, urgent_sim):
        park_all(sim)
    listed = policy.handle(listed_sim.state, event_of(listed_sim), listed_sim.now)
    urgent: list[Action] = []
    seen: dict[str, int] = {}

    def promote_now(action: Action) -> None:
        urgent.append(action)
        seen["exits recorded"] = len(urgent_sim.state.recent_exits)
        seen["terminations"] = urgent_sim.state.metrics.snapshot().services["a"].terminated

    recorded_before = len(urgent_sim.state.recent_exits)
    rest = policy.handle(urgent_sim.state, event_of(urgent_sim), urgent_sim.now,
                         urgent=promote_now)
    seen["exits before"] = recorded_before
    return listed, urgent, rest, seen, urgent_sim


@pytest.mark.parametrize("kind", ["announced", "crash"])
def test_an_urgent_promote_goes_out_before_the_exit_is_recorded_and_the_rest_keeps_its_order(
        kind: str):
    def event_of(sim: Sim) -> ev.Event:
        victim = sim.current("a", 1)
        return ev.WorkerExiting(victim.id, 1) if kind == "announced" else \
            ev.WorkerExited(victim.id, -9)

    listed, urgent, rest, seen, sim = _decided_both_ways(event_of)
    assert len(of(Promote, listed)) == 1
    assert urgent == of(Promote, listed)  # the same promotion, handed over at once...
    assert rest == [a for a in listed if not isinstance(a, Promote)]  # ...the rest as listed
    # When the standby was told, the exit was not recorded yet; it was by the step's end.
    assert seen["exits recorded"] == seen["exits before"]
    assert len(sim.state.recent_exits) == seen["exits before"] + 1
    assert sim.state.metrics.snapshot().services["a"].terminated == seen["terminations"] + 1
    assert sim.current("a", 1).role is WorkerRole.CURRENT and sim.current("a", 1).promoted
    check_invariants(sim)


def test_without_a_standby_an_urgent_callback_is_never_called_and_nothing_moves():
    plain, other = pool(2, backoff=ZERO), pool(2, backoff=ZERO)
    called: list[Action] = []
    listed = policy.handle(plain.state, ev.WorkerExited(plain.current("a", 0).id, 1), plain.now)
    rest = policy.handle(other.state, ev.WorkerExited(other.current("a", 0).id, 1), other.now,
                         urgent=called.append)
    assert not called and rest == listed and of(Spawn, rest)
