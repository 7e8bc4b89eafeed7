"""Stack dumps before a SIGKILL, on a fake clock: asked for, waited for (a timer, not a sleep),
logged under the worker's name, kept with its exit."""

from __future__ import annotations

import pytest

from janus_mp.core import events as ev
from janus_mp.core.actions import ReadStackDump, RequestStackDump, StopSignal
from janus_mp.core.timers import TimerKind
from tests.unit.policy_helpers import pool, worker_timer

DUMP = 'Thread 0x01 (most recent call first):\n  File "svc.py", line 9 in stuck_forever'


def _kills(sim, worker_id):
    return [s for w, s in sim.signals if w == worker_id and s is StopSignal.KILL]


def test_the_watchdog_asks_for_a_dump_waits_then_kills_and_keeps_it():
    sim = pool(1, watchdog_timeout=5.0, stack_dump_timeout=0.5, keeper=True)
    worker = sim.current("a", 0)
    sim.dumps[worker.id] = DUMP
    sim.advance(5.0)
    assert RequestStackDump(worker.id) in sim.log
    assert _kills(sim, worker.id) == []  # not yet: the dump has its half second
    assert worker_timer(sim, TimerKind.DUMP, worker.id) == 5.5
    sim.advance(0.5)
    assert ReadStackDump(worker.id) in sim.log
    assert _kills(sim, worker.id) == [StopSignal.KILL]
    assert any("a[0]" in line and "stuck_forever" in line for line in sim.logs())
    sim.exit(worker, -9)
    record = sim.state.recent_exits[-1]
    assert record.reason == "watchdog timeout" and "stuck_forever" in (record.stack_dump or "")
    assert record.to_dict(0.0)["stack_dump"] == DUMP


def test_a_start_timeout_asks_for_a_dump_too():
    sim = pool(1, ready=False, start_timeout=3.0, stack_dump_timeout=1.0, keeper=True)
    worker = sim.current("a", 0)
    sim.advance(3.0)
    assert RequestStackDump(worker.id) in sim.log
    sim.advance(1.0)
    assert _kills(sim, worker.id) == [StopSignal.KILL]
    assert any("wrote no stack dump" in line for line in sim.logs())  # it wrote nothing


def test_the_stop_deadline_asks_for_a_dump_before_its_sigkill():
    sim = pool(1, stop_timeout=1.0, stack_dump_timeout=0.25, keeper=True)
    worker = sim.current("a", 0)
    sim.dumps[worker.id] = DUMP
    sim.feed(ev.StopService("a"))
    sim.advance(1.0)
    assert (worker.id, StopSignal.TERM) in sim.signals
    sim.advance(sim.state.config.kill_timeout)
    assert RequestStackDump(worker.id) in sim.log and _kills(sim, worker.id) == []
    sim.advance(0.25)
    assert _kills(sim, worker.id) == [StopSignal.KILL]


def test_without_a_dump_timeout_the_kill_is_immediate():
    sim = pool(1, watchdog_timeout=5.0, stack_dump_timeout=None, keeper=True)
    worker = sim.current("a", 0)
    sim.advance(5.0)
    assert _kills(sim, worker.id) == [StopSignal.KILL]
    assert not any(isinstance(a, RequestStackDump) for a in sim.log)


def test_a_fast_shutdown_during_the_wait_kills_at_once():
    sim = pool(1, watchdog_timeout=5.0, stack_dump_timeout=10.0)
    worker = sim.current("a", 0)
    sim.advance(5.0)
    sim.feed(ev.Shutdown(fast=True))
    assert _kills(sim, worker.id) == [StopSignal.KILL]


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan")])
def test_a_bad_dump_timeout_is_refused(timeout):
    from janus_mp.core.config import SpawnOptions
    from janus_mp.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        SpawnOptions(stack_dump_timeout=timeout)
    assert info.value.key == "stack_dump_timeout"
