"""Stopping: cooperative, escalated, stubborn, hung; grandchildren; supervisor death."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.harness import SupervisorProcess
from tests.support import alive, children_of, proc_state, tagged_pids, wait_until

pytestmark = pytest.mark.timeout(60)

HEADER = """
import os, sys, time, signal
from janus_mp import *
from tests.scenario_lib import record, started
"""


def describe(pids):
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ")[:60]
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        out.append((pid, "state", fields[0], "ppid", fields[1], "pgid", fields[2], cmd))
    return out


def starts(sup, service):
    return [e for e in sup.events_list() if e[0] == "start" and e[1] == service]


def test_graceful_shutdown_is_cooperative_and_reaps_everyone(tmp_path):
    scenario = HEADER + """
CONFIG = SupervisorConfig(shutdown_timeout=10.0, kill_timeout=2.0)
def polite(ctx):
    started(ctx)
    ctx.shutdown.wait()
    record("stopped", ctx.service, ctx.index)

def build(sup):
    sup.spawn_service(polite, SpawnOptions(workers=4))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.service("polite")["ready"] == 4)
        pids = sup.service("polite")["pids"]
        started_at = time.monotonic()
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
        assert time.monotonic() - started_at < 5.0  # cooperative: no escalation deadline hit
        assert sorted(int(e[2]) for e in sup.events_list() if e[0] == "stopped") == [0, 1, 2, 3]
        assert not any(alive(p) for p in pids)
        assert "SIGTERM" not in sup.log_text() and "SIGKILL" not in sup.log_text()


def test_stubborn_worker_is_killed_at_deadline(tmp_path):
    scenario = HEADER + """
CONFIG = SupervisorConfig(shutdown_timeout=0.5, kill_timeout=0.5)
def stubborn(ctx):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    started(ctx)
    while True:
        time.sleep(0.05)   # ignores ctx.shutdown entirely

def build(sup):  # no stack-dump wait before the SIGKILL: this times the escalation alone
    sup.spawn_service(stubborn, SpawnOptions(workers=2, stack_dump_timeout=None))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.service("stubborn")["ready"] == 2)
        t0 = time.monotonic()
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
        elapsed = time.monotonic() - t0
        assert 0.9 <= elapsed <= 0.5 + 0.5 + 0.5 + 0.5  # deadline, plus interpreter exit
        log = sup.log_text()
        assert "sending SIGTERM" in log and "sending SIGKILL" in log


def test_second_sigterm_skips_to_sigkill(tmp_path):
    scenario = HEADER + """
CONFIG = SupervisorConfig(shutdown_timeout=30.0, kill_timeout=30.0)
def stubborn(ctx):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    started(ctx)
    while True:
        time.sleep(0.05)

def build(sup):
    sup.spawn_service(stubborn, SpawnOptions(workers=2))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.service("stubborn")["ready"] == 2)
        sup.signal(signal.SIGTERM)
        wait_until(lambda: "shutting down" in sup.log_text())
        t0 = time.monotonic()
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit(timeout=10) == 0
        assert time.monotonic() - t0 < 5.0


def test_watchdog_kills_sigstopped_worker(tmp_path):
    scenario = HEADER + """
CONFIG = SupervisorConfig(shutdown_timeout=2.0, kill_timeout=1.0)
def beating(ctx):
    started(ctx)
    while not ctx.shutdown.wait(0.05):
        ctx.heartbeat()

def build(sup):
    sup.spawn_service(beating, SpawnOptions(workers=2, watchdog_timeout=1.0,
        stack_dump_timeout=0.2,  # a stopped worker cannot answer: killed after the wait
        backoff=BackoffConfig(initial_delay=0.001, max_delay=0.01)))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.service("beating")["ready"] == 2)
        victim = sup.service("beating")["workers"][0]["pids"][0]
        os.kill(victim, signal.SIGSTOP)
        t0 = time.monotonic()
        wait_until(lambda: not alive(victim), timeout=5)
        detected = time.monotonic() - t0
        assert detected <= 1.0 + 0.2 + 0.5
        assert "wrote no stack dump in time" in sup.log_text()
        worker = wait_until(lambda: (w := sup.service("beating")["workers"][0])["generation"] == 2
                            and w["phase"] == "running" and w)
        assert worker["last_error"] == "watchdog timeout"
        assert sup.metrics()["services"]["beating"]["terminated_total"] == {"watchdog_timeout": 1}
        assert sup.service("beating")["workers"][1]["generation"] == 1  # the other one untouched


def test_watchdog_kills_busy_loop_without_heartbeat(tmp_path):
    scenario = HEADER + """
CONFIG = SupervisorConfig(shutdown_timeout=2.0, kill_timeout=1.0)
def spinner(ctx):
    started(ctx)
    if ctx.generation == 1:
        while True:
            pass          # never heartbeats again
    while not ctx.shutdown.wait(0.05):
        ctx.heartbeat()

def build(sup):
    sup.spawn_service(spinner, SpawnOptions(watchdog_timeout=0.8, stack_dump_timeout=0.3,
        backoff=BackoffConfig(initial_delay=0.001, max_delay=0.01)))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        first = wait_until(lambda: starts(sup, "spinner"))[0]
        second = wait_until(lambda: len(starts(sup, "spinner")) == 2 and starts(sup, "spinner")[1],
                            timeout=5)
        assert float(second[5]) - float(first[5]) <= 0.8 + 0.3 + 0.5
        assert sup.service("spinner")["workers"][0]["last_error"] == "watchdog timeout"
        assert "stack dump before SIGKILL" in sup.log_text()  # the busy loop answers too
        assert "in spinner" in sup.log_text()


