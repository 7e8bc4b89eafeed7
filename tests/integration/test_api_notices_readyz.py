"""Through the Python API, with real workers: a subscription reads lifecycle notices (a crash
with its exit code and reason, the restart that follows), and /readyz shows a worker whose
health probe fails as not ready until the probe passes again."""

from __future__ import annotations

import signal

import pytest

from tests.harness import SupervisorProcess
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)

SCENARIO = """
import random, sys, threading
from janus_mp import BackoffConfig, SpawnOptions, SupervisorConfig
from tests.scenario_lib import record, started

CONFIG = SupervisorConfig(shutdown_timeout=2)

class TopOfRange(random.Random):
    # Jitter at its ceiling: the restart waits its 10 ms, so backing_off is announced (a draw
    # of 0 would restart within the exit's own step, with no backing_off).
    def randint(self, a, b):
        return b

RNG = TopOfRange()

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


READYZ = """
import sys
from janus_mp import HealthCheck, SpawnOptions, SupervisorConfig

CONFIG = SupervisorConfig(shutdown_timeout=2, metrics_port=0)
SICK = {sick!r}
CHECK = HealthCheck(command=(sys.executable, "-c",
                             f"import os, sys; sys.exit(os.path.exists({{SICK!r}}))"),
                    interval=0.1, timeout=10, failures=1000)

def serve(ctx):
    ctx.ready()
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(serve, SpawnOptions(name="web", health=CHECK))
"""


def test_readyz_shows_a_worker_failing_its_probe_until_it_passes_again(tmp_path):
    import json
    import urllib.error
    import urllib.request

    sick = tmp_path / "sick"
    sick.touch()

    def readyz(port: int) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    with SupervisorProcess(tmp_path, READYZ.format(sick=str(sick))) as sup:
        port = sup.request("port")
        # Running (it said ready) but not counted ready: its probe fails.
        wait_until(lambda: (r := readyz(port))[0] == 503 and r[1]["not_ready"].get("web") ==
                   {"phase": "running", "ready": 0, "desired": 1}, timeout=20,
                   message="/readyz failing while the probe fails")
        assert sup.service("web")["workers"][0]["ready"] == 1  # the worker itself is up
        sick.unlink()
        wait_until(lambda: readyz(port)[0] == 200, timeout=20, message="/readyz ready again")
        assert sup.exits() == []  # never replaced: failures = 1000
