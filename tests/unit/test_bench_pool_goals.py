"""The pools benchmark's goals (scripts/bench/pool_report.py) on made-up results: each verdict
turns on exactly the figure it names."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = str(Path(__file__).resolve().parents[2] / "scripts" / "bench")
sys.path.insert(0, BENCH)  # the benchmark's modules import each other by bare name
try:
    import pool_report
finally:
    sys.path.remove(BENCH)  # no other test should find scripts/bench's modules by accident

T = 2.0


def _row(n: int, **changes: Any) -> dict[str, Any]:
    row = {"completed": n, "failed": 0, "lost": 0, "hung": 0, "wrong": 0, "errors": {},
           "ran_twice": 0, "completed_without_run": 0, "poison_deaths": 0,
           "special_outcome": "completed", "special_at_s": None,
           "capacity_after": {"workers": 2, "note": ""}}
    row.update(changes)
    return row


def _results() -> dict[str, Any]:
    """A run in which janus-mp meets every goal."""
    perf = {"janus-mp": {"tasks_per_s": 2.0e6, "roundtrip": {"p50": 0.10}},
            "ppe": {"tasks_per_s": 1.5e6, "roundtrip": {"p50": 0.12}},
            "multiprocess": {"tasks_per_s": 0.3e6, "roundtrip": {"p50": 0.09}},
            "loky": {"status": "not installed"}, "pebble": {"tasks_per_s": 0.2e6,
                                                            "roundtrip": {"p50": 0.1}}}
    return {
        "perf": {"rows": perf},
        "kill9": {"n": 100, "workers": 2, "rows": {
            "janus-mp": _row(100, completed=99, failed=1, errors={"WorkerDied": 1}),
            "janus-mp/retry": _row(100)}},
        "hang": {"n": 40, "workers": 2, "rows": {
            "janus-mp": _row(40, completed=39, failed=1, errors={"TaskTimeout": 1},
                             special_outcome="failed", special_at_s=T + 0.1)}},
        "poison": {"n": 40, "workers": 2, "rows": {
            "janus-mp": _row(40, completed=39, failed=1, errors={"PoisonTask": 1},
                             poison_deaths=3)}},
    }


def _verdicts(results: dict[str, Any]) -> dict[str, str]:
    """Verdict by goal: its measurement, the two perf goals by their first word."""
    return {g.name.split()[0] if g.measurement == "perf" else g.measurement: g.verdict
            for g in pool_report.goals(results, T)}


def test_a_run_meeting_every_goal_passes_them_all() -> None:
    assert _verdicts(_results()) == {"throughput": "PASS", "round": "PASS", "kill9": "PASS",
                                     "hang": "PASS", "poison": "PASS", "once": "PASS"}


@pytest.mark.parametrize(("goal", "path", "value"), [
    ("throughput", ("perf", "rows", "ppe", "tasks_per_s"), 2.1e6),
    ("round", ("perf", "rows", "ppe", "roundtrip", "p50"), 0.09),
    ("kill9", ("kill9", "rows", "janus-mp", "failed"), 2),
    ("kill9", ("kill9", "rows", "janus-mp/retry", "completed"), 99),
    ("kill9", ("kill9", "rows", "janus-mp", "capacity_after", "workers"), 1),
    ("hang", ("hang", "rows", "janus-mp", "special_at_s"), T - 0.1),  # before its timeout
    ("hang", ("hang", "rows", "janus-mp", "special_at_s"), T + 1.5),  # long after it
    ("hang", ("hang", "rows", "janus-mp", "errors"), {"WorkerDied": 1}),
    ("poison", ("poison", "rows", "janus-mp", "poison_deaths"), 2),
    ("poison", ("poison", "rows", "janus-mp", "completed"), 38),
    ("once", ("poison", "rows", "janus-mp", "ran_twice"), 1),
    ("once", ("hang", "rows", "janus-mp", "lost"), 1),
])
def test_each_goal_misses_on_its_own_figure(goal: str, path: tuple[str, ...],
                                            value: Any) -> None:
    results = copy.deepcopy(_results())
    target = results
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    verdicts = _verdicts(results)
    assert verdicts[goal] == "MISS", verdicts
    assert all(v == "PASS" for k, v in verdicts.items() if k != goal), verdicts


def test_goals_without_janus_mp_are_not_measured() -> None:
    results = _results()
    results["perf"]["rows"]["janus-mp"] = {"status": "not installed"}
    for scenario in ("kill9", "hang", "poison"):
        results[scenario]["rows"] = {k: {"status": "not installed"}
                                     for k in results[scenario]["rows"]}
    assert set(_verdicts(results).values()) == {"n/a"}
