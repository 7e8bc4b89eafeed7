"""Fuzzing the config loader: any input is accepted or refused with one ConfigError line."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from janus_mp.app.config_file import parse_config
from janus_mp.errors import ConfigError

KEYS = ["supervisor", "services", "backoff", "workers", "target", "restart", "shutdown_timeout",
        "kill_timeout", "max_delay", "initial_delay", "max_retries", "halt_codes",
        "success_codes", "metrics_port", "start_method", "critical", "watchdog_timeout", "x"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.sampled_from(["svc:fn", "always", "never", "fork", "spawn"]))
# Flat on purpose: nesting beyond tables of scalars costs generation time, not coverage (the
# loader checks a value's type before looking inside it).
values = st.one_of(scalars, st.lists(scalars, max_size=4),
                   st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), scalars,
                                   max_size=5))
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=4)


def _check(data: object) -> None:
    try:
        parse_config(data)  # type: ignore[arg-type]
    except ConfigError as exc:
        text = str(exc)
        assert text and "\n" not in text and len(text) < 400


# 5,000 + 5,000 + 2,000 generated inputs for the loader in all. The first two are drawn ten to
# an example: Hypothesis's cost is per example far more than per draw, and a failing batch
# still shrinks to the one input that fails.
@pytest.mark.timeout(300)
@settings(max_examples=500, deadline=None)
@given(st.lists(documents, min_size=10, max_size=10))
def test_structured_garbage_is_accepted_or_refused_in_one_line(batch):
    for data in batch:
        _check(data)


service_tables = st.dictionaries(st.just("services"), st.dictionaries(
    st.text(max_size=6), st.dictionaries(st.sampled_from(KEYS), values, max_size=6),
    max_size=2))


@pytest.mark.timeout(300)
@settings(max_examples=500, deadline=None)
@given(st.lists(service_tables, min_size=10, max_size=10))
def test_service_tables(batch):
    for data in batch:
        _check(data)


@settings(max_examples=2_000, deadline=None)
@given(st.text(max_size=200))
def test_raw_text_is_toml_or_refused(text):
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    _check(data)
