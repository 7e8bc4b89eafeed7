"""The circuit breaker: trip, stop, half-open trial, close or re-open, ``critical``; and what
``status`` and ``/metrics`` show after a trip (the phantom ``stopping`` row was a bug)."""

from __future__ import annotations

import pytest

from janus_mp.core import events as ev
from janus_mp.core.actions import CancelWorker, ShutdownStarted, Spawn
from janus_mp.core.backoff import BackoffConfig, BreakerState
from janus_mp.core.lifecycle import ServicePhase, TerminationKind
from janus_mp.core.pool import SupervisorPhase
from janus_mp.core.timers import TimerKind
from janus_mp.errors import JanusError
from tests.unit.policy_helpers import (
    FAST,
    check_invariants,
    pool,
    service_phase,
    slot_phase,
    terminated,
    timer,
)
from tests.unit.policy_sim import Sim

HALF_OPEN = BackoffConfig(initial_delay=0.1, max_delay=1.0, max_retries=3, window=60.0,
                          half_open_after=5.0, trial_period=10.0)


def _breaker(sim: Sim, service: str = "a") -> BreakerState:
    return sim.state.services[service].breaker.state


def _crash_loop(sim: Sim, times: int, slot: int = 0) -> None:
    """Slot ``slot`` fails ``times`` times, each restart let through."""
    for _ in range(times):
        sim.exit(sim.current("a", slot), 1)
        check_invariants(sim)
        sim.advance(1.0)


def _trip(sim: Sim) -> None:
    _crash_loop(sim, 2)
    sim.exit(sim.current("a", 0), 1)
    assert _breaker(sim) is BreakerState.OPEN
    check_invariants(sim)


# -- opening ---------------------------------------------------------------------------------
def test_the_breaker_opens_on_the_max_retries_th_failure_in_the_window():
    sim = pool(3, keeper=True, backoff=FAST)
    _crash_loop(sim, 2)
    assert _breaker(sim) is BreakerState.CLOSED
    trips_before = sim.state.metrics.snapshot().circuit_breaker_trips_total
    sim.exit(sim.current("a", 0), 1)
    assert _breaker(sim) is BreakerState.OPEN
    assert trips_before == 0
    assert sim.state.metrics.snapshot().services["a"].circuit_breaker_trips_total == 1


def test_failures_of_different_slots_add_up():
    sim = pool(3, keeper=True, backoff=FAST)
    for slot in range(3):
        sim.exit(sim.current("a", slot), -9)
    assert _breaker(sim) is BreakerState.OPEN


def test_failures_spread_wider_than_the_window_never_trip_it():
    sim = pool(1, keeper=True, backoff=FAST)
    for _ in range(10):
        sim.exit(sim.current("a", 0), 1)
        sim.advance(30.0)  # two failures per window at most
    assert _breaker(sim) is BreakerState.CLOSED
    assert len(sim.spawned) == 1 + 10 + 1  # every failure restarted (keeper included)


def test_clean_and_forced_exits_do_not_count():
    sim = pool(1, keeper=True, restart="always", backoff=FAST,
               force_restart_codes=frozenset({75}))
    for code in (0, 75, 0, 75, 0, 75):
        sim.exit(sim.current("a", 0), code)
        sim.advance(1.0)
    assert _breaker(sim) is BreakerState.CLOSED


