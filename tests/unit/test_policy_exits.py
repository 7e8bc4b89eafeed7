"""The README's exit table, row by row, under each restart policy; backoff and cooldown; fork
failures. Each test drives the policy with events on the fake clock and reads actions, phases,
timers and metrics."""

from __future__ import annotations

import pytest

from janus_mp.core import events as ev
from janus_mp.core.actions import ShutdownStarted, Spawn, StopSignal
from janus_mp.core.backoff import BackoffConfig
from janus_mp.core.config import SpawnOptions
from janus_mp.core.exits import RestartPolicy
from janus_mp.core.lifecycle import ServicePhase, TerminationKind
from janus_mp.core.pool import SupervisorPhase
from janus_mp.core.timers import TimerKind
from tests.unit.policy_helpers import (
    NO_BREAKER,
    BottomRandom,
    TopRandom,
    advance_bounded,
    check_invariants,
    pool,
    restart_at,
    slot_phase,
    terminated,
    worker_timer,
)
from tests.unit.policy_sim import Sim

ALWAYS, ON_FAILURE, NEVER = RestartPolicy.ALWAYS, RestartPolicy.ON_FAILURE, RestartPolicy.NEVER
ALL_POLICIES = [ALWAYS, ON_FAILURE, NEVER]
#: clean_restart_delay set apart from every backoff delay, so a fixed delay is recognisable.
CLEAN = BackoffConfig(initial_delay=0.1, max_delay=1.0, max_retries=0, window=60.0,
                      clean_restart_delay=2.5)


def _failures_counted(sim: Sim, slot: int = 0) -> tuple[int, int]:
    """(the slot's backoff attempt, the service breaker's failures in its window)."""
    service = sim.state.services["a"]
    return service.slots[slot].backoff.attempt, service.breaker.failures_in_window(sim.now)


def _restarts_after(sim: Sim, delay: float, slot: int = 0) -> None:
    spawned = len(sim.spawned)
    sim.advance(delay - 0.001)
    assert len(sim.spawned) == spawned, "restarted before its delay"
    sim.advance(0.001)
    assert len(sim.spawned) == spawned + 1
    assert sim.spawned[-1].slot == slot
    assert slot_phase(sim, slot) is ServicePhase.STARTING


def _never_restarts(sim: Sim) -> None:
    spawned = len(sim.spawned)
    sim.advance(3600)
    assert len(sim.spawned) == spawned


# -- stopped / replaced: not restarted, not counted --------------------------------------------
@pytest.mark.parametrize("policy", ALL_POLICIES)
@pytest.mark.parametrize("code", [0, 1, -9, 3, 78])
def test_a_stopped_worker_is_not_restarted_whatever_its_code(policy, code):
    sim = pool(2, keeper=True, restart=policy)
    sim.feed(ev.StopService("a"))
    assert len(sim.cancelled) == 2
    sim.exit(sim.current("a", 0), code)
    sim.exit(sim.current("a", 1), 0)
    _never_restarts(sim)
    assert terminated(sim) == {"stopped": 2}
    assert _failures_counted(sim) == (0, 0)
    assert [row.phase for row in sim.snapshot().service("a").workers] == \
        [ServicePhase.TERMINATED] * 2
    assert sim.state.phase is SupervisorPhase.RUNNING  # a halt code means nothing here
    check_invariants(sim)


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_a_replaced_worker_is_not_restarted(policy):
    sim = pool(1, restart=policy)
    old = sim.current("a", 0)
    sim.feed(ev.RestartService("a"))
    new = sim.state.services["a"].slots[0].incoming
    sim.ready(new)
    assert sim.cancelled == [old.id]
    sim.exit(old, -15)
    _never_restarts(sim)
    assert terminated(sim) == {"replaced": 1}
    assert _failures_counted(sim) == (0, 0)
    assert sim.current("a", 0) is new and slot_phase(sim, 0) is ServicePhase.RUNNING


