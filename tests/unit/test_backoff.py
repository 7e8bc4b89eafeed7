from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from janus_mp.core.backoff import (
    BackoffConfig,
    BackoffState,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    RetryAfter,
    decide_restart,
)
from janus_mp.errors import ConfigError


def test_defaults_are_the_seeds():
    c = BackoffConfig()
    assert (c.initial_delay, c.max_delay, c.multiplier, c.cooldown, c.max_retries, c.window) == \
        (0.1, 60.0, 2.0, 300.0, 10, 600.0)
    # Unlike the seed, a tripped breaker half-opens after a minute: the service comes back.
    assert c.half_open_after == 60.0 and not c.down_for_good
    never = BackoffConfig(half_open_after="never")  # type: ignore[arg-type]  # TOML's spelling
    assert never.half_open_after is None and never.down_for_good
    assert (c.trial_period, c.clean_restart_delay) == (10.0, 0.1)


@pytest.mark.parametrize("kwargs, key", [
    ({"initial_delay": 5, "max_delay": 1}, "max_delay"),
    ({"initial_delay": -1}, "initial_delay"),
    ({"multiplier": 0.5}, "multiplier"),
    ({"cooldown": -1}, "cooldown"),
    ({"max_retries": -1}, "max_retries"),
    ({"max_retries": 2.5}, "max_retries"),
    ({"max_retries": True}, "max_retries"),
    ({"window": 0}, "window"),
    ({"window": -5}, "window"),
    ({"half_open_after": 0}, "half_open_after"),
    ({"half_open_after": math.nan}, "half_open_after"),
    ({"trial_period": -1}, "trial_period"),
    ({"clean_restart_delay": -0.1}, "clean_restart_delay"),
    ({"cooldown": math.nan}, "cooldown"),
    ({"max_delay": math.inf}, "max_delay"),
    ({"max_delay": True}, "max_delay"),
    ({"initial_delay": "0.1"}, "initial_delay"),
])
def test_validation_names_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        BackoffConfig(**kwargs)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: ")
    assert err.value.under("services.x.backoff").key == f"services.x.backoff.{key}"


def test_boundary_values_are_accepted():
    BackoffConfig(initial_delay=0, max_delay=0, multiplier=1, cooldown=0, max_retries=0,
                  trial_period=0, clean_restart_delay=0)
    BackoffConfig(initial_delay=1, max_delay=1, half_open_after=0.5, multiplier=3)


configs = st.builds(
    BackoffConfig,
    initial_delay=st.floats(0.0, 5.0),
    max_delay=st.floats(5.0, 120.0),
    multiplier=st.one_of(st.floats(1.0, 4.0), st.integers(1, 4)),
    cooldown=st.floats(1.0, 1000.0),
    max_retries=st.integers(0, 20),
    window=st.floats(1.0, 1000.0),
)


@given(configs, st.lists(st.floats(0.0, 50.0), min_size=1, max_size=60), st.integers())
def test_delays_stay_within_bounds_and_jitter_range(config, gaps, seed):
    rng = random.Random(seed)
    state = BackoffState()
    now = 0.0
    for gap in gaps:
        state.record_start(now)
        now += gap
        stable = state.stable_for_cooldown(config, now)
        attempt_before = 0 if stable else state.attempt
        delay = state.next_delay(config, now, rng)
        assert state.attempt == attempt_before + 1
        cap = min(config.max_delay, config.initial_delay * config.multiplier ** state.attempt)
        assert 0.0 <= delay <= cap + 1e-9
        assert delay <= config.max_delay
        assert delay == state.last_delay
        assert math.isclose(delay * 1000, round(delay * 1000), abs_tol=1e-6)  # whole ms
        if stable:
            assert delay <= config.initial_delay * config.multiplier + 1e-9
        now += delay


def test_jitter_is_deterministic_for_a_seed():
    def delays(seed: int) -> list[float]:
        state, rng = BackoffState(), random.Random(seed)
        return [state.next_delay(BackoffConfig(), 0.0, rng) for _ in range(12)]

    assert delays(7) == delays(7)
    assert delays(7) != delays(8)


