"""A large start-up is forked a batch per loop turn: the supervisor answers and stops promptly
in the middle of starting 1,000 workers."""

from __future__ import annotations

import signal

import pytest

from tests.harness import SupervisorProcess
from tests.support import alive, wait_until

pytestmark = pytest.mark.timeout(120)

SCENARIO = """
from janus_mp import *
from tests.scenario_lib import started
CONFIG = SupervisorConfig(max_workers=1000, shutdown_timeout=5.0, kill_timeout=2.0)

def idle(ctx):
    started(ctx)
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(idle, SpawnOptions(workers=1000, standby=2))
"""


def test_sigterm_during_the_start_of_1000_workers_stops_them_all(tmp_path):
    with SupervisorProcess(tmp_path, SCENARIO) as sup:
        wait_until(lambda: len(sup.events_list()) >= 40, timeout=60,
                   message="the first batches to start")
        # The loop serves requests between batches: a snapshot mid-start-up answers.
        snap = sup.service("idle")
        assert snap["desired"] == 1000 and snap["ready"] < 1000
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit(timeout=60) == 0
        pids = [int(e[4]) for e in sup.events_list() if e[0] == "start"]
        assert 40 <= len(pids) < 1000  # it stopped forking instead of finishing the start-up
        assert not [p for p in pids if alive(p)]
        spawned = int(sup.log_text().split("spawned=")[-1].split()[0])
        assert len(pids) <= spawned < 1000
