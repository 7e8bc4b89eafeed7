"""Faults an adversarial probe found (issue 12): a dead guard, a worker that leaves its process
group, concurrent relative scaling, a supervisor paused mid-flight. Real processes throughout."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from janus_mp.app.control import call
from tests.harness import SupervisorProcess
from tests.integration.test_cli import Cli
from tests.support import alive, children_of, wait_until

pytestmark = pytest.mark.timeout(90)

HEADER = """
import os, re, sys, time, signal
from janus_mp import *
from tests.scenario_lib import record, started
"""


def guard_pid(sup: SupervisorProcess) -> int | None:
    for pid in children_of(sup.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"janus-mp: guard of supervisor"):
                    return pid
        except OSError:
            continue
    return None


def test_a_dead_guard_is_replaced_and_shutdown_still_ends(tmp_path):
    scenario = HEADER + """
CONFIG = SupervisorConfig(shutdown_timeout=2.0, kill_timeout=1.0)
def leaves_a_child(ctx):
    started(ctx)
    pid = os.fork()
    if pid == 0:          # a grandchild in its own session: an orphan once its parent dies
        os.setsid()
        time.sleep(300)
        os._exit(0)
    record("child", pid)
    ctx.ready()
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(leaves_a_child, SpawnOptions(workers=2))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.service("leaves_a_child")["ready"] == 2)
        first = wait_until(lambda: guard_pid(sup), message="the guard process")
        os.kill(first, signal.SIGKILL)
        second = wait_until(lambda: (p := guard_pid(sup)) not in (None, first) and p,
                            message="a new guard")
        line = f"guard process (pid {first}) died: started a new one (pid {second})"
        wait_until(lambda: line in sup.log_text(), message="the log line")
        # An orphan to reap at shutdown, beside the zombie the dead guard was.
        worker = sup.service("leaves_a_child")["workers"][0]["pids"][0]
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: len(sup.exits("leaves_a_child")) == 1)
        started_at = time.monotonic()
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit(timeout=15) == 0
        assert time.monotonic() - started_at < 8.0


def test_a_replaced_guard_still_kills_a_wedged_worker_when_the_supervisor_dies(tmp_path):
    scenario = HEADER + """
def wedged(ctx):
    started(ctx)
    ctx.ready()
    time.sleep(0.2)
    re.match(r"(a+)+$", "a" * 64 + "b")   # holds the GIL: its own clean-up thread cannot run

def build(sup):
    sup.spawn_service(wedged, SpawnOptions())
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.service("wedged")["ready"] == 1)
        worker = sup.service("wedged")["pids"][0]
        first = wait_until(lambda: guard_pid(sup), message="the guard process")
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: guard_pid(sup) not in (None, first), message="a new guard")
        sup.signal(signal.SIGKILL)
        wait_until(lambda: not alive(worker), timeout=5,
                   message="the wedged worker to be killed by the new guard")


def test_a_worker_that_leaves_its_group_is_still_stopped(tmp_path):
    # Was: the stop signals went to the worker's old group only (a child of it stayed there),
    # so the worker itself never got SIGTERM or SIGKILL and outlived `stop` and the shutdown.
    scenario = HEADER + """
CONFIG = SupervisorConfig(shutdown_timeout=0.5, kill_timeout=0.5)
def escapes(ctx):
    started(ctx)
    if os.fork() == 0:
        time.sleep(300)
        os._exit(0)
    os.setpgid(0, os.getpgid(os.getppid()))   # into the supervisor's group
    record("moved", os.getpid(), os.getpgid(0))
    ctx.ready()
    while True:                               # ignores the cooperative stop
        time.sleep(0.05)

