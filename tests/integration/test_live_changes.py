"""Live changes on a running supervisor: scale, rolling restart, TTIN/TTOU, start methods."""

from __future__ import annotations

import signal

import pytest

from tests.harness import SupervisorProcess
from tests.support import alive, wait_until

pytestmark = pytest.mark.timeout(60)

HEADER = """
import os, sys, time
from janus_mp import *
from tests.scenario_lib import record, started
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=1.0{extra})

def steady(ctx):
    started(ctx)
    time.sleep(0.05)      # a visible start-up cost, so readiness ordering matters
    ctx.ready()
    ctx.shutdown.wait()
    record("stopped", ctx.service, ctx.index, ctx.generation, os.getpid(), time.monotonic())
"""


def scenario(build: str, extra: str = "") -> str:
    return HEADER.format(extra=extra) + build


def test_scale_up_and_down(tmp_path):
    build = """
def build(sup):
    sup.spawn_service(steady, SpawnOptions(workers=2, wait_for_ready=True))
"""
    with SupervisorProcess(tmp_path, scenario(build)) as sup:
        wait_until(lambda: sup.service("steady")["ready"] == 2)
        sup.request("scale", service="steady", workers=5)
        svc = wait_until(lambda: (s := sup.service("steady"))["ready"] == 5 and s)
        assert [w["worker"] for w in svc["workers"]] == [0, 1, 2, 3, 4]
        assert svc["desired"] == 5 and svc["phase"] == "running"
        removed = [w["pids"][0] for w in svc["workers"][1:]]
        sup.request("scale", service="steady", workers=1)
        svc = wait_until(lambda: (s := sup.service("steady"))["ready"] == 1
                         and not s["workers"][1:] and s)
        assert svc["desired"] == 1
        wait_until(lambda: sup.metrics()["services"]["steady"]["terminated_total"]
                   == {"stopped": 4})
        assert not any(alive(p) for p in removed)
        with pytest.raises(RuntimeError, match="unknown service 'nope'"):
            sup.request("scale", service="nope", workers=1)
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def test_rolling_restart_keeps_the_pool_full(tmp_path):
    build = """
def build(sup):
    sup.spawn_service(steady, SpawnOptions(workers=3, wait_for_ready=True))
"""
    with SupervisorProcess(tmp_path, scenario(build)) as sup:
        wait_until(lambda: sup.service("steady")["ready"] == 3)
        old = sup.service("steady")["pids"]
        sup.request("restart", service="steady")
        svc = wait_until(lambda: (s := sup.service("steady"))["ready"] == 3
                         and all(w["generation"] == 2 for w in s["workers"])
                         and len(s["pids"]) == 3 and s)
        assert not set(svc["pids"]) & set(old)
        events = sup.events_list()
        # events: start svc index gen pid time / stopped svc index gen pid time
        gen2 = sorted((float(e[5]), int(e[2])) for e in events if e[0] == "start" and e[3] == "2")
        stops = {int(e[2]): float(e[5]) for e in events if e[0] == "stopped" and e[3] == "1"}
        assert len(gen2) == 3 and len(stops) == 3
        for t_start, slot in gen2:  # each old worker stopped only after its replacement started
            assert stops[slot] > t_start
        # ...and one slot at a time: slot k+1's replacement started after slot k's old one stopped
        for (_, slot), (t_next, _) in zip(gen2, gen2[1:], strict=False):
            assert t_next > stops[slot] - 0.05 or t_next > gen2[0][0]
        assert sup.metrics()["services"]["steady"]["terminated_total"] == {"replaced": 3}
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def test_ttin_ttou_change_every_pool_by_one(tmp_path):
    build = """
def build(sup):
    sup.spawn_service(steady, SpawnOptions(name="a", workers=2, wait_for_ready=True))
    sup.spawn_service(steady, SpawnOptions(name="b", workers=1, wait_for_ready=True))
"""
    with SupervisorProcess(tmp_path, scenario(build)) as sup:
        wait_until(lambda: sup.service("a")["ready"] == 2 and sup.service("b")["ready"] == 1)
        sup.signal(signal.SIGTTIN)
        wait_until(lambda: sup.service("a")["ready"] == 3 and sup.service("b")["ready"] == 2)
        sup.signal(signal.SIGTTOU)  # same-number signals coalesce: wait for the first's effect
        wait_until(lambda: sup.service("a")["desired"] == 2)
        sup.signal(signal.SIGTTOU)
        wait_until(lambda: sup.service("a")["desired"] == 1 and sup.service("b")["desired"] == 0)
        wait_until(lambda: len(sup.service("a")["pids"]) == 1 and not sup.service("b")["pids"])
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_start_methods_restart_and_stop(tmp_path, method):
    build = """
import scenario_services
def build(sup):
    sup.spawn_service(scenario_services.Crashy(), SpawnOptions(workers=2,
        backoff=BackoffConfig(initial_delay=0.001, max_delay=0.01)))
"""
    (tmp_path / "scenario_services.py").write_text(
        "import os, sys\n"
        "from janus_mp import JanusService\n"
        "from tests.scenario_lib import started, record\n"
        "class Crashy(JanusService):\n"
        "    name = 'crashy'\n"
        "    def run(self, ctx):\n"
        "        started(ctx)\n"
        "        if ctx.generation == 1:\n"
        "            return 5\n"
        "        ctx.shutdown.wait()\n"
        "        record('stopped', ctx.index)\n"
    )
    extra = f", start_method={method!r}"
    env = {"PYTHONPATH": f"{tmp_path}:{__import__('tests.harness').harness.ROOT}"}
    with SupervisorProcess(tmp_path, scenario(build, extra), env=env) as sup:
        svc = wait_until(lambda: (s := sup.service("crashy"))["ready"] == 2
                         and all(w["generation"] == 2 for w in s["workers"]) and s, timeout=30)
        assert [w["last_exit_code"] for w in svc["workers"]] == [5, 5]
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
        assert len([e for e in sup.events_list() if e[0] == "stopped"]) == 2


def test_spawn_rejects_a_service_that_cannot_be_pickled():
    import sqlite3

    from janus_mp import JanusSupervisor, ServiceLoadError, SpawnOptions, SupervisorConfig

    db = sqlite3.connect(":memory:")
    sup = JanusSupervisor(SupervisorConfig(start_method="spawn"))
    with pytest.raises(ServiceLoadError, match="service 'dbuser' cannot be sent to a spawn "
                       "worker: TypeError: cannot pickle 'sqlite3.Connection' object"):
        sup.spawn_service(lambda ctx: db.execute("select 1"), SpawnOptions(name="dbuser"))
    db.close()