# -- halt codes: the supervisor shuts down with that status ------------------------------------
@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_a_halt_code_shuts_the_supervisor_down_with_that_status(policy):
    sim = pool(2, keeper=True, restart=policy)
    actions = sim.feed(ev.WorkerExited(sim.current("a", 0).id, 3))
    assert ShutdownStarted(False) in actions
    assert sim.state.phase is SupervisorPhase.STOPPING
    assert sim.state.exit_status == 3
    assert slot_phase(sim, 0) is ServicePhase.TERMINATED
    assert sim.state.services["a"].slots[0].lifecycle.termination_reason.kind is \
        TerminationKind.HALTED
    assert terminated(sim) == {"halted": 1}
    assert not any(isinstance(a, Spawn) for a in actions)
    sim.exit_cancelled()
    assert sim.finished and sim.state.exit_status == 3
    assert not [a for a in sim.spawned if a.generation > 1]


def test_halt_codes_are_configurable():
    sim = pool(1, keeper=True, halt_codes=frozenset({42}))
    sim.exit(sim.current("a", 0), 42)
    assert sim.state.phase is SupervisorPhase.STOPPING and sim.state.exit_status == 42
    # 3 is an ordinary failure once it is not a halt code
    sim = pool(1, keeper=True, halt_codes=frozenset({42}))
    sim.exit(sim.current("a", 0), 3)
    assert sim.state.phase is SupervisorPhase.RUNNING
    assert terminated(sim) == {"failed": 1}


# -- no_restart_codes: not restarted, the rest of the pool keeps running -----------------------
@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_a_no_restart_code_ends_its_slot(policy):
    sim = pool(2, restart=policy)
    sim.exit(sim.current("a", 0), 78)
    _never_restarts(sim)
    assert slot_phase(sim, 0) is ServicePhase.TERMINATED
    assert slot_phase(sim, 1) is ServicePhase.RUNNING
    assert terminated(sim) == {"unrecoverable": 1}
    assert _failures_counted(sim) == (0, 0)  # "—": it neither backs off nor trips anything
    assert sim.state.phase is SupervisorPhase.RUNNING
    check_invariants(sim)


def test_when_every_slot_ended_unrecoverably_the_supervisor_exits_1():
    sim = pool(1, no_restart_codes=frozenset({78, 79}))
    sim.exit(sim.current("a", 0), 79)
    assert sim.state.phase is SupervisorPhase.STOPPING and sim.state.exit_status == 1
    assert sim.finished


# -- force_restart_codes: always restarted after clean_restart_delay, never counted ------------
@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_a_force_restart_code_restarts_after_the_clean_delay_whatever_the_policy(policy):
    sim = pool(1, restart=policy, backoff=CLEAN, force_restart_codes=frozenset({75}))
    for _ in range(4):  # again and again: the delay never grows, nothing is counted
        sim.exit(sim.current("a", 0), 75)
        assert slot_phase(sim, 0) is ServicePhase.BACKING_OFF
        assert restart_at(sim) == pytest.approx(sim.now + 2.5)
        assert _failures_counted(sim) == (0, 0)
        _restarts_after(sim, 2.5)
        sim.ready(sim.current("a", 0))
    assert terminated(sim) == {"failed": 4}
    assert sim.state.metrics.snapshot().restarts_total == 4


# -- success codes: only ALWAYS restarts -------------------------------------------------------
def test_a_clean_exit_under_always_restarts_after_the_clean_delay():
    sim = pool(1, restart=ALWAYS, backoff=CLEAN)
    sim.exit(sim.current("a", 0), 0)
    assert restart_at(sim) == pytest.approx(2.5)
    assert _failures_counted(sim) == (0, 0)
    assert sim.state.services["a"].slots[0].lifecycle.total_failures == 0
    _restarts_after(sim, 2.5)
    assert terminated(sim) == {"completed": 1}


@pytest.mark.parametrize("policy", [ON_FAILURE, NEVER])
def test_a_clean_exit_under_on_failure_or_never_ends_the_slot(policy):
    sim = pool(2, restart=policy, backoff=CLEAN)
    sim.exit(sim.current("a", 0), 0)
    _never_restarts(sim)
    assert slot_phase(sim, 0) is ServicePhase.TERMINATED
    assert sim.state.services["a"].slots[0].lifecycle.termination_reason.kind is \
        TerminationKind.COMPLETED
    assert slot_phase(sim, 1) is ServicePhase.RUNNING
    assert terminated(sim) == {"completed": 1}


