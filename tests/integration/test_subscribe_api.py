"""The Python API's subscription: a thread in the supervisor's process reads lifecycle notices
of real workers (a crash with its exit code and reason, the restart that follows)."""

from __future__ import annotations

import signal

import pytest

from tests.harness import SupervisorProcess
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)

SCENARIO = """
import sys, threading
from janus_mp import BackoffConfig, SpawnOptions, SupervisorConfig
from tests.scenario_lib import record, started

CONFIG = SupervisorConfig(shutdown_timeout=2)

def flaky(ctx):
    started(ctx)
    ctx.ready()
    if ctx.generation == 1:
        sys.exit(7)
    ctx.shutdown.wait()

def listen(subscription):
    while not subscription.closed:
        notices, lost = subscription.get(1.0)
        for n in notices:
            record("notice", n.kind.value, n.service, n.slot, n.pid, n.exit_code, n.reason)

def build(sup):
    sup.spawn_service(flaky, SpawnOptions(backoff=BackoffConfig(initial_delay=0.01,
                                                                max_retries=0)))
    threading.Thread(target=listen, args=(sup.subscribe(),), daemon=True).start()
"""


def test_a_subscriber_sees_a_crash_and_the_restart(tmp_path):
    with SupervisorProcess(tmp_path, SCENARIO) as sup:
        def notices():
            return [e[1:] for e in sup.events_list() if e[0] == "notice"]

        wait_until(lambda: [n[0] for n in notices()].count("ready") == 2, timeout=20,
                   message="the restarted worker ready")
        first_pid = next(e[4] for e in sup.events_list() if e[0] == "start")
        kinds = [n[0] for n in notices()]
        assert kinds == ["spawned", "ready", "exited", "backing_off", "spawned", "ready"]
        exited = notices()[2]
        assert exited == ["exited", "flaky", "0", first_pid, "7", "failed"]
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
