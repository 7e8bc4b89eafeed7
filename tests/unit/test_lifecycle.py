from __future__ import annotations

import json
from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from janus_mp.core.lifecycle import (
    TRANSITIONS,
    ServiceLifecycle,
    ServiceLifecycleSnapshot,
    ServicePhase,
    TerminationKind,
    TerminationReason,
    TransitionError,
)

P = ServicePhase
LEGAL = {
    (P.STARTING, P.RUNNING), (P.STARTING, P.BACKING_OFF), (P.STARTING, P.CIRCUIT_OPEN),
    (P.STARTING, P.STOPPING), (P.STARTING, P.TERMINATED),
    (P.RUNNING, P.BACKING_OFF), (P.RUNNING, P.CIRCUIT_OPEN), (P.RUNNING, P.STOPPING),
    (P.RUNNING, P.TERMINATED),
    (P.BACKING_OFF, P.STARTING), (P.BACKING_OFF, P.CIRCUIT_OPEN), (P.BACKING_OFF, P.STOPPING),
    (P.BACKING_OFF, P.TERMINATED),
    (P.CIRCUIT_OPEN, P.STARTING), (P.CIRCUIT_OPEN, P.STOPPING), (P.CIRCUIT_OPEN, P.TERMINATED),
    (P.STOPPING, P.TERMINATED),
}


def lifecycle_in(phase: ServicePhase) -> ServiceLifecycle:
    lc = ServiceLifecycle("svc", 0.0)
    if phase is not P.STARTING:
        lc.transition(phase, 0.0)  # every phase but STARTING is one legal step from STARTING
    return lc


def state_of(lc: ServiceLifecycle) -> dict[str, object]:
    return {name: getattr(lc, name) for name in ServiceLifecycle.__slots__}


@pytest.mark.parametrize("src, dst", list(product(P, P)))
def test_transition_table(src, dst):
    assert (dst in TRANSITIONS[src]) == ((src, dst) in LEGAL)
    lc = lifecycle_in(src)
    if (src, dst) in LEGAL:
        lc.transition(dst, 1.0)
        assert lc.phase is dst and lc.phase_entered_at == 1.0
    else:
        before = state_of(lc)
        with pytest.raises(TransitionError) as err:
            lc.transition(dst, 1.0)
        assert str(err.value) == f"invalid lifecycle transition: {src.value} → {dst.value}"
        assert (err.value.from_phase, err.value.to_phase) == (src, dst)
        assert state_of(lc) == before


def test_table_has_every_phase_and_no_self_loops():
    assert set(TRANSITIONS) == set(P)
    assert all(phase not in targets for phase, targets in TRANSITIONS.items())
    assert TRANSITIONS[P.TERMINATED] == frozenset()


@pytest.mark.parametrize("phase", list(P))
def test_alive_and_terminal(phase):
    assert phase.is_terminal == (phase is P.TERMINATED)
    assert phase.is_alive == (phase is not P.TERMINATED)


def test_seed_bookkeeping_with_a_fake_clock():
    lc = ServiceLifecycle("svc", 10.0)
    assert (lc.phase, lc.start_count, lc.total_failures) == (P.STARTING, 1, 0)
    assert (lc.created_at, lc.phase_entered_at, lc.last_error) == (10.0, 10.0, None)
    lc.mark_running(11.0)
    assert lc.running_secs(13.0) == pytest.approx(2.0)  # counted live while running
    lc.mark_backing_off(15.0, "failed (exit code 1)")
    assert lc.total_failures == 1 and lc.last_error == "failed (exit code 1)"
    assert lc.running_secs(100.0) == pytest.approx(4.0)  # frozen while not running
    lc.mark_starting(16.0)
    assert lc.start_count == 2
    lc.mark_running(17.0)
    snap = lc.snapshot(20.0)
    assert snap.cumulative_running_secs == pytest.approx(4.0 + 3.0)
    assert snap.age_secs == 10.0 and snap.time_in_phase_secs == 3.0
    lc.mark_terminated(21.0, TerminationReason.completed())
    assert lc.termination_reason == TerminationReason.completed()
    assert lc.snapshot(30.0).cumulative_running_secs == pytest.approx(8.0)