def build(sup):
    sup.spawn_service(escapes, SpawnOptions())
    sup.spawn_service(lambda ctx: ctx.shutdown.wait(), SpawnOptions(name="keeper"))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: any(e[0] == "moved" for e in sup.events_list()))
        worker = sup.service("escapes")["pids"][0]
        assert os.getpgid(worker) == os.getpgid(sup.pid)
        sup.request("stop", service="escapes")
        # It ignores the cooperative stop: only the SIGTERM/SIGKILL sent to it (and not only
        # to its old group) ends it. No stopwatch: a loaded machine may take its time.
        wait_until(lambda: sup.service("escapes")["phase"] == "terminated", timeout=30)
        assert not alive(worker)
        assert sup.service("keeper")["phase"] == "running"
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def test_concurrent_relative_scaling_counts_every_request(tmp_path):
    cli = Cli(tmp_path)
    try:
        cli.start("svcmod:helper", "-w", "3")
        results: list[object] = []

        def grow() -> None:
            try:
                results.append(call(cli.socket, "scale", service="helper", workers="+1"))
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                results.append(exc)

        threads = [threading.Thread(target=grow) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert all(isinstance(r, str) for r in results), results
        assert len(results) == 50
        assert cli.service("helper")["desired"] == 53
        wait_until(lambda: cli.service("helper")["ready"] == 53, timeout=30)
    finally:
        cli.close()


def test_a_message_that_arrived_during_a_pause_beats_the_timer_it_cancels(tmp_path):
    # A rolling-restart successor becomes ready while the supervisor is stopped (SIGSTOP) past
    # the successor's start timeout; after SIGCONT it must be promoted, not killed.
    scenario = HEADER + """
CONFIG = SupervisorConfig(shutdown_timeout=2.0, kill_timeout=1.0)
def quick(ctx):
    started(ctx)
    ctx.ready()
    record("ready", ctx.index, ctx.generation, os.getpid())
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(quick, SpawnOptions(start_timeout=1.0))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.service("quick")["ready"] == 1)
        sup.request("restart", service="quick")  # returns once the successor is forked
        sup.signal(signal.SIGSTOP)
        try:
            wait_until(lambda: any(e[0] == "ready" and e[2] == "2" for e in sup.events_list()),
                       message="the successor to be ready")
            paused_at = time.monotonic()
            wait_until(lambda: time.monotonic() > paused_at + 1.5, timeout=5)  # past 1.0 s
        finally:
            sup.signal(signal.SIGCONT)
        successor = next(int(e[3]) for e in sup.events_list() if e[0] == "ready" and e[2] == "2")
        wait_until(lambda: sup.service("quick")["pids"] == [successor])
        reasons = [e["reason"] for e in sup.exits("quick")]
        assert reasons == ["replaced"], reasons
        assert alive(successor)
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def test_after_a_pause_sigkill_still_waits_kill_timeout_after_sigterm(tmp_path):
    scenario = HEADER + """
CONFIG = SupervisorConfig(shutdown_timeout=0.2, kill_timeout=1.5)
def stubborn(ctx):
    started(ctx)
    signal.signal(signal.SIGTERM, lambda *_: record("term", time.monotonic()))
    ctx.ready()
    while True:
        time.sleep(0.01)

def build(sup):
    sup.spawn_service(stubborn, SpawnOptions())
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.service("stubborn")["ready"] == 1)
        worker = sup.service("stubborn")["pids"][0]
        sup.signal(signal.SIGTERM)
        begun = time.monotonic()
        wait_until(lambda: time.monotonic() > begun + 0.05)
        sup.signal(signal.SIGSTOP)  # 50 ms into the shutdown, for longer than both deadlines
        try:
            wait_until(lambda: time.monotonic() > begun + 3.0, timeout=5)
        finally:
            sup.signal(signal.SIGCONT)
        term_at = float(wait_until(lambda: next((e[1] for e in sup.events_list()
                                                 if e[0] == "term"), None), timeout=5))
        wait_until(lambda: not alive(worker), timeout=10)
        died_at = time.monotonic()
        assert died_at - term_at >= 1.3, f"SIGKILL {died_at - term_at:.3f}s after SIGTERM"
        assert sup.wait_exit() == 0


