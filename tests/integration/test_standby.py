"""Standby workers with real processes: promoted instead of a fork, replenished, replaced
without counting a failure, stopped first at shutdown."""

from __future__ import annotations

import os
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
ZERO = BackoffConfig(initial_delay=0.0, max_delay=0.0, max_retries=0)
"""


def parked(sup: SupervisorProcess, service: str) -> list[int]:
    return sup.service(service)["standby"]["parked"]


def current_pids(sup: SupervisorProcess, service: str) -> list[int]:
    return [pid for w in sup.service(service)["workers"] for pid in w["pids"]]


def test_a_crash_is_replaced_by_the_parked_standby_which_is_then_replenished(tmp_path):
    scenario = HEADER + """
def crunch(ctx):
    started(ctx)
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(crunch, SpawnOptions(workers=2, standby=1, backoff=ZERO))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        standby = wait_until(lambda: parked(sup, "crunch"), message="a parked standby")
        assert len(standby) == 1
        svc = wait_until(lambda: (s := sup.service("crunch"))["ready"] == 2 and s)
        assert standby[0] not in svc["pids"]  # a standby is no ready capacity
        victim = svc["workers"][1]["pids"][0]
        os.kill(victim, signal.SIGKILL)
        worker = wait_until(lambda: (w := sup.service("crunch")["workers"][1])["pids"]
                            and w["pids"][0] != victim and w["phase"] == "running" and w)
        assert worker["pids"] == standby  # the standby's pid, not a new fork
        assert worker["generation"] == 2
        # ...and it ran the service as slot 1, generation 2
        assert ["start", "crunch", "1", "2", str(standby[0])] in \
            [e[:5] for e in sup.events_list()]
        fresh = wait_until(lambda: parked(sup, "crunch"), message="a new standby")
        assert fresh != standby and fresh[0] not in current_pids(sup, "crunch")
        metrics = sup.metrics()["services"]["crunch"]
        assert metrics["standby_promotions_total"] == 1
        assert metrics["restarts_total"] == 1
        assert metrics["workers_by_phase"]["standby"] == 1
        assert metrics["workers_by_phase"]["running"] == 2
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
        assert not alive(victim) and not any(alive(p) for p in standby + fresh)


def test_a_killed_standby_is_replaced_without_counting_a_failure(tmp_path):
    scenario = HEADER + """
def crunch(ctx):
    started(ctx)
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(crunch, SpawnOptions(workers=1, standby=1,
                                           backoff=BackoffConfig(max_retries=1)))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        first = wait_until(lambda: parked(sup, "crunch"))
        serving = wait_until(lambda: current_pids(sup, "crunch"))
        for _ in range(3):  # more deaths than the breaker (max_retries=1) would allow
            victim = wait_until(lambda: parked(sup, "crunch"))[0]
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda v=victim: (p := parked(sup, "crunch")) and p[0] != v,
                       message="a replacement standby")
        svc = sup.service("crunch")
        assert svc["phase"] == "running" and svc["breaker"] == "closed"
        assert svc["workers"][0]["total_failures"] == 0
        assert svc["workers"][0]["restarts"] == 0
        assert current_pids(sup, "crunch") == serving  # the serving worker was not touched
        assert parked(sup, "crunch") != first
        metrics = sup.metrics()["services"]["crunch"]
        assert metrics["restarts_total"] == 0
        assert metrics["circuit_breaker_trips_total"] == 0
        exits = [e for e in sup.exits("crunch") if e["worker"] == -1]
        assert len(exits) == 3 and all(e["exit_code"] == -9 for e in exits)
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def test_shutdown_stops_standbys_first(tmp_path):
    scenario = HEADER + """
def slow_stop(ctx):
    started(ctx)
    ctx.shutdown.wait()
    time.sleep(0.5)  # drains for a while: the standbys are gone before it

def build(sup):
    sup.spawn_service(slow_stop, SpawnOptions(workers=2, standby=2))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        standby = wait_until(lambda: len(p := parked(sup, "slow_stop")) == 2 and p)
        serving = wait_until(lambda: len(p := current_pids(sup, "slow_stop")) == 2 and p)
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
        exited = [line for line in sup.log_text().splitlines() if "exited: stopped" in line]
        pids = [int(line.split("(pid ")[1].split(")")[0].split(",")[0]) for line in exited]
        assert sorted(pids[:2]) == sorted(standby)
        assert all("slow_stop[standby]" in line for line in exited[:2])
        assert sorted(pids[2:]) == sorted(serving)
        assert not any(alive(p) for p in standby + serving)


def test_scale_up_and_rolling_restart_use_standbys(tmp_path):
    scenario = HEADER + """
def crunch(ctx):
    started(ctx)
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(crunch, SpawnOptions(workers=1, standby=1))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        standby = wait_until(lambda: parked(sup, "crunch"))
        sup.request("scale", service="crunch", workers=2)
        slot = wait_until(lambda: (w := sup.service("crunch")["workers"])[1:] and
                          w[1]["phase"] == "running" and w[1])
        assert slot["pids"] == standby
        # A rolling restart retires the standbys (they booted the old code), so the first
        # replacement forks; the successor standby serves the next slot.
        before = current_pids(sup, "crunch")
        sup.request("restart", service="crunch")
        wait_until(lambda: not set(current_pids(sup, "crunch")) & set(before)
                   and sup.service("crunch")["ready"] == 2, timeout=30)
        assert sup.metrics()["services"]["crunch"]["standby_promotions_total"] >= 1
        assert not set(standby) - set(before)  # the promoted standby was slot 1's worker
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