def test_circuit_open_and_half_open_trial():
    lc = ServiceLifecycle("svc", 0.0)
    lc.mark_running(1.0)
    lc.mark_backing_off(2.0, "boom")
    lc.mark_circuit_open(3.0, "circuit breaker open (1/1 failures)")
    assert lc.total_failures == 1  # opening counts nothing by itself
    assert lc.last_error == "circuit breaker open (1/1 failures)"
    lc.mark_starting(33.0)  # the half-open trial
    assert lc.start_count == 2
    lc.record_failure("trial failed")
    lc.mark_circuit_open(34.0)
    assert lc.total_failures == 2 and lc.last_error == "trial failed"
    lc.mark_stopping(40.0)
    lc.mark_terminated(41.0, TerminationReason.stopped())
    assert lc.phase is P.TERMINATED


@pytest.mark.parametrize("phase", [P.STARTING, P.RUNNING, P.STOPPING, P.TERMINATED])
def test_mark_starting_only_after_backoff_or_open_circuit(phase):
    lc = lifecycle_in(phase)
    before = state_of(lc)
    with pytest.raises(TransitionError):
        lc.mark_starting(5.0)
    assert state_of(lc) == before


def test_failed_intent_helpers_change_nothing():
    lc = ServiceLifecycle("svc", 0.0)
    lc.mark_terminated(0.0, TerminationReason.completed())
    before = state_of(lc)
    with pytest.raises(TransitionError):
        lc.mark_backing_off(1.0, "late")
    with pytest.raises(TransitionError):
        lc.mark_terminated(1.0, TerminationReason.cancelled())
    with pytest.raises(TransitionError):
        lc.mark_circuit_open(1.0, "late")
    assert state_of(lc) == before


REASON_TEXTS = [
    (TerminationReason.completed(), "completed", "completed"),
    (TerminationReason.cancelled(), "cancelled", "cancelled"),
    (TerminationReason.circuit_breaker_open(3, 10), "circuit_breaker_open",
     "circuit breaker open (3/10 failures)"),
    (TerminationReason.unrecoverable("boom"), "unrecoverable", "unrecoverable: boom"),
    (TerminationReason.failed(1), "failed", "failed (exit code 1)"),
    (TerminationReason.killed(9), "killed", "killed by signal 9 (SIGKILL)"),
    (TerminationReason.killed(15), "killed", "killed by signal 15 (SIGTERM)"),
    (TerminationReason.killed(11), "killed", "killed by signal 11 (SIGSEGV)"),
    (TerminationReason.killed(40), "killed", "killed by signal 40"),
    (TerminationReason.watchdog_timeout(), "watchdog_timeout", "watchdog timeout"),
    (TerminationReason.start_timeout(), "start_timeout", "start timeout"),
    (TerminationReason.recycled(), "recycled", "recycled"),
    (TerminationReason.replaced(), "replaced", "replaced"),
    (TerminationReason.stopped(), "stopped", "stopped"),
    (TerminationReason.halted(3), "halted", "halted (exit code 3)"),
    (TerminationReason.unhealthy(), "unhealthy", "unhealthy"),
    (TerminationReason.oom_killed(), "oom_killed",
     "killed by the kernel's OOM killer (its cgroup's memory_max)"),
]


@pytest.mark.parametrize("reason, label, text", REASON_TEXTS)
def test_reason_texts_follow_the_seed(reason, label, text):
    assert str(reason) == text
    assert reason.label == label == reason.kind.value
    data = json.loads(json.dumps(reason.to_dict()))
    assert data["kind"] == label and data["text"] == text


def test_every_kind_has_a_constructor_in_the_table():
    assert {r.kind for r, _, _ in REASON_TEXTS} == set(TerminationKind)


def test_reason_dict_carries_its_numbers():
    assert TerminationReason.circuit_breaker_open(4, 4).to_dict() == {
        "kind": "circuit_breaker_open", "failures": 4, "max_retries": 4,
        "text": "circuit breaker open (4/4 failures)"}
    assert TerminationReason.killed(9).to_dict()["signal"] == 9


