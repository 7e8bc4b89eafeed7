"""The benchmark's goals per crash kind and for memory (scripts/bench/report.py): pure folds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "report.py"
_SPEC = importlib.util.spec_from_file_location("bench_report", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
report = importlib.util.module_from_spec(_SPEC)
sys.modules["bench_report"] = report  # its dataclasses look their module up there
_SPEC.loader.exec_module(report)  # the benchmark's own module (stdlib imports only)


def _kind(real: bool, floor: float, janus: float, standby: float) -> dict[str, object]:
    return {"real_crash": real, "rows": {"floor": {"p50": floor}, "janus-mp": {"p50": janus},
                                         "janus-mp/standby": {"p50": standby}}}


def test_a_standby_gets_a_looser_bound_only_after_a_real_crash() -> None:
    found = report.goals({"crashes": {"kinds": {
        "sys.exit": _kind(False, 10.0, 13.0, 4.0),   # 1.3× passes; 0.4× misses 0.3×
        "sigkill": _kind(True, 10.0, 13.1, 4.0),     # 1.31× misses; 0.4× passes 0.6×
    }}})
    verdicts = {goal.name: goal.verdict for goal in found}
    assert verdicts == {
        "sys.exit: restart p50 ≤ 1.3× the floor's (backoff 0)": "PASS",
        "sys.exit: restart p50 ≤ 0.3× the floor's (standby=1)": "MISS",
        "sigkill: restart p50 ≤ 1.3× the floor's (backoff 0)": "MISS",
        "sigkill: restart p50 ≤ 0.6× the floor's (standby=1)": "PASS",
    }


def test_memory_goals_compare_uss_with_the_floor_and_pss_with_gunicorn() -> None:
    found = report.goals({"memory": {
        "idle": {"janus-mp": {"uss_per_worker_bytes": 1.3e6},
                 "floor": {"uss_per_worker_bytes": 1.0e6}},
        "preload": {"janus-mp": {"pss_bytes": 106e6}, "gunicorn": {"pss_bytes": 100e6}},
    }})
    assert [(goal.name, goal.verdict) for goal in found] == [
        ("USS per worker ≤ 1.3× the floor's", "PASS"),
        ("preloaded app: total PSS ≤ 1.05× gunicorn --preload's", "MISS"),
    ]
    missing = report.goals({"memory": {"idle": {"floor": {"uss_per_worker_bytes": 1.0}},
                                       "preload": {"gunicorn": {"status": "not installed"}}}})
    assert [goal.verdict for goal in missing] == ["n/a", "n/a"]
