"""The task-pool benchmark's quick run measures what it says (a smoke test: its timing goals
live in scripts/bench/pools.py and are not enforced here).

janus-mp's TaskPool, ProcessPoolExecutor and multiprocess.Pool must always produce numbers;
loky and pebble (the bench extra) may be absent, and their rows then say "not installed".
The anchors' failure modes are asserted too: they show that the benchmark detects a broken
pool, a hung caller and a killed worker, and cleans up after them.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPTIONAL = ("loky", "pebble")


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("pools") / "pools.json"
    proc = subprocess.Popen([sys.executable, "scripts/bench/pools.py", "--quick", "--json",
                             str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.terminate()  # pools.py unwinds on SIGTERM and tears down every pool it started
        try:
            stdout, stderr = proc.communicate(timeout=25)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"--quick took over 120 s:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    assert proc.returncode == 0, f"{stdout[-4000:]}\n{stderr[-4000:]}"
    data: dict[str, Any] = json.loads(out.read_text())
    return data


@pytest.mark.timeout(150)
def test_every_pool_is_measured_and_nothing_is_left_running(bench: dict[str, Any]) -> None:
    assert bench["problems"] == [] and bench["meta"]["quick"] is True
    assert bench["meta"]["left_running"] == 0
    for key, info in bench["libraries"].items():
        assert "status" not in info or key in OPTIONAL, (key, info.get("status"))
    perf = bench["perf"]["rows"]
    for key, row in perf.items():
        if row.get("status") == "not installed":
            continue
        assert "error" not in row, (key, row.get("error"))
        assert _positive(row["tasks_per_s"]) and row["chunksize"] in bench["perf"]["chunksizes"]
        assert _positive(row["roundtrip"]["p50"]) and row["roundtrip"]["n"] >= 100, key
    for scenario in ("kill9", "hang", "poison", "memory"):
        m = bench[scenario]
        for key, row in m["rows"].items():
            if row.get("status") == "not installed":
                continue
            assert "error" not in row, (scenario, key, row.get("error"))
            counted = row["completed"] + row["failed"] + row["lost"] + row["hung"] + row["wrong"]
            assert counted == m["n"], (scenario, key, row)
    verdicts = {goal["goal"]: goal["verdict"] for goal in bench["goals"]}
    assert len(verdicts) == 6 and "n/a" not in verdicts.values(), verdicts


@pytest.mark.timeout(150)
def test_the_anchors_failure_modes_are_seen(bench: dict[str, Any]) -> None:
    kill9, hang, poison = (bench[s]["rows"] for s in ("kill9", "hang", "poison"))
    n = bench["kill9"]["n"]
    # ProcessPoolExecutor: one killed worker fails every pending task and the pool for good.
    assert kill9["ppe"]["errors"].get("BrokenProcessPool", 0) > 1
    assert kill9["ppe"]["completed"] + kill9["ppe"]["failed"] == n
    assert kill9["ppe"]["capacity_after"]["workers"] == 0
    # multiprocess.Pool: the killed worker's task never returns; the caller would hang.
    assert kill9["multiprocess"]["hung"] == 1 and kill9["multiprocess"]["hung_at_deadline"]
    assert poison["multiprocess"]["hung"] == 1
    # No per-task timeout: the hung task holds its worker, the caller gives up on it.
    assert hang["ppe"]["hung"] == 1 and hang["ppe"]["capacity_after"]["workers"] == 1
    assert poison["ppe"]["poison_deaths"] == 1


@pytest.mark.timeout(150)
def test_janus_mp_task_semantics_in_the_benchmark(bench: dict[str, Any]) -> None:
    """The counts behind the semantic goals (the timing ones are reported, not asserted)."""
    n = bench["kill9"]["n"]
    plain, retry = bench["kill9"]["rows"]["janus-mp"], bench["kill9"]["rows"]["janus-mp/retry"]
    assert (plain["completed"], plain["failed"], plain["errors"]) == (n - 1, 1, {"WorkerDied": 1})
    assert (retry["completed"], retry["failed"], retry["hung"]) == (n, 0, 0)
    hang = bench["hang"]["rows"]["janus-mp"]
    assert hang["errors"] == {"TaskTimeout": 1} and hang["special_outcome"] == "failed"
    assert hang["completed"] == bench["hang"]["n"] - 1
    poison = bench["poison"]["rows"]["janus-mp"]
    assert poison["errors"] == {"PoisonTask": 1} and poison["poison_deaths"] == 3
    assert poison["completed"] == bench["poison"]["n"] - 1
    once = next(g for g in bench["goals"] if g["goal"].startswith("every janus-mp task"))
    assert once["verdict"] == "PASS", once["figure"]