def test_cap_grows_then_saturates():
    c = BackoffConfig(initial_delay=0.1, max_delay=1.0)
    caps = [c.cap(n) for n in range(1, 8)]
    assert caps[:3] == pytest.approx([0.2, 0.4, 0.8])
    assert caps[3:] == [1.0] * 4
    assert all(a <= b for a, b in zip(caps, caps[1:], strict=False))
    assert c.cap(10**9) == 1.0  # no overflow


def test_cap_with_an_int_multiplier_and_a_huge_attempt_is_cheap():
    c = BackoffConfig(initial_delay=1, max_delay=60, multiplier=2)
    assert c.cap(10**12) == 60.0
    assert BackoffConfig(initial_delay=0, max_delay=0).cap(10**12) == 0.0
    assert BackoffConfig(multiplier=1).cap(10**12) == pytest.approx(0.1)


def test_stable_period_resets_attempts():
    c = BackoffConfig(initial_delay=0.1, max_delay=60, cooldown=10)
    state = BackoffState()
    rng = random.Random(1)
    for i in range(5):
        state.record_start(float(i))
        state.next_delay(c, float(i) + 0.5, rng)
    assert state.attempt == 5
    state.record_start(100.0)
    assert not state.stable_for_cooldown(c, 109.999)
    assert state.stable_for_cooldown(c, 110.0)
    delay = state.next_delay(c, 111.0, rng)
    assert state.attempt == 1 and delay <= 0.2


def test_never_started_is_not_stable():
    assert not BackoffState().stable_for_cooldown(BackoffConfig(cooldown=0), 1e9)


def test_reset():
    state = BackoffState(attempt=4, last_start=1.0, last_delay=3.0)
    state.reset()
    assert (state.attempt, state.last_delay) == (0, 0.0)


@given(st.integers(1, 15), st.integers())
def test_breaker_trips_at_exactly_max_retries(max_retries, seed):
    c = BackoffConfig(max_retries=max_retries, window=100.0)
    breaker = CircuitBreaker(c)
    state = BackoffState()
    rng = random.Random(seed)
    actions = []
    for i in range(max_retries):
        state.record_start(float(i))
        actions.append(decide_restart(state, breaker, c, float(i) + 0.1, rng, slot=0))
    assert all(isinstance(a, RetryAfter) for a in actions[:-1])
    assert actions[-1] == CircuitOpen(max_retries, max_retries)
    assert breaker.trips == 1 and breaker.state is BreakerState.OPEN
    assert breaker.opened_at == pytest.approx(max_retries - 1 + 0.1)
    assert not breaker.allows_restarts


@given(st.integers(2, 10), st.floats(1.0, 100.0))
def test_failures_spread_wider_than_the_window_never_trip(max_retries, window):
    breaker = CircuitBreaker(BackoffConfig(max_retries=max_retries, window=window))
    gap = window / (max_retries - 1) * 1.001  # max_retries failures never fit in one window
    for i in range(5 * max_retries):
        now = i * gap
        assert not breaker.record_failure(now, slot=0)
        assert breaker.failures_in_window(now) < max_retries
    assert breaker.state is BreakerState.CLOSED and breaker.trips == 0


def test_a_failure_exactly_one_window_old_is_out():
    breaker = CircuitBreaker(BackoffConfig(max_retries=2, window=10.0))
    breaker.record_failure(0.0, 0)
    assert breaker.failures_in_window(9.999) == 1
    assert not breaker.record_failure(10.0, 0)
    assert breaker.failures_in_window(10.0) == 1


def test_max_retries_zero_never_trips():
    breaker = CircuitBreaker(BackoffConfig(max_retries=0))
    assert not any(breaker.record_failure(i * 0.001, 0) for i in range(1000))
    assert breaker.state is BreakerState.CLOSED and breaker.failures_in_window(1.0) == 1000


def test_open_circuit_without_half_open_stays_open():
    breaker = CircuitBreaker(BackoffConfig(max_retries=1, half_open_after=None))
    assert breaker.record_failure(0.0, 0)
    assert breaker.half_open_due() is None
    assert not breaker.record_failure(1.0, 0)  # already open: no second trip
    assert breaker.trips == 1 and breaker.state is BreakerState.OPEN


def test_by_default_an_open_circuit_half_opens_after_a_minute():
    breaker = CircuitBreaker(BackoffConfig(max_retries=1))
    assert breaker.record_failure(100.0, 0)
    assert breaker.half_open_due() == 160.0