def test_start_timeout_kills_worker_that_never_gets_ready(tmp_path):
    scenario = HEADER + """
CONFIG = SupervisorConfig(shutdown_timeout=2.0, kill_timeout=1.0)
def slow(ctx):
    started(ctx)
    if ctx.generation > 1:
        ctx.ready()
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(slow, SpawnOptions(wait_for_ready=True, start_timeout=0.5,
        backoff=BackoffConfig(initial_delay=0.001, max_delay=0.01)))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        # >= 2: on a loaded machine the second generation may miss 0.5 s too; one after it
        # gets there, and the reason stays the start timeout.
        worker = wait_until(lambda: (w := sup.service("slow")["workers"][0])["generation"] >= 2
                            and w["phase"] == "running" and w, timeout=30)
        assert worker["last_error"] == "start timeout"


GRANDCHILDREN = HEADER + """
CONFIG = SupervisorConfig(shutdown_timeout=2.0, kill_timeout=1.0)
def spawner(ctx):
    started(ctx)
    for i in range(10):
        pid = os.fork()
        if pid == 0:
            if i % 3 == 0:       # escape: new session, then double-fork away
                os.setsid()
                if os.fork() > 0:
                    os._exit(0)
            elif i % 3 == 1:     # new process group only
                os.setpgid(0, 0)
            record("grandchild", ctx.generation, os.getpid())
            while True:
                time.sleep(1)
    time.sleep(0.3)
    if ctx.generation == 1:
        sys.exit(1)
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(spawner, SpawnOptions(backoff=BackoffConfig(initial_delay=0.001, max_delay=0.01)))
"""


def test_grandchildren_do_not_survive_restart_or_shutdown(tmp_path):
    with SupervisorProcess(tmp_path, GRANDCHILDREN) as sup:
        def grandchildren(gen):
            return [int(e[2]) for e in sup.events_list() if e[0] == "grandchild" and e[1] == gen]
        wait_until(lambda: len(grandchildren("1")) == 10)
        wait_until(lambda: len(grandchildren("2")) == 10)
        # The first generation crashed: everything it started is gone, escaped ones included.
        wait_until(lambda: not any(alive(p) for p in grandchildren("1")), timeout=3)
        second = grandchildren("2")
        assert all(alive(p) for p in second)
        # What the dead generation left was killed and reaped: no zombie is parented to us.
        wait_until(lambda: not [p for p in children_of(sup.pid) if proc_state(p) == "Z"],
                   timeout=3)
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
        assert not any(alive(p) for p in second)
        assert tagged_pids(sup.tag) == []


def test_sigkilled_supervisor_leaves_no_process_behind(tmp_path):
    with SupervisorProcess(tmp_path, GRANDCHILDREN) as sup:
        wait_until(lambda: len([e for e in sup.events_list() if e[0] == "grandchild"]) >= 20)
        tree = tagged_pids(sup.tag)
        assert len(tree) >= 12
        sup.signal(signal.SIGKILL)
        # Promptly (the deadman's kill, not a later sweep), with room for a loaded machine.
        try:
            wait_until(lambda: not tagged_pids(sup.tag), timeout=10.0)
        except AssertionError:
            raise AssertionError(f"left after 10 s: {describe(tagged_pids(sup.tag))}") from None


def test_stopping_one_service_leaves_others_running(tmp_path):
    scenario = HEADER + """
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=1.0)
def worker(ctx):
    started(ctx)
    ctx.shutdown.wait()
    record("cancelled", ctx.service, ctx.index, ctx.shutdown.reason)

def build(sup):
    sup.spawn_service(worker, SpawnOptions(name="a", workers=2))
    sup.spawn_service(worker, SpawnOptions(name="b", workers=2))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.service("a")["ready"] == 2 and sup.service("b")["ready"] == 2)
        b_pids = sup.service("b")["pids"]
        sup.request("stop", service="a")
        wait_until(lambda: sup.service("a")["phase"] == "terminated")
        assert sorted(e[1] for e in sup.events_list() if e[0] == "cancelled") == ["a", "a"]
        assert sup.service("b")["phase"] == "running" and sup.service("b")["pids"] == b_pids
        assert sup.metrics()["active_services"] == 1
        sup.request("start", service="a")
        wait_until(lambda: sup.service("a")["ready"] == 2)
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def test_services_stop_in_reverse_start_order(tmp_path):
    scenario = HEADER + """
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=1.0)
def worker(ctx):
    started(ctx)
    ctx.shutdown.wait()
    time.sleep(0.1)
    record("stopped", ctx.service, time.monotonic())

def build(sup):
    sup.spawn_service(worker, SpawnOptions(name="db", start_order=0))
    sup.spawn_service(worker, SpawnOptions(name="api", start_order=1))
    sup.spawn_service(worker, SpawnOptions(name="edge", start_order=2))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: all(s["ready"] == 1 for s in sup.snapshot()["services"]))
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
        order = [e[1] for e in sorted((e for e in sup.events_list() if e[0] == "stopped"),
                                      key=lambda e: float(e[2]))]
        assert order == ["edge", "api", "db"]
