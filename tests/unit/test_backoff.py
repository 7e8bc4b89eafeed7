from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from janus_mp.backoff import (
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
    assert c.half_open_after is None


@pytest.mark.parametrize("kwargs, key", [
    ({"initial_delay": 5, "max_delay": 1}, "max_delay"),
    ({"initial_delay": -1}, "initial_delay"),
    ({"multiplier": 0.5}, "multiplier"),
    ({"max_retries": -1}, "max_retries"),
    ({"window": 0}, "window"),
    ({"half_open_after": 0}, "half_open_after"),
    ({"cooldown": float("nan")}, "cooldown"),
    ({"max_delay": True}, "max_delay"),
])
def test_validation_names_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        BackoffConfig(**kwargs)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: ")


configs = st.builds(
    BackoffConfig,
    initial_delay=st.floats(0.0, 5.0),
    max_delay=st.floats(5.0, 120.0),
    multiplier=st.floats(1.0, 4.0),
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
        attempt_before = 0 if state.stable_for_cooldown(config, now) else state.attempt
        delay = state.next_delay(config, now, rng)
        assert state.attempt == attempt_before + 1
        cap = min(config.max_delay, config.initial_delay * config.multiplier ** state.attempt)
        assert 0.0 <= delay <= cap + 1e-9
        assert delay <= config.max_delay
        assert round(delay * 1000) == pytest.approx(delay * 1000)  # whole milliseconds
        now += delay


def test_cap_grows_then_saturates():
    c = BackoffConfig(initial_delay=0.1, max_delay=1.0)
    caps = [c.cap(n) for n in range(1, 8)]
    assert caps[:3] == pytest.approx([0.2, 0.4, 0.8])
    assert caps[3:] == [1.0] * 4
    assert c.cap(10**9) == 1.0  # no overflow


def test_stable_period_resets_attempts():
    c = BackoffConfig(initial_delay=0.1, max_delay=60, cooldown=10)
    state = BackoffState()
    rng = random.Random(1)
    for i in range(5):
        state.record_start(float(i))
        state.next_delay(c, float(i) + 0.5, rng)
    assert state.attempt == 5
    state.record_start(100.0)
    delay = state.next_delay(c, 111.0, rng)
    assert state.attempt == 1 and delay <= 0.2


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


def test_failures_spread_wider_than_the_window_never_trip():
    c = BackoffConfig(max_retries=3, window=10.0, cooldown=1000.0)
    breaker = CircuitBreaker(c)
    for i in range(50):
        assert not breaker.record_failure(i * 5.1, slot=0) or False
        assert breaker.failures_in_window(i * 5.1) <= 2
    assert breaker.state is BreakerState.CLOSED


def test_max_retries_zero_never_trips():
    breaker = CircuitBreaker(BackoffConfig(max_retries=0))
    assert not any(breaker.record_failure(i * 0.001, 0) for i in range(1000))


def test_half_open_cycle():
    c = BackoffConfig(max_retries=2, half_open_after=30.0)
    breaker = CircuitBreaker(c)
    breaker.record_failure(0.0, 0)
    assert breaker.record_failure(1.0, 1)
    assert breaker.half_open_due() == 31.0
    breaker.begin_half_open(31.0)
    assert breaker.state is BreakerState.HALF_OPEN and not breaker.allows_restarts
    assert breaker.record_failure(32.0, 0)  # a failed trial re-opens at once
    assert breaker.trips == 2 and breaker.half_open_due() == 62.0
    breaker.begin_half_open(62.0)
    breaker.close(80.0)
    assert breaker.state is BreakerState.CLOSED and breaker.failures_in_window(80.0) == 0
    with pytest.raises(ValueError):
        breaker.close(81.0)


def test_forget_slot_only_forgets_that_slot():
    breaker = CircuitBreaker(BackoffConfig(max_retries=10))
    for slot in (0, 1, 0, 2):
        breaker.record_failure(1.0, slot)
    breaker.forget_slot(0)
    assert breaker.failures_in_window(1.0) == 2
