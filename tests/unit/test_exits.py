from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from janus_mp.errors import ConfigError
from janus_mp.exits import ExitKind, ExitPolicy, KillCause, RestartPolicy, classify_exit

A, F, N = RestartPolicy.ALWAYS, RestartPolicy.ON_FAILURE, RestartPolicy.NEVER
POLICY = dict(success_codes={0, 42}, no_restart_codes={78}, force_restart_codes={75},
              halt_codes={3})


@pytest.mark.parametrize("policy, code, cause, kind, restart, failure", [
    (F, 0, None, ExitKind.CLEAN, False, False),
    (A, 0, None, ExitKind.CLEAN, True, False),
    (N, 0, None, ExitKind.CLEAN, False, False),
    (F, 42, None, ExitKind.CLEAN, False, False),
    (F, 1, None, ExitKind.FAILURE, True, True),
    (A, 1, None, ExitKind.FAILURE, True, True),
    (N, 1, None, ExitKind.FAILURE, False, True),
    (F, -9, None, ExitKind.SIGNALED, True, True),
    (N, -11, None, ExitKind.SIGNALED, False, True),
    (F, 78, None, ExitKind.NO_RESTART, False, True),
    (A, 78, None, ExitKind.NO_RESTART, False, True),
    (N, 75, None, ExitKind.FORCE_RESTART, True, False),
    (A, 3, None, ExitKind.HALT, False, True),
    (F, 1, KillCause.STOP_REQUESTED, ExitKind.STOPPED, False, False),
    (F, -9, KillCause.STOP_REQUESTED, ExitKind.STOPPED, False, False),
    (A, 3, KillCause.STOP_REQUESTED, ExitKind.STOPPED, False, False),
    (F, -9, KillCause.WATCHDOG, ExitKind.WATCHDOG_TIMEOUT, True, True),
    (N, -9, KillCause.WATCHDOG, ExitKind.WATCHDOG_TIMEOUT, False, True),
    (F, -9, KillCause.START_TIMEOUT, ExitKind.START_TIMEOUT, True, True),
    (F, 0, KillCause.REPLACE, ExitKind.REPLACED, False, False),
    (F, 0, KillCause.RECYCLE, ExitKind.RECYCLED, False, False),
])
def test_classification_table(policy, code, cause, kind, restart, failure):
    decision = classify_exit(code, ExitPolicy(restart=policy, **POLICY), cause)
    assert (decision.kind, decision.restart, decision.failure) == (kind, restart, failure)
    assert decision.halt == (kind is ExitKind.HALT)


def test_never_makes_a_failure_unrecoverable():
    decision = classify_exit(2, ExitPolicy(restart=N))
    assert decision.reason.label == "unrecoverable" and "exit code 2" in str(decision.reason)


codes = st.frozensets(st.integers(0, 255), max_size=4)


@given(st.integers(-64, 255), st.sampled_from(list(RestartPolicy)), codes, codes, codes,
       st.sampled_from([None, *KillCause]))
def test_decision_invariants(code, restart, no_restart, force, halt, cause):
    try:
        policy = ExitPolicy(restart=restart, no_restart_codes=no_restart - {0},
                            force_restart_codes=force - no_restart - {0},
                            halt_codes=halt - force - no_restart - {0})
    except ConfigError:
        return
    d = classify_exit(code, policy, cause)
    if restart is N and d.kind is not ExitKind.FORCE_RESTART:
        assert not d.restart
    if d.kind is ExitKind.STOPPED:
        assert not d.failure and not d.restart
    if d.halt:
        assert not d.restart
    if d.kind is ExitKind.FORCE_RESTART:
        assert d.restart and d.fixed_delay


def test_overlapping_sets_are_rejected_naming_both():
    with pytest.raises(ConfigError, match="halt_codes: exit code 3 is also in success_codes"):
        ExitPolicy(success_codes={0, 3}, halt_codes={3})
    with pytest.raises(ConfigError, match="no_restart_codes: exit code 300"):
        ExitPolicy(no_restart_codes={300})


def test_restart_policy_parse():
    assert RestartPolicy.parse("On-Failure") is F
    with pytest.raises(ConfigError, match="restart: must be one of"):
        RestartPolicy.parse("sometimes")
