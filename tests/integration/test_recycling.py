"""Recycling: max_lifetime, max_rss and max_requests replace workers gracefully — the successor
is ready before the old worker is asked to stop, one slot at a time, reason "recycled"."""

from __future__ import annotations

import signal

import pytest

from tests.harness import SupervisorProcess
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)

HEADER = """
import os, time
from janus_mp import *
from tests.scenario_lib import record
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=2.0)

def serve(ctx):
    record("boot", ctx.service, ctx.index, ctx.generation, os.getpid(), time.monotonic())
    record("ready", ctx.service, ctx.index, ctx.generation, os.getpid(), time.monotonic())
    ctx.ready()
    ctx.shutdown.wait()
    record("stopping", ctx.service, ctx.index, ctx.generation, os.getpid(), time.monotonic())
"""


def _handover_ok(events: list[list[str]], service: str) -> int:
    """Check every replacement: the successor of (slot, gen) was ready before that worker was
    asked to stop, and at most one slot was replacing at a time. Returns the handovers seen."""
    ready = {(e[2], int(e[3])): float(e[5]) for e in events if e[0] == "ready" and e[1] == service}
    stopping = {(e[2], int(e[3])): float(e[5]) for e in events
                if e[0] == "stopping" and e[1] == service}
    handovers = 0
    for (slot, gen), stopped_at in stopping.items():
        successor = ready.get((slot, gen + 1))
        if successor is None:
            continue  # the final shutdown
        assert successor < stopped_at, f"slot {slot} gen {gen} stopped before its successor was ready"
        handovers += 1
    # One replacement in flight per service: a successor boots only after the previous
    # successor was ready (causal order: ready → promote → next spawn; no tolerance needed).
    boots = {(e[2], int(e[3])): float(e[5]) for e in events if e[0] == "boot" and e[1] == service}
    windows = sorted((boots[key], ready[key]) for key in boots if key[1] >= 2 and key in ready)
    for (_, previous_ready), (boot, _) in zip(windows, windows[1:], strict=False):
        assert boot > previous_ready, "two slots were being replaced at once"
    return handovers


def test_max_lifetime_recycles_every_worker_with_a_ready_successor(tmp_path):
    scenario = HEADER + """
def build(sup):
    sup.spawn_service(serve, SpawnOptions(name="aging", workers=3, wait_for_ready=True, max_lifetime=0.5,
                                          max_lifetime_jitter=0.3))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: len([e for e in sup.exits("aging") if e["reason"] == "recycled"]) >= 6,
                   timeout=30)
        svc = sup.service("aging")
        assert svc["ready"] >= 2 and svc["desired"] == 3
        metrics = sup.metrics()["services"]["aging"]["terminated_total"]
        assert set(metrics) == {"recycled"}
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
        assert _handover_ok(sup.events_list(), "aging") >= 6


def test_max_rss_recycles_the_worker_that_grew(tmp_path):
    scenario = HEADER + """
def leaky(ctx):
    record("boot", ctx.service, ctx.index, ctx.generation, os.getpid(), time.monotonic())
    record("ready", ctx.service, ctx.index, ctx.generation, os.getpid(), time.monotonic())
    ctx.ready()
    hog = bytearray(200 * 2**20) if ctx.index == 1 and ctx.generation == 1 else b""
    ctx.shutdown.wait()
    record("stopping", ctx.service, ctx.index, ctx.generation, os.getpid(), time.monotonic())

def build(sup):
    sup.spawn_service(leaky, SpawnOptions(workers=2, wait_for_ready=True, max_rss="100MiB", rss_check_interval=0.1))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        exit_ = wait_until(lambda: sup.exits("leaky"), timeout=20)[0]
        assert exit_["reason"] == "recycled" and exit_["worker"] == 1
        # max_rss is max_memory's old name; the default measure is uss
        assert "recycling: uss" in sup.log_text() and "> max_memory 100 MiB" in sup.log_text()
        workers = wait_until(lambda: (w := sup.service("leaky")["workers"]) and
                             w[1]["generation"] == 2 and w[1]["ready"] and w)
        assert workers[0]["generation"] == 1  # the small one is left alone
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
        assert _handover_ok(sup.events_list(), "leaky") == 1


def test_max_requests_with_jitter_reaches_the_worker_and_recycles_it(tmp_path):
    scenario = HEADER + """
def counting(ctx):
    record("boot", ctx.service, ctx.index, ctx.generation, os.getpid(), time.monotonic())
    record("ready", ctx.service, ctx.index, ctx.generation, os.getpid(), time.monotonic())
    record("limit", ctx.max_requests)
    ctx.ready()
    served = 0
    while not ctx.shutdown.wait(0.005):
        served += 1
        if served == ctx.max_requests:
            ctx.recycle(f"served {served} requests")
            ctx.recycle("asked twice: ignored")
    record("stopping", ctx.service, ctx.index, ctx.generation, os.getpid(), time.monotonic())

def build(sup):
    sup.spawn_service(counting, SpawnOptions(workers=2, wait_for_ready=True, max_requests=20, max_requests_jitter=10))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: len(sup.exits("counting")) >= 4, timeout=30)
        assert {e["reason"] for e in sup.exits("counting")} == {"recycled"}
        limits = [int(e[1]) for e in sup.events_list() if e[0] == "limit"]
        assert all(20 <= n <= 30 for n in limits)
        assert len(set(limits)) > 1  # jittered, so a pool does not recycle in lockstep
        assert "recycling: served" in sup.log_text()
        assert "asked twice" not in sup.log_text()
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
        assert _handover_ok(sup.events_list(), "counting") >= 4