def test_a_trip_stops_every_worker_and_restarts_nothing():
    sim = pool(3, keeper=True, backoff=FAST)
    _crash_loop(sim, 2)
    others = [sim.current("a", 1), sim.current("a", 2)]
    actions = sim.feed(ev.WorkerExited(sim.current("a", 0).id, 1))
    assert {a.worker for a in actions if isinstance(a, CancelWorker)} == {w.id for w in others}
    assert not any(isinstance(a, Spawn) for a in actions)
    assert timer(sim, TimerKind.RESTART, "a", 0) is None  # its pending restart is gone
    for worker in others:
        sim.exit(worker, 0)
    spawned = len(sim.spawned)
    sim.advance(3600)
    assert len(sim.spawned) == spawned
    assert terminated(sim)["stopped"] == 2
    assert service_phase(sim) is ServicePhase.TERMINATED
    assert sim.state.services["a"].lifecycle.termination_reason.kind is \
        TerminationKind.CIRCUIT_BREAKER_OPEN
    assert sim.state.phase is SupervisorPhase.RUNNING  # not critical: the others keep going
    assert service_phase(sim, "keeper") is ServicePhase.RUNNING
    check_invariants(sim)


def test_a_trip_without_half_open_leaves_no_phantom_stopping_row():
    # The bug: after a trip, `status` showed a slot `stopping` with no pid, the gauge kept
    # phase="stopping" at 1, and the slot's row said breaker `closed` with 0 failures.
    sim = pool(4, keeper=True, backoff=FAST)
    sim.exit(sim.current("a", 1), 1)  # slots 1 and 2 are backing off when it trips,
    sim.exit(sim.current("a", 2), -9)
    sim.exit(sim.current("a", 0), 1)  # slot 0's worker is gone, slot 3's still runs
    assert _breaker(sim) is BreakerState.OPEN
    check_invariants(sim)  # a row `stopping` must have a process; gauge == rows
    rows = sim.snapshot().service("a").workers
    assert all(row.breaker == "open" for row in rows)
    assert [row.phase for row in rows][:3] == [ServicePhase.TERMINATED] * 3  # no process
    assert rows[3].pids
    sim.exit_cancelled()
    sim.exit_signalled()
    snap = sim.snapshot().service("a")
    assert [row.phase for row in snap.workers] == [ServicePhase.TERMINATED] * 4
    assert all(row.breaker == "open" for row in snap.workers)
    assert snap.service.breaker == "open"
    assert [row.total_failures for row in snap.workers] == [1, 1, 1, 0]
    phases = sim.state.metrics.snapshot().services["a"].workers_by_phase
    assert phases.get("stopping", 0) == 0 and phases["terminated"] == 4
    check_invariants(sim)


def test_a_single_non_critical_service_that_trips_ends_the_supervisor_with_1():
    sim = pool(1, backoff=FAST)
    _trip(sim)
    assert sim.state.phase is SupervisorPhase.STOPPING
    assert sim.state.exit_status == 1
    assert sim.finished


# -- critical ----------------------------------------------------------------------------------
def test_a_critical_service_that_trips_shuts_the_supervisor_down_with_1():
    sim = pool(2, keeper=True, backoff=FAST, critical=True)
    _crash_loop(sim, 2)
    actions = sim.feed(ev.WorkerExited(sim.current("a", 0).id, 1))
    assert ShutdownStarted(False) in actions
    assert sim.state.phase is SupervisorPhase.STOPPING and sim.state.exit_status == 1
    keeper = sim.current("keeper", 0)
    assert keeper.id in sim.cancelled  # its stage stops at once, a draining or not
    sim.exit_cancelled()
    assert sim.finished and sim.state.exit_status == 1
    assert service_phase(sim, "keeper") is ServicePhase.TERMINATED


def test_a_critical_service_escalates_at_its_first_trip_even_with_half_open():
    # half-open is the default now: a critical service that waited for it would never
    # escalate, and the orchestrator above would never restart the supervisor.
    sim = pool(2, keeper=True, backoff=HALF_OPEN, critical=True)
    _trip(sim)
    assert sim.state.phase is SupervisorPhase.STOPPING
    assert sim.state.exit_status == 1
    assert timer(sim, TimerKind.HALF_OPEN) is None


