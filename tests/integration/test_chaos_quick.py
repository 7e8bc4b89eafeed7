"""The chaos run's short form: SIGKILLs at 20/s against counted work; every check must pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_chaos_short_form(tmp_path):
    out = tmp_path / "chaos.json"
    result = subprocess.run([sys.executable, "scripts/chaos.py", "--duration", "6", "--rate",
                             "20", "--seed", "7", "--json", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    assert data["kills"] >= 100
    assert data["restarts_total"] == data["kills"]
    assert all(data["checks"].values()), data["checks"]
