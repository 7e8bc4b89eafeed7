"""ModuleAdapter: foreign code shapes stopped through the cancellation tree, errors → exit codes."""

from __future__ import annotations

import signal

import pytest

from janus_mp import ModuleAdapter, ServiceLoadError
from tests.harness import SupervisorProcess
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)

HEADER = """
import asyncio, os, sys, threading, time
from janus_mp import *
from tests.scenario_lib import record
CONFIG = SupervisorConfig(shutdown_timeout=10.0, kill_timeout=2.0)
FAST = BackoffConfig(initial_delay=0.01, max_delay=0.05, max_retries=0)

class BlockingServer:                  # start() serves until stop()
    def __init__(self):
        self.done = threading.Event()
    def start(self):
        record("start", "blocking", os.getpid())
        self.done.wait()
        record("returned", "blocking", threading.current_thread().name)
    def stop(self):
        record("stop", "blocking", threading.current_thread().name)
        self.done.set()

class Background:                      # start() returns; the work runs in a thread
    def start(self):
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.stopping.wait)
        self.thread.start()
        record("start", "background", os.getpid())
    def stop(self):
        record("stop", "background", threading.current_thread().name)
        self.stopping.set()
        self.thread.join()

class Runner:                          # run() blocks; close() ends it
    def __init__(self):
        self.closed = threading.Event()
    def run(self):
        record("start", "runner", os.getpid())
        self.closed.wait()
        return 0
    def close(self):
        record("stop", "runner", threading.current_thread().name)
        self.closed.set()

def blocking_main():                   # knows nothing: sleeps in a system call
    record("start", "main", os.getpid())
    try:
        time.sleep(300)
    except KeyboardInterrupt:
        record("stop", "main", "KeyboardInterrupt")
        raise

async def async_main():
    record("start", "async", os.getpid())
    try:
        await asyncio.sleep(300)
    except asyncio.CancelledError:
        record("stop", "async", "CancelledError")
        raise
"""


def _events(sup: SupervisorProcess, kind: str) -> list[list[str]]:
    return [e for e in sup.events_list() if e[0] == kind]


def test_each_shape_stops_cooperatively_through_the_token(tmp_path):
    scenario = HEADER + """
def build(sup):
    sup.spawn_service(ModuleAdapter(BlockingServer(), name="blocking"))
    sup.spawn_service(ModuleAdapter(Background, name="background"), SpawnOptions(workers=2))
    sup.spawn_service(ModuleAdapter(Runner(), name="runner"))
    sup.spawn_service(ModuleAdapter(blocking_main, name="main"))
    sup.spawn_service(ModuleAdapter(async_main, name="async"))
"""
    names = {"blocking", "background", "runner", "main", "async"}
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: len(_events(sup, "start")) == 6)
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
        stops = {e[1]: e[2] for e in _events(sup, "stop")}
        assert set(stops) == names
        assert stops["blocking"] == "janus-mp-bridge"  # start() was blocking: stopped from aside
        assert stops["background"] == "MainThread"  # start() returned: the worker stopped it
        assert stops["main"] == "KeyboardInterrupt"
        assert stops["async"] == "CancelledError"
        assert ["returned", "blocking", "MainThread"] in sup.events_list()
        log = sup.log_text()
        assert log.count("exited: stopped") == 6
        assert "sending SIGTERM" not in log and "crashed" not in log


def test_exceptions_map_to_exit_codes(tmp_path):
    scenario = HEADER + """
class BadConfig(Exception):
    pass

def misconfigured():
    record("start", "misconfigured", os.getpid())
    raise BadConfig("no database url")

def flaky():
    record("start", "flaky", os.getpid())
    raise RuntimeError("boom")

def build(sup):
    sup.spawn_service(ModuleAdapter(misconfigured, exit_codes={BadConfig: 78}))
    sup.spawn_service(ModuleAdapter(flaky), SpawnOptions(backoff=BackoffConfig(
        initial_delay=0.01, max_delay=0.01, max_retries=2, half_open_after=None)))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        assert sup.wait_exit() == 1
        starts = [e[1] for e in _events(sup, "start")]
        assert starts.count("misconfigured") == 1  # 78: no restart
        assert starts.count("flaky") == 2  # exit 1: restarted until the breaker opened (2 failures)
        log = sup.log_text()
        assert "misconfigured[0]: BadConfig: no database url (exit code 78)" in log
        assert "RuntimeError: boom" in log
        assert "circuit breaker" in log


class _NeedsArgs:
    def __init__(self, url):
        self.url = url

    def start(self):
        pass

    def stop(self):
        pass


@pytest.mark.parametrize("target, message", [
    (42, "42 has no start()/stop(), run()/close() or main(), and is not callable"),
    (lambda url: None, "needs arguments (url)"),
    (_NeedsArgs, "class _NeedsArgs needs constructor arguments"),
    ("json", "module 'json' has no main()"),
    ("no_such_module_xyz", "no module named 'no_such_module_xyz'"),
    ("json:nope", "module 'json' has no attribute 'nope'"),
])
def test_unusable_targets_are_refused_in_one_line(target, message):
    with pytest.raises(ServiceLoadError) as info:
        ModuleAdapter(target)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
