"""The benchmark scripts run and produce numbers (smoke only: timing goals live in scripts/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_bench_scrape_quick(tmp_path):
    out = tmp_path / "scrape.json"
    result = subprocess.run([sys.executable, "scripts/bench_scrape.py", "--quick", "--json",
                             str(out)], cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["restarts"] for r in rows] == [0, 1000]
    assert all(r["janus_ms"] > 0 and r["stock_ms"] > 0 for r in rows)
    assert rows[-1]["janus_files"] < rows[-1]["stock_files"]


@pytest.mark.timeout(120)
def test_bench_core_quick(tmp_path):
    out = tmp_path / "core.json"
    result = subprocess.run([sys.executable, "scripts/bench_core.py", "--restarts", "8",
                             "--workers", "5", "--repeat", "1", "--json", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert len(data["restart_ms"]["janus_zero_backoff"]) >= 8
    assert len(data["restart_ms"]["floor"]) >= 8
    assert data["shutdown_ms"]["janus"][0] > 0 and data["shutdown_ms"]["floor"][0] > 0


@pytest.mark.timeout(120)
def test_bench_fork_sources_quick():
    result = subprocess.run([sys.executable, "scripts/bench_fork_sources.py", "--quick"],
                            cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:]}
    assert set(rows) == {"supervisor", "zygote", "forkserver"}
    for cells in rows.values():  # boot ms, ×, teardown ms, ×, USS MiB, ×
        assert float(cells[1]) > 0 and float(cells[3]) > 0 and float(cells[5]) > 0, cells