@pytest.mark.parametrize(("max_retries", "half_open_after", "warned"), [
    (3, None, True), (9, None, True), (10, None, False), (0, None, False), (3, 60.0, False),
    (1, 5.0, False)])
def test_a_small_max_retries_that_ends_a_service_for_good_is_warned_about(
        max_retries, half_open_after, warned):
    config = BackoffConfig(max_retries=max_retries, half_open_after=half_open_after)
    warning = config.start_count_warning()
    assert (warning is not None) is warned
    if warned:
        assert f"max_retries = {max_retries}" in warning and "startretries" in warning


def test_half_open_after_takes_never_or_seconds():
    with pytest.raises(ConfigError, match="half_open_after"):
        BackoffConfig(half_open_after="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="half_open_after"):
        BackoffConfig(half_open_after=0)


def test_half_open_cycle():
    c = BackoffConfig(max_retries=2, half_open_after=30.0)
    breaker = CircuitBreaker(c)
    assert breaker.half_open_due() is None and breaker.opened_at is None
    with pytest.raises(ValueError):
        breaker.begin_half_open(0.0)
    breaker.record_failure(0.0, 0)
    assert breaker.record_failure(1.0, 1)
    assert breaker.half_open_due() == 31.0
    breaker.begin_half_open(31.0)
    assert breaker.state is BreakerState.HALF_OPEN and not breaker.allows_restarts
    assert breaker.half_open_due() is None
    with pytest.raises(ValueError):
        breaker.begin_half_open(31.0)
    assert breaker.record_failure(32.0, 0)  # a failed trial re-opens at once
    assert breaker.trips == 2 and breaker.half_open_due() == 62.0
    breaker.begin_half_open(62.0)
    breaker.close(80.0)
    assert breaker.state is BreakerState.CLOSED and breaker.allows_restarts
    assert breaker.failures_in_window(80.0) == 0
    assert breaker.trips == 2
    with pytest.raises(ValueError):
        breaker.close(81.0)


def test_forget_slot_only_forgets_that_slot():
    breaker = CircuitBreaker(BackoffConfig(max_retries=10))
    for slot in (0, 1, 0, 2):
        breaker.record_failure(1.0, slot)
    breaker.forget_slot(0)
    assert breaker.failures_in_window(1.0) == 2
    breaker.forget_slot(7)
    assert breaker.failures_in_window(1.0) == 2


def test_a_stable_slot_forgets_its_own_failures_only():
    c = BackoffConfig(max_retries=5, cooldown=100.0, window=1000.0)
    breaker = CircuitBreaker(c)
    rng = random.Random(0)
    stable, flapping = BackoffState(), BackoffState()
    for i in range(2):
        stable.record_start(float(i))
        flapping.record_start(float(i))
        decide_restart(stable, breaker, c, i + 0.5, rng, slot=0)
        decide_restart(flapping, breaker, c, i + 0.5, rng, slot=1)
    assert breaker.failures_in_window(2.0) == 4 and stable.attempt == 2
    stable.record_start(10.0)
    action = decide_restart(stable, breaker, c, 200.0, rng, slot=0)  # up for 190 s
    assert isinstance(action, RetryAfter) and action.delay <= c.initial_delay * c.multiplier
    assert stable.attempt == 1
    assert breaker.failures_in_window(200.0) == 3  # slot 1's two and slot 0's new one


def test_decide_restart_while_open_picks_no_delay():
    c = BackoffConfig(max_retries=1)
    breaker = CircuitBreaker(c)
    state = BackoffState()
    rng = random.Random(0)
    assert decide_restart(state, breaker, c, 0.0, rng, slot=0) == CircuitOpen(1, 1)
    assert decide_restart(state, breaker, c, 1.0, rng, slot=1) == CircuitOpen(2, 1)
    assert state.attempt == 0 and breaker.trips == 1


def test_actions_are_pattern_matchable():
    def describe(action: RetryAfter | CircuitOpen) -> str:
        match action:
            case RetryAfter(delay=d):
                return f"retry {d}"
            case CircuitOpen(failures=f, max_retries=m):
                return f"open {f}/{m}"
        raise AssertionError(action)

    assert describe(RetryAfter(0.5)) == "retry 0.5"
    assert describe(CircuitOpen(3, 3)) == "open 3/3"
