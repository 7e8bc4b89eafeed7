"""The suite's own guarantees: Hypothesis runs are reproducible (tests/conftest.py)."""

from __future__ import annotations

from hypothesis import settings


def test_hypothesis_is_derandomized_and_keeps_no_example_database():
    # Same examples on every run; nothing found by an earlier run is replayed by a later one.
    assert settings.default.derandomize is True
    assert settings.default.database is None
