from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from janus_mp.core.exits import (
    ExitDecision,
    ExitKind,
    ExitPolicy,
    KillCause,
    ReservedExit,
    RestartPolicy,
    classify_exit,
)
from janus_mp.core.lifecycle import TerminationReason
from janus_mp.errors import ConfigError

A, F, N = RestartPolicy.ALWAYS, RestartPolicy.ON_FAILURE, RestartPolicy.NEVER
CODES = dict(success_codes={0, 42}, no_restart_codes={78}, force_restart_codes={75},
             halt_codes={3})
K = ExitKind
R = TerminationReason

# One row per rule: (code, cause, kind, restart per policy {A, F, N}, failure, fixed_delay, reason)
# A reason of None means "unrecoverable under never, else the given one" (checked separately).
RULES = [
    (1, KillCause.STOP_REQUESTED, K.STOPPED, (False, False, False), False, False, R.stopped()),
    (-9, KillCause.STOP_REQUESTED, K.STOPPED, (False, False, False), False, False, R.stopped()),
    (3, KillCause.STOP_REQUESTED, K.STOPPED, (False, False, False), False, False, R.stopped()),
    (0, KillCause.RECYCLE, K.RECYCLED, (False, False, False), False, False, R.recycled()),
    (-15, KillCause.REPLACE, K.REPLACED, (False, False, False), False, False, R.replaced()),
    (-9, KillCause.WATCHDOG, K.WATCHDOG_TIMEOUT, (True, True, False), True, False,
     R.watchdog_timeout()),
    (0, KillCause.START_TIMEOUT, K.START_TIMEOUT, (True, True, False), True, False,
     R.start_timeout()),
    (3, None, K.HALT, (False, False, False), True, False, R.halted(3)),
    (78, None, K.NO_RESTART, (False, False, False), True, False,
     R.unrecoverable("exit code 78 is a no-restart code")),
    (75, None, K.FORCE_RESTART, (True, True, True), False, True, R.failed(75)),
    (0, None, K.CLEAN, (True, False, False), False, True, R.completed()),
    (42, None, K.CLEAN, (True, False, False), False, True, R.completed()),
    (-9, None, K.SIGNALED, (True, True, False), True, False, R.killed(9)),
    (-11, None, K.SIGNALED, (True, True, False), True, False, R.killed(11)),
    (1, None, K.FAILURE, (True, True, False), True, False, R.failed(1)),
    (255, None, K.FAILURE, (True, True, False), True, False, R.failed(255)),
]
CASES = [pytest.param(policy, *row, id=f"{policy.value}-{row[0]}-{row[1] and row[1].value}")
         for row in RULES for policy in (A, F, N)]


@pytest.mark.parametrize("policy, code, cause, kind, restarts, failure, fixed, reason", CASES)
def test_classification_table(policy, code, cause, kind, restarts, failure, fixed, reason):
    decision = classify_exit(code, ExitPolicy(restart=policy, **CODES), cause)
    restart = restarts[(A, F, N).index(policy)]
    assert (decision.kind, decision.restart, decision.failure, decision.fixed_delay) == \
        (kind, restart, failure, fixed)
    assert decision.halt == (kind is ExitKind.HALT)
    if policy is N and kind in (K.FAILURE, K.SIGNALED):
        assert decision.reason == R.unrecoverable(f"{reason} under restart policy never")
    else:
        assert decision.reason == reason


def test_default_policy_uses_the_reserved_codes():
    policy = ExitPolicy()
    assert policy.restart is F
    assert classify_exit(ReservedExit.OK, policy).kind is K.CLEAN
    assert classify_exit(ReservedExit.FAILURE, policy).kind is K.FAILURE
    assert classify_exit(ReservedExit.BOOT_ERROR, policy).halt
    assert classify_exit(ReservedExit.CONFIG_ERROR, policy).kind is K.NO_RESTART


