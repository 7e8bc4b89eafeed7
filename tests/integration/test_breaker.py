"""The circuit breaker on real crash loops: exact trip count, half-open recovery, critical."""

from __future__ import annotations

import signal

import pytest

from tests.harness import SupervisorProcess
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)

HEADER = """
import os, sys, time
from janus_mp import *
from tests.scenario_lib import record, started
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=2.0)
"""


def starts(sup, service):
    return [e for e in sup.events_list() if e[0] == "start" and e[1] == service]


def test_breaker_trips_at_exact_count_and_service_ends(tmp_path):
    scenario = HEADER + """
def crashloop(ctx):
    started(ctx)
    sys.exit(1)

def build(sup):
    sup.spawn_service(crashloop, SpawnOptions(backoff=BackoffConfig(
        initial_delay=0.001, max_delay=0.01, max_retries=4, window=600,
        half_open_after=None)))
    sup.spawn_service(lambda ctx: ctx.shutdown.wait(), SpawnOptions(name="bystander"))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        svc = wait_until(lambda: (s := sup.service("crashloop"))["phase"] == "terminated" and s)
        assert svc["termination_reason"]["kind"] == "circuit_breaker_open"
        assert svc["termination_reason"]["text"] == "circuit breaker open (4/4 failures)"
        assert len(starts(sup, "crashloop")) == 4
        metrics = sup.metrics()
        assert metrics["services"]["crashloop"]["circuit_breaker_trips_total"] == 1
        assert metrics["services"]["crashloop"]["spawned_total"] == 4
        assert metrics["services"]["crashloop"]["restarts_total"] == 3
        assert metrics["active_services"] == 1
        # The rest keep running: the bystander gets there on its own time (the crash loop may
        # trip before it has even started on a loaded machine), and stays there.
        wait_until(lambda: sup.service("bystander")["phase"] == "running", timeout=20)
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0  # asked to stop; the service was not critical


def test_half_open_trial_closes_breaker_and_restores_pool(tmp_path):
    scenario = HEADER + """
def recovers(ctx):
    started(ctx)
    # Fails for its first 3 starts (a shared counter in a file), then stays up.
    path = os.environ["JANUS_TEST_EVENTS"] + ".count"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
    os.write(fd, b"x")
    count = os.fstat(fd).st_size
    os.close(fd)
    if count <= 3:
        sys.exit(1)
    ctx.ready()
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(recovers, SpawnOptions(workers=2, wait_for_ready=True,
        backoff=BackoffConfig(initial_delay=0.001, max_delay=0.01, max_retries=3, window=600,
                              half_open_after=0.3, trial_period=0.3)))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.metrics()["circuit_breaker_trips_total"] >= 1)
        svc = wait_until(lambda: (s := sup.service("recovers"))["phase"] == "running"
                         and s["ready"] == 2 and s, timeout=20)
        assert svc["breaker"] == "closed"
        assert sup.metrics()["circuit_breaker_trips_total"] == 1
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def test_critical_service_breaker_shuts_supervisor_down_nonzero(tmp_path):
    scenario = HEADER + """
def crashloop(ctx):
    sys.exit(1)

def build(sup):
    sup.spawn_service(crashloop, SpawnOptions(critical=True, backoff=BackoffConfig(
        initial_delay=0.001, max_delay=0.01, max_retries=3)))
    sup.spawn_service(lambda ctx: (started(ctx), ctx.shutdown.wait()), SpawnOptions(name="other", workers=2))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        assert sup.wait_exit(timeout=30) == 1


def test_a_tripped_breaker_leaves_no_phantom_stopping_row(tmp_path):
    # Was: after the trip, a slot with no process stayed "stopping" for good (status row with
    # no pid, janus_supervisor_workers{phase="stopping"} 1) and every slot row said "closed".
    scenario = HEADER + """
def half_broken(ctx):
    started(ctx)
    if ctx.index == 1:
        sys.exit(1)
    ctx.ready()
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(half_broken, SpawnOptions(workers=2, backoff=BackoffConfig(
        initial_delay=0.001, max_delay=0.01, max_retries=3, window=600,
        half_open_after=None)))
    sup.spawn_service(lambda ctx: ctx.shutdown.wait(), SpawnOptions(name="bystander"))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        svc = wait_until(lambda: (s := sup.service("half_broken"))["phase"] == "terminated"
                         and s)
        assert [w["phase"] for w in svc["workers"]] == ["terminated", "terminated"]
        assert [w["breaker"] for w in svc["workers"]] == ["open", "open"]
        assert svc["workers"][1]["total_failures"] == 3
        assert all(w["pids"] == [] for w in svc["workers"])
        phases = sup.metrics()["services"]["half_broken"]["workers_by_phase"]
        assert phases == {"terminated": 2}
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