def test_snapshot_to_dict_is_json():
    lc = ServiceLifecycle("svc", 0.0)
    lc.mark_backing_off(1.0, "failed (exit code 1)")
    lc.mark_terminated(2.0, TerminationReason.failed(1))
    snap = lc.snapshot(5.0, worker=0, generation=3, pids=(11, 12), last_exit_code=1,
                       ready=1, desired=2, restarts=4, breaker="open", backoff_delay=0.25)
    data = json.loads(json.dumps(snap.to_dict()))
    assert data["phase"] == "terminated" and data["pids"] == [11, 12]
    assert data["termination_reason"]["kind"] == "failed"
    assert data["termination_reason"]["text"] == "failed (exit code 1)"
    assert (data["worker"], data["generation"], data["breaker"]) == (0, 3, "open")
    assert data["age_secs"] == 5.0 and data["time_in_phase_secs"] == 3.0


def test_snapshot_defaults():
    snap = ServiceLifecycle("svc", 0.0).snapshot(0.0)
    assert snap == ServiceLifecycleSnapshot(
        service_name="svc", phase=P.STARTING, start_count=1, total_failures=0, last_error=None,
        cumulative_running_secs=0.0, age_secs=0.0, time_in_phase_secs=0.0,
        termination_reason=None)
    assert (snap.worker, snap.pids, snap.breaker, snap.backoff_delay) == (None, (), "closed", 0.0)
    assert json.loads(json.dumps(snap.to_dict()))["termination_reason"] is None


@given(st.lists(st.tuples(st.sampled_from(list(P)), st.floats(0, 5)), max_size=60))
def test_no_illegal_state_is_reachable(moves):
    lc = ServiceLifecycle("svc", 0.0)
    now = 0.0
    previous_running = 0.0
    for target, dt in moves:
        now += dt
        before = state_of(lc)
        try:
            lc.transition(target, now)
        except TransitionError:
            assert state_of(lc) == before
            assert target not in TRANSITIONS[before["phase"]]
        else:
            assert target in TRANSITIONS[before["phase"]]
        snap = lc.snapshot(now)
        assert previous_running - 1e-9 <= snap.cumulative_running_secs <= snap.age_secs + 1e-9
        previous_running = snap.cumulative_running_secs


class LifecycleMachine(RuleBasedStateMachine):
    """Drive the intent helpers at random; illegal calls must raise and change nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.lc = ServiceLifecycle("svc", self.now)
        self.failures = 0
        self.starts = 1
        self.running = 0.0

    def attempt(self, target: ServicePhase, call, counts_failure=False, counts_start=False):
        before = state_of(self.lc)
        legal = target in TRANSITIONS[self.lc.phase]
        try:
            call()
        except TransitionError:
            assert not legal
            assert state_of(self.lc) == before
            return
        assert legal and self.lc.phase is target
        self.failures += counts_failure
        self.starts += counts_start

    @rule(dt=st.floats(0, 10))
    def tick(self, dt):
        self.now += dt

    @rule()
    def running(self):
        self.attempt(P.RUNNING, lambda: self.lc.mark_running(self.now))

    @rule(error=st.text(max_size=5))
    def backing_off(self, error):
        self.attempt(P.BACKING_OFF, lambda: self.lc.mark_backing_off(self.now, error),
                     counts_failure=True)

    @rule()
    def starting(self):
        self.attempt(P.STARTING, lambda: self.lc.mark_starting(self.now), counts_start=True)

    @rule()
    def circuit_open(self):
        self.attempt(P.CIRCUIT_OPEN, lambda: self.lc.mark_circuit_open(self.now, "open"))

    @rule()
    def stopping(self):
        self.attempt(P.STOPPING, lambda: self.lc.mark_stopping(self.now))

    @rule()
    def terminated(self):
        self.attempt(P.TERMINATED,
                     lambda: self.lc.mark_terminated(self.now, TerminationReason.stopped()))

    @rule()
    def failure_in_place(self):
        self.lc.record_failure("x")
        self.failures += 1

    @invariant()
    def bookkeeping_holds(self):
        snap = self.lc.snapshot(self.now)
        assert snap.total_failures == self.failures
        assert snap.start_count == self.starts
        assert self.running - 1e-9 <= snap.cumulative_running_secs <= snap.age_secs + 1e-9
        self.running = snap.cumulative_running_secs
        assert (snap.termination_reason is not None) == snap.phase.is_terminal
        json.dumps(snap.to_dict())


TestLifecycleMachine = LifecycleMachine.TestCase
TestLifecycleMachine.settings = settings(max_examples=60, stateful_step_count=40)