def test_never_makes_a_failure_unrecoverable():
    decision = classify_exit(2, ExitPolicy(restart=N))
    assert decision.kind is K.FAILURE and not decision.restart
    assert decision.reason.label == "unrecoverable"
    assert str(decision.reason) == "unrecoverable: failed (exit code 2) under restart policy never"
    signaled = classify_exit(-9, ExitPolicy(restart=N))
    assert str(signaled.reason) == \
        "unrecoverable: killed by signal 9 (SIGKILL) under restart policy never"


codes = st.frozensets(st.integers(0, 255), max_size=4)


@given(st.integers(-64, 255), st.sampled_from(list(RestartPolicy)), codes, codes, codes,
       st.sampled_from([None, *KillCause]))
def test_decision_invariants(code, restart, no_restart, force, halt, cause):
    policy = ExitPolicy(restart=restart, no_restart_codes=no_restart - {0},
                        force_restart_codes=force - no_restart - {0},
                        halt_codes=halt - force - no_restart - {0})
    d = classify_exit(code, policy, cause)
    assert isinstance(d, ExitDecision)
    if restart is N and d.kind is not ExitKind.FORCE_RESTART:
        assert not d.restart
    if d.kind is ExitKind.STOPPED:
        assert not d.failure and not d.restart
    if d.halt:
        assert not d.restart and d.kind is ExitKind.HALT
    if d.kind is ExitKind.FORCE_RESTART:
        assert d.restart and d.fixed_delay and not d.failure
    if d.fixed_delay:
        assert not d.failure
    if code < 0 and cause is None:
        assert d.kind is ExitKind.SIGNALED


def test_overlapping_sets_are_rejected_naming_both():
    with pytest.raises(ConfigError, match="halt_codes: exit code 3 is also in success_codes"):
        ExitPolicy(success_codes={0, 3}, halt_codes={3})
    with pytest.raises(ConfigError) as err:
        ExitPolicy(no_restart_codes={9}, force_restart_codes={9})
    assert err.value.key == "force_restart_codes" and "no_restart_codes" in err.value.rule


@pytest.mark.parametrize("field, value, message", [
    ("no_restart_codes", {300}, "exit code 300 must be an integer from 0 to 255"),
    ("halt_codes", {-1}, "exit code -1 must be an integer from 0 to 255"),
    ("success_codes", {True}, "exit code True must be an integer from 0 to 255"),
    ("force_restart_codes", {"1"}, "exit code '1' must be an integer from 0 to 255"),
    ("success_codes", "0", "must be a list of exit codes"),
    ("halt_codes", 3, "must be a list of exit codes"),
])
def test_code_validation_names_the_key(field, value, message):
    with pytest.raises(ConfigError) as err:
        ExitPolicy(**{field: value})
    assert (err.value.key, err.value.rule) == (field, message)


def test_any_iterable_is_frozen():
    policy = ExitPolicy(success_codes=[0, 10, 10], force_restart_codes=(75,), halt_codes=iter([]))
    assert policy.success_codes == frozenset({0, 10})
    assert isinstance(policy.force_restart_codes, frozenset)
    assert policy.halt_codes == frozenset()
    assert hash(policy) == hash(ExitPolicy(success_codes={0, 10}, force_restart_codes={75},
                                           halt_codes=set()))


@pytest.mark.parametrize("text, policy", [
    ("always", A), ("ALWAYS", A), ("on-failure", F), ("On_Failure", F), (" never ", N),
])
def test_restart_policy_parse(text, policy):
    assert RestartPolicy.parse(text) is policy


@pytest.mark.parametrize("text", ["sometimes", "", "on failure", "restartpolicy.always"])
def test_restart_policy_parse_rejects(text):
    with pytest.raises(ConfigError, match="restart: must be one of always, on_failure, never"):
        RestartPolicy.parse(text)


def test_policy_given_as_text_is_parsed():
    assert ExitPolicy(restart="on-failure").restart is F  # type: ignore[arg-type]