# -- half-open ---------------------------------------------------------------------------------
def _tripped_half_open(workers: int = 3) -> Sim:
    sim = pool(workers, keeper=True, backoff=HALF_OPEN)
    _trip(sim)
    assert timer(sim, TimerKind.HALF_OPEN) == pytest.approx(sim.now + 5.0)
    sim.exit_cancelled()
    assert not sim.workers("a")
    assert {row.phase for row in sim.snapshot().service("a").workers} == \
        {ServicePhase.CIRCUIT_OPEN}
    assert service_phase(sim) is ServicePhase.CIRCUIT_OPEN
    return sim


def test_half_open_starts_one_trial_worker_after_half_open_after():
    sim = _tripped_half_open()
    spawned = len(sim.spawned)
    sim.advance(4.9)
    assert len(sim.spawned) == spawned
    sim.advance(0.1)
    assert len(sim.spawned) == spawned + 1
    assert _breaker(sim) is BreakerState.HALF_OPEN
    assert len(sim.workers("a")) == 1
    assert slot_phase(sim, 0) is ServicePhase.STARTING
    assert slot_phase(sim, 1) is ServicePhase.CIRCUIT_OPEN
    check_invariants(sim)


def test_a_trial_that_holds_for_the_trial_period_closes_it_and_the_pool_refills():
    sim = _tripped_half_open()
    sim.advance(5.0)
    trial = sim.current("a", 0)
    sim.ready(trial)
    assert timer(sim, TimerKind.TRIAL) == pytest.approx(sim.now + 10.0)
    sim.advance(9.9)
    assert len(sim.workers("a")) == 1 and _breaker(sim) is BreakerState.HALF_OPEN
    sim.advance(0.1)
    assert _breaker(sim) is BreakerState.CLOSED
    assert len(sim.workers("a")) == 3
    sim.ready_all("a")
    assert service_phase(sim) is ServicePhase.RUNNING
    assert [row.phase for row in sim.snapshot().service("a").workers] == \
        [ServicePhase.RUNNING] * 3
    assert sim.current("a", 0) is trial
    # closed means forgotten: it takes max_retries fresh failures to trip again
    _crash_loop(sim, 2)
    assert _breaker(sim) is BreakerState.CLOSED
    check_invariants(sim)


def test_a_failing_trial_opens_the_breaker_again():
    sim = _tripped_half_open()
    sim.advance(5.0)
    trial = sim.current("a", 0)
    sim.ready(trial)
    sim.advance(3.0)
    spawned = len(sim.spawned)
    sim.exit(trial, 1)
    assert _breaker(sim) is BreakerState.OPEN
    assert len(sim.spawned) == spawned  # no backoff restart for a failed trial
    assert timer(sim, TimerKind.TRIAL) is None
    assert timer(sim, TimerKind.HALF_OPEN) == pytest.approx(sim.now + 5.0)
    assert sim.state.services["a"].breaker.trips == 2
    sim.advance(5.0)  # and tries again
    assert _breaker(sim) is BreakerState.HALF_OPEN and len(sim.workers("a")) == 1
    check_invariants(sim)


def test_a_trial_that_fails_before_it_is_ready_opens_it_again():
    sim = _tripped_half_open()
    sim.advance(5.0)
    sim.exit(sim.current("a", 0), -9)
    assert _breaker(sim) is BreakerState.OPEN
    assert not sim.workers("a")


def test_half_open_waits_for_the_tripped_workers_to_drain():
    sim = pool(2, keeper=True, backoff=HALF_OPEN)
    _trip(sim)
    straggler = sim.current("a", 1)
    sim.advance(5.0)
    assert _breaker(sim) is BreakerState.OPEN
    assert [w.id for w in sim.workers("a")] == [straggler.id]  # no trial beside it
    spawned = len(sim.spawned)
    sim.exit(straggler, -15)
    assert _breaker(sim) is BreakerState.HALF_OPEN
    assert len(sim.spawned) == spawned + 1 and len(sim.workers("a")) == 1
    check_invariants(sim)


