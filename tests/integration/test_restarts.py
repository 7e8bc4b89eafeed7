"""Exit codes drive restarts: real worker processes, real exits, asserted through snapshots."""

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
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=2.0)
FAST = BackoffConfig(initial_delay=0.01, max_delay=0.05, max_retries=0)
"""


def starts(sup: SupervisorProcess, service: str) -> list[list[str]]:
    return [e for e in sup.events_list() if e[0] == "start" and e[1] == service]


def test_crash_restarts_with_reason_and_generation(tmp_path):
    scenario = HEADER + """
def flaky(ctx):
    started(ctx)
    if ctx.generation < 3:
        sys.exit(7)
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(flaky, SpawnOptions(workers=1, backoff=FAST))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: len(starts(sup, "flaky")) >= 3)
        worker = wait_until(lambda: (w := sup.service("flaky")["workers"][0])["phase"] == "running"
                            and w)
        assert worker["generation"] == 3
        assert worker["restarts"] == 2
        assert worker["last_exit_code"] == 7
        assert worker["total_failures"] == 2
        assert worker["last_error"] == "failed (exit code 7)"
        assert [int(e[3]) for e in starts(sup, "flaky")] == [1, 2, 3]
        metrics = sup.metrics()
        assert metrics["spawned_total"] == 3
        assert metrics["restarts_total"] == 2
        assert metrics["services"]["flaky"]["terminated_total"] == {"failed": 2}
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


@pytest.mark.parametrize("policy, code, restarted, final", [
    ("ALWAYS", 0, True, None),
    ("ON_FAILURE", 0, False, "completed"),
    ("ON_FAILURE", 1, True, None),
    ("NEVER", 1, False, "unrecoverable"),
    ("NEVER", 0, False, "completed"),
])
def test_restart_policies(tmp_path, policy, code, restarted, final):
    scenario = HEADER + f"""
def once(ctx):
    started(ctx)
    if ctx.generation == 1:
        sys.exit({code})
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(once, SpawnOptions(workers=1, restart=RestartPolicy.{policy}, backoff=FAST))
    sup.spawn_service(lambda ctx: ctx.shutdown.wait(), SpawnOptions(name="keeper"))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        if restarted:
            wait_until(lambda: len(starts(sup, "once")) == 2)
            wait_until(lambda: sup.service("once")["workers"][0]["phase"] == "running")
        else:
            svc = wait_until(lambda: (s := sup.service("once"))["phase"] == "terminated" and s)
            assert svc["workers"][0]["termination_reason"]["kind"] == final
            assert len(starts(sup, "once")) == 1
        wait_until(lambda: sup.service("keeper")["phase"] == "running")
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def test_success_and_no_restart_codes(tmp_path):
    scenario = HEADER + """
def success(ctx):
    started(ctx)
    sys.exit(42)

def config_error(ctx):
    started(ctx)
    sys.exit(78)

def build(sup):
    sup.spawn_service(success, SpawnOptions(success_codes={0, 42}, backoff=FAST))
    sup.spawn_service(config_error, SpawnOptions(backoff=FAST))
    sup.spawn_service(lambda ctx: ctx.shutdown.wait(), SpawnOptions(name="keeper"))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        ok = wait_until(lambda: (s := sup.service("success"))["phase"] == "terminated" and s)
        assert ok["workers"][0]["termination_reason"]["kind"] == "completed"
        bad = wait_until(lambda: (s := sup.service("config_error"))["phase"] == "terminated" and s)
        assert bad["workers"][0]["termination_reason"]["kind"] == "unrecoverable"
        assert bad["workers"][0]["last_exit_code"] == 78
        assert len(starts(sup, "success")) == 1 and len(starts(sup, "config_error")) == 1
        sup.signal(signal.SIGTERM)
        # A shutdown asked for (SIGTERM) ends 0 even though one service ended unrecoverable:
        # that failure is in status and metrics, not in the exit status of a requested stop.
        assert sup.wait_exit() == 0


def test_halt_code_shuts_supervisor_down_with_that_code(tmp_path):
    scenario = HEADER + """
def boot_fails(ctx):
    started(ctx)
    time.sleep(0.2)
    sys.exit(3)

def build(sup):
    sup.spawn_service(boot_fails, SpawnOptions(backoff=FAST))
    sup.spawn_service(lambda ctx: (started(ctx), ctx.shutdown.wait()), SpawnOptions(name="other", workers=2))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        assert sup.wait_exit() == 3
        assert len(starts(sup, "boot_fails")) == 1


def test_uncaught_exception_is_logged_and_exits_1(tmp_path):
    scenario = HEADER + """
def boom(ctx):
    started(ctx)
    if ctx.generation == 1:
        raise RuntimeError("kaboom in worker")
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(boom, SpawnOptions(backoff=FAST))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: len(starts(sup, "boom")) == 2)
        worker = sup.service("boom")["workers"][0]
        assert worker["last_exit_code"] == 1
        assert "RuntimeError: kaboom in worker" in sup.log_text()
        assert "Traceback" in sup.log_text()


def test_sigkilled_worker_is_restarted_with_reason_killed(tmp_path):
    scenario = HEADER + """
def steady(ctx):
    started(ctx)
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(steady, SpawnOptions(workers=2, backoff=FAST))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.service("steady")["ready"] == 2)
        victim = sup.service("steady")["workers"][1]["pids"][0]
        import os
        os.kill(victim, signal.SIGKILL)
        worker = wait_until(lambda: (w := sup.service("steady")["workers"][1])["generation"] == 2
                            and w["phase"] == "running" and w)
        assert worker["last_exit_code"] == -9
        assert worker["last_error"] == "killed by signal 9 (SIGKILL)"
        assert worker["pids"][0] != victim and not alive(victim)
        assert sup.metrics()["services"]["steady"]["terminated_total"] == {"killed": 1}
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