def test_success_codes_are_configurable():
    sim = pool(2, restart=ON_FAILURE, success_codes=frozenset({0, 42}))
    sim.exit(sim.current("a", 0), 42)
    assert slot_phase(sim, 0) is ServicePhase.TERMINATED
    assert terminated(sim) == {"completed": 1}


def test_when_every_slot_completed_the_supervisor_exits_0():
    sim = pool(2, restart=ON_FAILURE)
    sim.exit(sim.current("a", 0), 0)
    assert sim.state.phase is SupervisorPhase.RUNNING
    sim.exit(sim.current("a", 1), 0)
    assert sim.state.services["a"].lifecycle.phase is ServicePhase.TERMINATED
    assert sim.finished and sim.state.exit_status == 0


# -- killed by a signal / any other code: restarted unless NEVER, counted ----------------------
@pytest.mark.parametrize("code, label", [(-9, "killed"), (-11, "killed"), (1, "failed"),
                                         (2, "failed"), (255, "failed")])
@pytest.mark.parametrize("policy", [ALWAYS, ON_FAILURE])
def test_a_failure_backs_off_and_restarts(policy, code, label):
    sim = pool(2, restart=policy, backoff=CLEAN)
    sim.state.rng = TopRandom()
    sim.exit(sim.current("a", 0), code)
    assert slot_phase(sim, 0) is ServicePhase.BACKING_OFF
    assert _failures_counted(sim) == (1, 1)
    assert restart_at(sim) == pytest.approx(0.2)  # the cap of the first failure, not 2.5
    _restarts_after(sim, 0.2)
    assert terminated(sim) == {label: 1}
    row = sim.snapshot().service("a").workers[0]
    assert row.total_failures == 1 and row.last_exit_code == code and row.restarts == 1


@pytest.mark.parametrize("code", [-9, 1, 2])
def test_a_failure_under_never_ends_the_slot_as_unrecoverable(code):
    sim = pool(2, restart=NEVER)
    sim.exit(sim.current("a", 0), code)
    _never_restarts(sim)
    assert slot_phase(sim, 0) is ServicePhase.TERMINATED
    assert terminated(sim) == {"unrecoverable": 1}
    assert slot_phase(sim, 1) is ServicePhase.RUNNING


# -- the supervisor's own kills: watchdog and start timeout ------------------------------------
@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_a_silent_worker_is_killed_by_the_watchdog(policy):
    sim = pool(2, restart=policy, watchdog_timeout=5.0)
    quiet, chatty = sim.current("a", 0), sim.current("a", 1)
    assert worker_timer(sim, TimerKind.WATCHDOG, quiet.id) == 5.0
    sim.heartbeats[chatty.id] = 4.0
    sim.advance(5.0)
    assert (quiet.id, StopSignal.KILL) in sim.signals
    assert (chatty.id, StopSignal.KILL) not in sim.signals
    assert worker_timer(sim, TimerKind.WATCHDOG, chatty.id) == 9.0  # its last beat + timeout
    sim.exit(quiet, -9)
    assert terminated(sim) == {"watchdog_timeout": 1}
    if policy is NEVER:
        _never_restarts(sim)
        assert slot_phase(sim, 0) is ServicePhase.TERMINATED
    else:
        assert slot_phase(sim, 0) is ServicePhase.BACKING_OFF
        assert _failures_counted(sim) == (1, 1)
        sim.advance(1.0)
        assert sim.spawned[-1].slot == 0 and sim.spawned[-1].generation == 2


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_a_worker_not_ready_in_time_is_killed(policy):
    sim = pool(2, restart=policy, start_timeout=2.0, ready=False)
    sim.ready(sim.current("a", 1))
    slow = sim.current("a", 0)
    sim.advance(1.999)
    assert not sim.signals
    sim.advance(0.001)
    assert sim.signals == [(slow.id, StopSignal.KILL)]  # the ready one is left alone
    sim.exit(slow, 0)  # whatever it exits with, the supervisor's cause wins
    assert terminated(sim) == {"start_timeout": 1}
    if policy is not NEVER:
        assert _failures_counted(sim) == (1, 1)
    spawned = len(sim.spawned)
    sim.advance(1.0)
    assert len(sim.spawned) == spawned + (0 if policy is NEVER else 1)


