"""A step of the wall clock must not freeze workers waiting on ``ctx.shutdown``.

The wall clock of the supervisor and its workers is moved by an LD_PRELOAD shim
(tests/native/clock_shift.c, built here with gcc) while they run; the README's idiom
``while not ctx.shutdown.wait(0.1)`` must keep ticking ten times a second on the monotonic clock,
and the watchdog must have no reason to kill anyone.
"""

from __future__ import annotations

import itertools
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.harness import ROOT, SupervisorProcess
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)

SHIM_SOURCE = Path(__file__).resolve().parents[1] / "native" / "clock_shift.c"

# The service lives in a module of its own so that spawned workers can import it.
TICKER = """
import time
from tests.scenario_lib import record

def ticker(ctx):
    while not ctx.shutdown.wait(0.1):
        ctx.heartbeat()
        record("tick", ctx.generation, time.monotonic())
"""

SCENARIO = """
from janus_mp import *
from clock_ticker import ticker
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=1.0, start_method={method!r})

def build(sup):
    sup.spawn_service(ticker, SpawnOptions(workers=1, watchdog_timeout=2.0))
"""


@pytest.fixture(scope="module")
def clock_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: cannot build the LD_PRELOAD wall-clock shim "
                    "tests/native/clock_shift.c")
    library = tmp_path_factory.mktemp("shim") / "clock_shift.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-o", str(library), str(SHIM_SOURCE),
                    "-ldl"], check=True, capture_output=True, timeout=60)
    return library


def _ticks(sup: SupervisorProcess) -> list[tuple[int, float]]:
    return [(int(e[1]), float(e[2])) for e in sup.events_list() if e[0] == "tick"]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_wall_clock_steps_do_not_freeze_shutdown_waits(tmp_path, clock_shim, method):
    shift = tmp_path / "clock_shift"
    shift.write_text("0")
    (tmp_path / "clock_ticker.py").write_text(TICKER)
    env = {"LD_PRELOAD": str(clock_shim), "JANUS_CLOCK_SHIFT_FILE": str(shift),
           "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    with SupervisorProcess(tmp_path, SCENARIO.format(method=method), env=env) as sup:
        wait_until(lambda: len(_ticks(sup)) >= 5, timeout=20, message="the first ticks")
        for offset in ("3600", "-3600"):  # an hour ahead of the real time, then one behind
            shift.write_text(offset)
            before = len(_ticks(sup))
            wait_until(lambda before=before: len(_ticks(sup)) >= before + 20, timeout=6,
                       message=f"20 ticks with the wall clock off by {offset} s")
            window = _ticks(sup)[before + 2:]  # the shim sees a new shift within 20 ms
            gaps = [b - a for (_, a), (_, b) in itertools.pairwise(window)]
            # On the monotonic clock: never stuck (a deadline an hour ahead froze waits for the
            # hour), never early (one an hour behind made them return at once).
            assert min(gaps) >= 0.099 and max(gaps) < 1.0, (offset, gaps)
        assert {generation for generation, _ in _ticks(sup)} == {1}  # nobody was killed
        assert sup.exits() == []
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
