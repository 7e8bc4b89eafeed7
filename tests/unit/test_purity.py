"""The pure core imports no OS, clock, thread, process or randomness module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PURE_MODULES = ["lifecycle", "backoff", "exits", "cancel", "timers", "errors"]
FORBIDDEN = {"os", "signal", "time", "threading", "subprocess", "multiprocess",
             "multiprocessing", "socket", "random", "selectors"}
PACKAGE = Path(__file__).resolve().parents[2] / "janus_mp"


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{module} imports {imported & FORBIDDEN}"
