from __future__ import annotations

import json
from itertools import product

import pytest
from hypothesis import given
from hypothesis import strategies as st

from janus_mp.lifecycle import (
    TRANSITIONS,
    ServiceLifecycle,
    ServicePhase,
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
    path = {P.STARTING: [], P.RUNNING: [P.RUNNING], P.BACKING_OFF: [P.BACKING_OFF],
            P.CIRCUIT_OPEN: [P.CIRCUIT_OPEN], P.STOPPING: [P.STOPPING],
            P.TERMINATED: [P.TERMINATED]}[phase]
    for step in path:
        lc.transition(step, 0.0)
    return lc


@pytest.mark.parametrize("src, dst", list(product(P, P)))
def test_transition_table(src, dst):
    assert (dst in TRANSITIONS[src]) == ((src, dst) in LEGAL)
    lc = lifecycle_in(src)
    if (src, dst) in LEGAL:
        lc.transition(dst, 1.0)
        assert lc.phase is dst and lc.phase_entered_at == 1.0
    else:
        with pytest.raises(TransitionError) as err:
            lc.transition(dst, 1.0)
        assert str(err.value) == f"invalid lifecycle transition: {src.value} → {dst.value}"
        assert lc.phase is src and lc.phase_entered_at == 0.0


def test_seed_bookkeeping_with_a_fake_clock():
    lc = ServiceLifecycle("svc", 10.0)
    assert (lc.phase, lc.start_count, lc.total_failures) == (P.STARTING, 1, 0)
    lc.mark_running(11.0)
    lc.mark_backing_off(15.0, "failed (exit code 1)")
    assert lc.total_failures == 1 and lc.last_error == "failed (exit code 1)"
    lc.mark_starting(16.0)
    assert lc.start_count == 2
    lc.mark_running(17.0)
    snap = lc.snapshot(20.0)
    assert snap.cumulative_running_secs == pytest.approx(4.0 + 3.0)
    assert snap.age_secs == 10.0 and snap.time_in_phase_secs == 3.0
    lc.mark_terminated(21.0, TerminationReason.completed())
    assert lc.snapshot(30.0).cumulative_running_secs == pytest.approx(8.0)
    json.dumps(lc.snapshot(30.0, pids=(1, 2)).to_dict())


def test_reason_texts_follow_the_seed():
    assert str(TerminationReason.circuit_breaker_open(3, 10)) == \
        "circuit breaker open (3/10 failures)"
    assert str(TerminationReason.unrecoverable("boom")) == "unrecoverable: boom"
    assert str(TerminationReason.killed(9)) == "killed by signal 9 (SIGKILL)"
    assert str(TerminationReason.failed(2)) == "failed (exit code 2)"
    assert str(TerminationReason.watchdog_timeout()) == "watchdog timeout"
    assert TerminationReason.completed().label == "completed"


@given(st.lists(st.tuples(st.sampled_from(list(P)), st.floats(0, 5)), max_size=60))
def test_no_illegal_state_is_reachable(moves):
    lc = ServiceLifecycle("svc", 0.0)
    now = 0.0
    previous_running = 0.0
    for target, dt in moves:
        now += dt
        before = (lc.phase, lc.phase_entered_at)
        try:
            lc.transition(target, now)
        except TransitionError:
            assert (lc.phase, lc.phase_entered_at) == before
            assert target not in TRANSITIONS[before[0]]
        else:
            assert target in TRANSITIONS[before[0]]
        running = lc.running_secs(now)
        assert previous_running - 1e-9 <= running <= now + 1e-9
        previous_running = running
    if lc.phase is P.TERMINATED:
        assert not TRANSITIONS[lc.phase]