def test_a_ready_worker_outlives_its_start_timeout():
    sim = pool(1, start_timeout=2.0)
    sim.advance(10)
    assert not sim.signals


# -- backoff: full jitter, growth, cooldown ----------------------------------------------------
def test_the_nth_failure_waits_its_cap_at_most_and_the_cap_doubles():
    sim = pool(1)
    sim.state.rng = TopRandom()
    caps = []
    for _ in range(6):
        sim.exit(sim.current("a", 0), 1)
        caps.append(round(restart_at(sim) - sim.now, 6))
        sim.advance(5)
    assert caps == [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]  # 0.1·2ⁿ, saturating at max_delay


def test_the_jitter_can_be_zero_and_then_the_restart_happens_in_the_exit_step():
    sim = pool(1)
    sim.state.rng = BottomRandom()
    sim.exit(sim.current("a", 0), 1)
    assert restart_at(sim) is None  # no timer: no loop turn between the exit and the fork
    assert len(sim.spawned) == 2


@pytest.mark.parametrize("seed", range(5))
def test_every_delay_is_in_zero_to_the_cap_of_its_attempt(seed):
    sim = pool(1, sim=Sim(seed=seed))
    delays = []
    for attempt in range(1, 9):
        sim.exit(sim.current("a", 0), -9)
        delay = restart_at(sim) - sim.now
        assert 0 <= delay <= NO_BREAKER.cap(attempt) + 1e-9
        assert delay == pytest.approx(round(delay, 3))  # whole milliseconds
        delays.append(delay)
        sim.advance(1.0)
    assert len(set(delays)) > 1  # jittered, not fixed


def test_jitter_spreads_over_the_whole_range():
    draws = []
    for seed in range(40):
        sim = pool(1, sim=Sim(seed=seed))
        for _ in range(4):  # the fourth failure: cap 1.0 (saturated)
            sim.exit(sim.current("a", 0), 1)
            sim.advance(1.0)
        draws.append(sim.state.services["a"].slots[0].backoff.last_delay)
    assert min(draws) < 0.25 and max(draws) > 0.75


def test_a_slot_that_stayed_up_for_the_cooldown_forgets_its_failures():
    backoff = BackoffConfig(initial_delay=0.1, max_delay=60.0, cooldown=300.0, max_retries=0)
    sim = pool(1, backoff=backoff)
    sim.state.rng = TopRandom()
    for _ in range(5):
        sim.exit(sim.current("a", 0), 1)
        sim.advance(10)
    assert sim.state.services["a"].slots[0].backoff.attempt == 5
    worker = sim.current("a", 0)
    sim.ready(worker)
    # up for 299 s since it was started: not yet stable, the next failure keeps growing
    sim.advance(worker.spawned_at + 299 - sim.now)
    sim.exit(worker, 1)
    assert restart_at(sim) - sim.now == pytest.approx(6.4)
    sim.advance(6.4)
    sim.ready(sim.current("a", 0))
    sim.advance(301)  # stable for the cooldown
    sim.exit(sim.current("a", 0), 1)
    assert sim.state.services["a"].slots[0].backoff.attempt == 1
    assert restart_at(sim) - sim.now == pytest.approx(0.2)  # prompt again


def test_backoff_is_per_slot():
    sim = pool(2)
    sim.state.rng = TopRandom()
    for _ in range(3):
        sim.exit(sim.current("a", 0), 1)
        sim.advance(5)
    sim.exit(sim.current("a", 1), 1)
    assert restart_at(sim, 1) - sim.now == pytest.approx(0.2)
    assert sim.state.metrics.snapshot().services["a"].backoff_delay_seconds == pytest.approx(0.2)


