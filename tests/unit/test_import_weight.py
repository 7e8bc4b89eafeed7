"""What ``import janus_mp`` loads is mapped by every worker (they are forked from the
supervisor): each megabyte of it is page tables every fork copies and every exit tears down.
asyncio and psutil are loaded only where they are used."""

from __future__ import annotations

import subprocess
import sys

LAZY = ("asyncio", "psutil")


def test_importing_janus_mp_and_its_supervisor_loads_neither_asyncio_nor_psutil():
    code = ("import sys, janus_mp; from janus_mp import JanusSupervisor, TaskPool; "
            f"print(','.join(m for m in {LAZY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60).stdout.strip()
    assert loaded == ""


def test_the_check_sees_a_module_that_is_loaded():
    code = f"import sys, janus_mp, asyncio; print(','.join(m for m in {LAZY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60).stdout.strip()
    assert loaded == "asyncio"
