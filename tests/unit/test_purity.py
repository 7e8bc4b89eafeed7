"""The pure core imports no OS, clock, thread, process or randomness module: every module of
``janus_mp/core/`` (present and future) is checked, plus the leaf ``errors`` module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FORBIDDEN = {"os", "signal", "time", "threading", "subprocess", "multiprocess",
             "multiprocessing", "socket", "random", "selectors", "psutil", "asyncio",
             "concurrent"}
PACKAGE = Path(__file__).resolve().parents[2] / "janus_mp"
PURE_FILES = sorted(PACKAGE.glob("core/*.py")) + [PACKAGE / "errors.py"]


def test_the_core_package_is_not_empty():
    assert len(PURE_FILES) >= 8, PURE_FILES


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_pure_module_imports(path):
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
            if node.module.startswith("janus_mp.") and not (
                    node.module.startswith("janus_mp.core") or node.module == "janus_mp.errors"):
                imported.add(node.module)
    bad = {name for name in imported if name in FORBIDDEN or name.startswith("janus_mp.")}
    assert not bad, f"{path.name} imports {bad}"
