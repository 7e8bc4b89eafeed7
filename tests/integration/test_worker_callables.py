"""post_fork and worker_exit run inside each worker: first thing and last thing, with the
worker's exit code; under spawn they travel pickled, and one that cannot is refused at once."""

from __future__ import annotations

import signal

import pytest

from tests.harness import SupervisorProcess
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)

SCENARIO = """
import os, sys
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from tests.scenario_lib import record

def after_fork(service, index):
    record("post_fork", service, index, os.getpid())

def on_exit(service, index, code):
    record("worker_exit", service, index, os.getpid(), code)

def job(ctx):
    record("run", ctx.service, ctx.index, os.getpid())
    if ctx.generation == 1:
        return 5
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(job, SpawnOptions(name="job", post_fork=after_fork, worker_exit=on_exit))

CONFIG = SupervisorConfig(shutdown_timeout=2)
"""


def test_post_fork_and_worker_exit_run_in_the_worker(tmp_path):
    with SupervisorProcess(tmp_path, SCENARIO) as sup:
        wait_until(lambda: len([e for e in sup.events_list() if e[0] == "run"]) == 2,
                   timeout=30, message="the second worker running")
        events = sup.events_list()
        first_pid = events[0][3]
        assert [e[0] for e in events[:3]] == ["post_fork", "run", "worker_exit"]
        assert all(e[3] == first_pid for e in events[:3])
        assert events[2][4] == "5"  # the worker's exit code
        assert events[3][0] == "post_fork" and events[3][3] != first_pid
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
        assert sup.events_list()[-1][:2] == ["worker_exit", "job"]


def test_an_unpicklable_post_fork_is_refused_under_spawn():
    from janus_mp.core.config import SpawnOptions
    from janus_mp.errors import ConfigError
    from janus_mp.runtime.specs import make_spec

    numbers = (n for n in range(3))  # a generator: no pickler can send it
    with pytest.raises(ConfigError) as info:
        make_spec(lambda ctx: None, SpawnOptions(name="x", post_fork=lambda s, i: next(numbers)),
                  "spawn")
    assert info.value.key == "post_fork" and "spawn worker" in info.value.rule
