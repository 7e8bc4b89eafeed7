"""Every way a worker can end, with real processes: the exit is reported as it happened (code
or signal) and the slot is refilled by the parked standby; a fatal fault announces itself
through the worker's fault handler, whose report still reaches the worker's stderr."""

from __future__ import annotations

import os
import signal

import pytest

from tests.harness import SupervisorProcess
from tests.integration.test_standby import parked
from tests.support import alive, wait_until

pytestmark = pytest.mark.timeout(60)

SCENARIO = """
import ctypes, os, signal, sys, time
from janus_mp import *
from tests.scenario_lib import record, started
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=2.0)
KIND = {kind!r}

def crasher(ctx):
    started(ctx)
    ctx.ready()
    if ctx.generation > 1:
        ctx.shutdown.wait()
        return
    while not os.path.exists(os.environ["JANUS_TEST_EVENTS"] + ".go"):
        if ctx.shutdown.wait(0.01):
            return
    if KIND == "return":
        return
    if KIND == "sys.exit":
        sys.exit(7)
    if KIND == "os._exit":
        os._exit(5)
    if KIND == "sigsegv":
        ctypes.string_at(0)
    if KIND == "sigabrt":
        os.abort()
    if KIND == "sigbus":
        signal.raise_signal(signal.SIGBUS)
    ctx.shutdown.wait()  # sigkill: from outside

def build(sup):
    sup.spawn_service(crasher, SpawnOptions(
        standby=1, restart=RestartPolicy.ALWAYS, backoff=BackoffConfig(initial_delay=0.0, max_delay=0.0, max_retries=0,
                                         clean_restart_delay=0.0)))
"""

EXPECTED = {"return": 0, "sys.exit": 7, "os._exit": 5, "sigkill": -signal.SIGKILL,
            "sigsegv": -signal.SIGSEGV, "sigabrt": -signal.SIGABRT, "sigbus": -signal.SIGBUS}
FAULTS = {"sigsegv": "Segmentation fault", "sigabrt": "Aborted", "sigbus": "Bus error"}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_the_exit_is_reported_as_it_happened_and_the_standby_takes_the_slot(tmp_path, kind):
    with SupervisorProcess(tmp_path, SCENARIO.format(kind=kind)) as sup:
        standby = wait_until(lambda: parked(sup, "crasher"), message="a parked standby")
        first = wait_until(lambda: (s := sup.service("crasher"))["ready"] == 1 and
                           s["pids"][0])
        (tmp_path / "events.log.go").touch()
        if kind == "sigkill":
            os.kill(first, signal.SIGKILL)
        exits = wait_until(lambda: sup.exits("crasher"), message="the exit")
        assert exits[0]["pid"] == first
        assert exits[0]["exit_code"] == EXPECTED[kind], exits[0]
        worker = wait_until(lambda: (w := sup.service("crasher")["workers"][0])["pids"] and
                            w["pids"][0] != first and w["phase"] == "running" and w)
        assert worker["pids"] == standby  # promoted, not forked
        wait_until(lambda: not alive(first), message="the crashed worker to be gone")
        if kind in FAULTS:
            # faulthandler's report, through the crash pipe, is the worker's stderr
            line = f"crasher[0] err| Fatal Python error: {FAULTS[kind]}"
            wait_until(lambda: line in sup.log_text(), message=line)
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


ANNOUNCED = """
import faulthandler, os, signal
from janus_mp import *
from janus_mp.runtime import output_pipes
from tests.scenario_lib import record, started
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=2.0)

def survives_its_fault(ctx):
    started(ctx)
    ctx.ready()
    if ctx.generation > 1:
        ctx.shutdown.wait()
        return
    # The fault handler reports SIGABRT on the crash pipe, then re-raises it with the handler
    # it replaced: ignored here, so the process lives on after its announcement.
    faulthandler.disable()
    signal.signal(signal.SIGABRT, signal.SIG_IGN)
    faulthandler.enable(file=output_pipes._crash_end.fileno())
    signal.raise_signal(signal.SIGABRT)
    record("survived", os.getpid())
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(survives_its_fault, SpawnOptions(
        standby=1, restart=RestartPolicy.ALWAYS,
        backoff=BackoffConfig(initial_delay=0.0, max_delay=0.0, max_retries=0)))
"""


def test_a_fault_is_decided_when_the_handler_reports_it_not_when_the_process_ends(tmp_path):
    with SupervisorProcess(tmp_path, ANNOUNCED) as sup:
        survived = wait_until(lambda: [e for e in sup.events_list() if e[0] == "survived"])
        first = int(survived[0][1])
        exits = wait_until(lambda: sup.exits("survives_its_fault"), message="the exit")
        # Decided from the report: the process itself did not die of it (it is stopped as a
        # retiring worker, and that later exit only ends it).
        assert [(e["pid"], e["exit_code"]) for e in exits] == [(first, -signal.SIGABRT)]
        worker = wait_until(lambda: (w := sup.service("survives_its_fault")["workers"][0])
                            ["pids"] and w["pids"][0] != first and w)
        assert worker["generation"] == 2
        wait_until(lambda: not alive(first), message="the retiring worker to be stopped")
        assert [(e["pid"], e["exit_code"]) for e in sup.exits()] == [(first, -signal.SIGABRT)]
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


FORKS_A_CRASHING_CHILD = """
import ctypes, os
from janus_mp import *
from tests.scenario_lib import record, started

def parent(ctx):
    started(ctx)
    pid = os.fork()
    if pid == 0:  # a child of the worker, forked without exec: its fault is its own
        ctypes.string_at(0)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    record("child", os.waitstatus_to_exitcode(status))
    ctx.ready()
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(parent, SpawnOptions(standby=1))
"""


def test_a_crashing_child_of_a_worker_does_not_speak_for_the_worker(tmp_path):
    with SupervisorProcess(tmp_path, FORKS_A_CRASHING_CHILD) as sup:
        wait_until(lambda: sup.service("parent")["ready"] == 1)
        assert ["child", str(-signal.SIGSEGV)] in sup.events_list()
        assert sup.exits() == []
        assert sup.service("parent")["workers"][0]["generation"] == 1
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_fault_is_reported_under_every_start_method(tmp_path, method):
    (tmp_path / "faulty_services.py").write_text(
        "import ctypes\n"
        "from janus_mp import JanusService\n"
        "from tests.scenario_lib import started\n"
        "class Faulty(JanusService):\n"
        "    name = 'faulty'\n"
        "    def run(self, ctx):\n"
        "        started(ctx)\n"
        "        if ctx.generation == 1:\n"
        "            ctypes.string_at(0)\n"
        "        ctx.shutdown.wait()\n"
    )
    scenario = f"""
import faulty_services
from janus_mp import *
CONFIG = SupervisorConfig(start_method={method!r}, shutdown_timeout=5.0)
def build(sup):
    sup.spawn_service(faulty_services.Faulty(), SpawnOptions(
        standby=1, backoff=BackoffConfig(initial_delay=0.0, max_delay=0.0, max_retries=0)))
"""
    env = {"PYTHONPATH": f"{tmp_path}:{__import__('tests.harness').harness.ROOT}"}
    with SupervisorProcess(tmp_path, scenario, env=env) as sup:
        exits = wait_until(lambda: sup.exits("faulty"), timeout=30, message="the fault")
        assert exits[0]["exit_code"] == -signal.SIGSEGV
        wait_until(lambda: sup.service("faulty")["workers"][0]["generation"] == 2, timeout=30)
        line = "faulty[0] err| Fatal Python error: Segmentation fault"
        wait_until(lambda: line in sup.log_text(), message=line)
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