def test_a_stopped_service_forgets_its_half_open():
    sim = _tripped_half_open()
    sim.feed(ev.StopService("a"))
    sim.advance(60)
    assert not sim.workers("a")
    assert service_phase(sim) is ServicePhase.TERMINATED


def test_scaling_up_while_open_adds_circuit_open_slots_without_workers():
    sim = _tripped_half_open(2)
    sim.feed(ev.Scale("a", workers=4))
    assert not sim.workers("a")
    assert [row.phase for row in sim.snapshot().service("a").workers] == \
        [ServicePhase.CIRCUIT_OPEN] * 4
    sim.advance(5.0)
    sim.ready_all("a")
    sim.advance(10.0)
    assert len(sim.workers("a")) == 4
    check_invariants(sim)


# -- regressions: bugs these tests found (the open ones are xfail strict) ---------------------
def test_a_trip_during_a_rolling_restart_drains_both_workers_of_a_slot():
    sim = pool(2, keeper=True, backoff=HALF_OPEN)
    sim.feed(ev.RestartService("a"))  # slot 0: current + incoming
    _crash_loop(sim, 2, slot=1)
    sim.exit(sim.current("a", 1), 1)  # the breaker opens: every worker is asked to stop
    assert _breaker(sim) is BreakerState.OPEN
    sim.exit(sim.current("a", 0), -15)
    sim.exit_cancelled()
    assert not sim.workers("a")
    assert slot_phase(sim, 0) is ServicePhase.CIRCUIT_OPEN
    check_invariants(sim)


def test_a_rolling_restart_while_the_breaker_is_open_starts_nothing():
    sim = pool(2, keeper=True, backoff=HALF_OPEN)
    _crash_loop(sim, 2, slot=1)
    sim.exit(sim.current("a", 1), 1)
    assert _breaker(sim) is BreakerState.OPEN
    spawned = len(sim.spawned)
    try:
        sim.feed(ev.RestartService("a"))
    except JanusError:
        pass  # refusing it is fine too
    assert sim.spawned[spawned:] == []
    check_invariants(sim)


def test_a_fork_failure_in_flight_when_the_breaker_trips_leaves_no_phantom():
    sim = pool(1, keeper=True, backoff=FAST)
    sim.fail_spawns = "EAGAIN"
    sim.feed(ev.Scale("a", workers=5))  # four forks fail: the third trips the breaker
    assert _breaker(sim) is BreakerState.OPEN
    assert sim.state.metrics.snapshot().services["a"].circuit_breaker_trips_total == 1
    check_invariants(sim)  # no row `stopping` without a process
    sim.exit_cancelled()
    assert [row.phase for row in sim.snapshot().service("a").workers] == \
        [ServicePhase.TERMINATED] * 5


# -- the default: a tripped service comes back by itself ---------------------------------------
def test_by_default_a_tripped_service_tries_again_after_a_minute_and_comes_back():
    # Only max_retries is set: what a supervisord user writing startretries = 3 gets.
    sim = pool(2, keeper=True, backoff=BackoffConfig(max_retries=3, initial_delay=0.1,
                                                     max_delay=1.0))
    _trip(sim)
    assert timer(sim, TimerKind.HALF_OPEN) == pytest.approx(sim.now + 60.0)
    sim.exit_cancelled()
    assert service_phase(sim) is ServicePhase.CIRCUIT_OPEN  # not terminated: not for good
    spawned = len(sim.spawned)
    sim.advance(59.0)
    assert len(sim.spawned) == spawned
    sim.advance(1.5)
    assert len(sim.spawned) == spawned + 1 and _breaker(sim) is BreakerState.HALF_OPEN
    sim.ready_all()
    sim.advance(BackoffConfig().trial_period + 0.5)
    assert _breaker(sim) is BreakerState.CLOSED
    sim.ready_all()
    assert service_phase(sim) is ServicePhase.RUNNING
    assert sim.snapshot().service("a").service.ready == 2