# -- spawn failures ----------------------------------------------------------------------------
def test_a_fork_failure_backs_off_and_recovers_when_forks_work_again():
    sim = pool(2)
    sim.state.rng = TopRandom()
    sim.fail_spawns = "EAGAIN"
    sim.exit(sim.current("a", 0), -9)
    for attempt in range(2, 5):
        sim.advance(restart_at(sim) - sim.now)  # the restart fails to fork
        assert sim.state.services["a"].slots[0].current is None
        assert slot_phase(sim, 0) is ServicePhase.BACKING_OFF
        assert restart_at(sim) - sim.now == pytest.approx(NO_BREAKER.cap(attempt))
        check_invariants(sim)
    assert any("EAGAIN" in line for line in sim.logs())
    spawned_total = sim.state.metrics.snapshot().spawned_total
    sim.fail_spawns = None
    sim.advance(restart_at(sim) - sim.now)
    worker = sim.current("a", 0)
    assert worker.pid is not None
    sim.ready(worker)
    assert slot_phase(sim, 0) is ServicePhase.RUNNING
    assert sim.state.metrics.snapshot().spawned_total == spawned_total + 1
    check_invariants(sim)


def test_a_fork_failure_at_start_backs_off():
    sim = Sim()
    sim.fail_spawns = "ENOMEM"
    sim.register("a", SpawnOptions(name="a", workers=2, backoff=NO_BREAKER))
    sim.begin()
    assert not sim.state.workers
    assert {slot_phase(sim, 0), slot_phase(sim, 1)} == {ServicePhase.BACKING_OFF}
    assert sim.state.metrics.snapshot().spawned_total == 0
    sim.fail_spawns = None
    sim.advance(1.0)
    sim.ready_all()
    assert [slot_phase(sim, i) for i in (0, 1)] == [ServicePhase.RUNNING] * 2
    assert sim.state.services["a"].lifecycle.phase is ServicePhase.RUNNING



def test_the_watchdog_never_reschedules_itself_at_the_same_instant():
    sim = pool(1, watchdog_timeout=20.0)
    worker = sim.current("a", 0)
    sim.advance(12.02)
    sim.heartbeats[worker.id] = 12.02  # 12.02 + 20 - 12.02 < 20 in floating point
    sim.advance(7.98)  # the watchdog reads the heartbeat: next look at 32.02
    assert advance_bounded(sim, 12.02) <= 2


# -- an exit announced by the worker (run() returned; the process tears down) -----------------
def test_an_announced_exit_is_decided_at_once_and_the_process_drains_as_retiring():
    sim = pool(1, backoff=BackoffConfig(initial_delay=0.0, max_delay=0.0, max_retries=0))
    old = sim.current("a", 0)
    sim.feed(ev.WorkerExiting(old.id, 1))
    new = sim.current("a", 0)
    assert new is not old and len(sim.spawned) == 2  # replaced before the old process is gone
    assert old in sim.state.services["a"].retiring and old.exit_announced
    assert worker_timer(sim, TimerKind.TERM, old.id) is not None  # a hung teardown is stopped
    assert terminated(sim) == {"failed": 1}
    assert sim.state.recent_exits[-1].exit_code == 1
    sim.exit(old, 1)  # the real exit: nothing more is decided or counted
    assert terminated(sim) == {"failed": 1} and len(sim.spawned) == 2
    assert old.id not in sim.state.workers and not sim.state.services["a"].retiring
    check_invariants(sim)


def test_an_exit_announced_while_being_stopped_waits_for_the_real_exit():
    sim = pool(1, keeper=True)
    old = sim.current("a", 0)
    sim.feed(ev.StopService("a"))
    sim.feed(ev.WorkerExiting(old.id, 0))
    assert not old.exit_announced and old.id in sim.state.workers
    sim.exit(old, 0)
    assert terminated(sim) == {"stopped": 1}


def test_a_sigkill_from_the_oom_killer_has_its_own_reason_and_counts_as_a_failure():
    sim = pool(1, backoff=BackoffConfig(initial_delay=0.5, max_delay=0.5, max_retries=0))
    worker = sim.current("a", 0)
    sim.feed(ev.WorkerExited(worker.id, -9, oom_killed=True))
    assert terminated(sim) == {"oom_killed": 1}
    assert sim.state.recent_exits[-1].reason == \
        "killed by the kernel's OOM killer (its cgroup's memory_max)"
    assert slot_phase(sim, 0) is ServicePhase.BACKING_OFF  # a failure: backoff applies
    assert sim.state.services["a"].slots[0].lifecycle.total_failures == 1
