"""The guard shares the supervisor's memory: a preloaded app is not copied into it.

The guard is forked from the supervisor. Any page of the app's objects that the supervisor
writes to after that fork (its collector writes to every object it walks) becomes the guard's
own copy, so the guard is forked only once the app's objects are frozen out of the collector.
"""

from __future__ import annotations

import re

import pytest

from tests.harness import SupervisorProcess
from tests.integration.test_hardening import guard_pid
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)

MIB = 1024 * 1024

SCENARIO = """
import os, sys
from janus_mp import *
from tests.scenario_lib import record, started

# ~50 MB of Python objects, imported once before the supervisor starts (a preloaded app).
GRAPH = [[i, str(i), (i, float(i))] for i in range(200_000)]

def crashes_twice(ctx):
    started(ctx)
    ctx.ready()
    if ctx.generation < 3:
        sys.exit(1)
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(crashes_twice, SpawnOptions(backoff=BackoffConfig(initial_delay=0.0,
                                                                        max_delay=0.0)))
"""


def rollup(pid: int, *fields: str) -> int:
    """The sum of ``fields`` of /proc/PID/smaps_rollup, in bytes."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        text = f.read()
    return sum(int(kb) for name, kb in re.findall(r"^(\w+):\s+(\d+) kB", text, re.MULTILINE)
               if name in fields) * 1024


def test_the_guard_keeps_a_preloaded_app_shared(tmp_path):
    with SupervisorProcess(tmp_path, SCENARIO) as sup:
        # The supervisor has run through exits and restarts since it forked the guard.
        wait_until(lambda: sup.service("crashes_twice")["ready"] == 1 and
                   len(sup.exits("crashes_twice")) >= 2, timeout=30)
        guard = wait_until(lambda: guard_pid(sup), message="the guard process")
        supervisor = rollup(sup.pid, "Rss")
        assert supervisor > 60 * MIB, f"the app was not preloaded: {supervisor / MIB:.1f} MiB"
        # Forked before the freeze, it held ~39 MiB of the app's pages as its own; with an
        # empty app it holds ~4.5 MiB.
        private = rollup(guard, "Private_Clean", "Private_Dirty")
        assert private < 12 * MIB, f"the guard holds {private / MIB:.1f} MiB of its own"
