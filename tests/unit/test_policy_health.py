"""Health probes on a fake clock: when probes run, how failures in a row are counted, and what a
worker that keeps failing becomes (replaced, reason unhealthy, counted like a failure)."""

from __future__ import annotations

import pytest

from janus_mp.core import events as ev
from janus_mp.core.actions import CancelWorker, SignalWorker, StopSignal
from janus_mp.core.config import SpawnOptions
from janus_mp.core.health_check import HealthCheck, ProbeKind
from janus_mp.core.notices import NoticeKind
from janus_mp.core.timers import TimerKind
from janus_mp.errors import ConfigError
from tests.unit.policy_helpers import (
    check_invariants,
    pool,
    ready_count,
    restart_at,
    service_phase,
    terminated,
    worker_timer,
)

CHECK = HealthCheck(http="/healthz", interval=5.0, timeout=2.0, failures=3)


def _answer(sim, worker_id: int, healthy: bool) -> None:
    probe = sim.probes[-1]
    assert probe.worker == worker_id
    sim.feed(ev.ProbeFinished(worker_id, healthy, "200 OK" if healthy else "HTTP 500"))


def test_the_first_probe_runs_one_interval_after_ready_and_the_next_after_its_answer():
    sim = pool(1, health=CHECK)
    worker = sim.current("a", 0)
    assert worker_timer(sim, TimerKind.PROBE, worker.id) == 5.0
    sim.advance(4.9)
    assert sim.probes == []
    sim.advance(0.1)
    assert [(p.worker, p.pid, p.check) for p in sim.probes] == [(worker.id, worker.pid, CHECK)]
    sim.advance(30.0)  # no answer yet: no second probe piles up
    assert len(sim.probes) == 1
    _answer(sim, worker.id, True)
    assert worker_timer(sim, TimerKind.PROBE, worker.id) == sim.now + 5.0


def test_no_probe_without_a_health_check_and_none_before_ready():
    sim = pool(1, ready=False, health=CHECK)
    sim.advance(60.0)
    assert sim.probes == []
    plain = pool(1)
    plain.advance(60.0)
    assert plain.probes == []


def test_failures_in_a_row_replace_the_worker_with_reason_unhealthy():
    sim = pool(1, health=CHECK, keeper=True)
    worker = sim.current("a", 0)
    for _ in range(2):
        sim.advance(5.0)
        _answer(sim, worker.id, False)
        check_invariants(sim)
    assert worker.stop_cause is None and worker.probe_failures == 2
    sim.advance(5.0)
    _answer(sim, worker.id, False)
    assert worker.id in sim.cancelled  # asked to stop cooperatively first
    assert worker_timer(sim, TimerKind.PROBE, worker.id) is None
    sim.exit(worker, 0)
    assert terminated(sim) == {"unhealthy": 1}
    assert restart_at(sim) is not None  # backoff, like any failure
    assert sim.state.recent_exits[-1].reason == "unhealthy"
    kinds = [n.kind for n in sim.notices if n.service == "a"]
    assert NoticeKind.UNHEALTHY in kinds
    exited = [n for n in sim.notices if n.kind is NoticeKind.EXITED][-1]
    assert (exited.reason, exited.exit_code, exited.pid) == ("unhealthy", 0, worker.pid)
    check_invariants(sim)


def test_a_passing_probe_resets_the_count():
    sim = pool(1, health=CHECK)
    worker = sim.current("a", 0)
    for healthy in (False, False, True, False, False):
        sim.advance(5.0)
        _answer(sim, worker.id, healthy)
    assert worker.stop_cause is None and worker.probe_failures == 2
    assert not any(isinstance(a, CancelWorker) for a in sim.log)


def test_a_failing_worker_is_not_counted_ready_meanwhile():
    sim = pool(2, health=CHECK)
    worker = sim.current("a", 0)
    assert ready_count(sim) == 2
    sim.advance(5.0)
    sim.feed(ev.ProbeFinished(worker.id, False, "HTTP 500"))
    assert ready_count(sim) == 1
    assert service_phase(sim).value == "running"  # the service stays up meanwhile
    sim.feed(ev.ProbeFinished(worker.id, True, "200 OK"))
    assert ready_count(sim) == 2


def test_an_unhealthy_worker_that_ignores_the_stop_is_sigtermed_then_killed():
    sim = pool(1, health=HealthCheck(tcp=9000, interval=1.0, failures=1), stop_timeout=2.0)
    worker = sim.current("a", 0)
    sim.advance(1.0)
    _answer(sim, worker.id, False)
    sim.advance(2.0)
    assert (worker.id, StopSignal.TERM) in sim.signals
    sim.advance(sim.state.config.kill_timeout)
    assert (worker.id, StopSignal.KILL) in sim.signals


def test_repeated_unhealthy_replacements_trip_the_breaker():
    from tests.unit.policy_helpers import FAST

    sim = pool(1, health=HealthCheck(command=("true",), interval=1.0, failures=1),
               backoff=FAST, keeper=True)
    for _ in range(3):
        worker = sim.current("a", 0)
        sim.ready(worker)
        sim.advance(1.0)
        _answer(sim, worker.id, False)
        sim.exit(worker, -15)
        sim.advance(1.0)
    assert terminated(sim)["unhealthy"] == 3
    assert any(n.kind is NoticeKind.BREAKER_OPENED for n in sim.notices)


def test_late_probe_answers_about_gone_workers_change_nothing():
    sim = pool(1, health=CHECK)
    worker = sim.current("a", 0)
    sim.exit(worker, 1)
    sim.feed(ev.ProbeFinished(worker.id, False, "late"))
    assert not any(isinstance(a, SignalWorker) for a in sim.log)


@pytest.mark.parametrize("table, key", [
    ({}, "health"),
    ({"http": "/a", "tcp": 1}, "health"),
    ({"http": "healthz"}, "health.http"),
    ({"tcp": 70000}, "health.tcp"),
    ({"tcp": 80, "port": 81}, "health.port"),
    ({"command": []}, "health.command"),
    ({"http": "/", "interval": 0}, "health.interval"),
    ({"http": "/", "failures": 0}, "health.failures"),
    ({"http": "/", "every": 1}, "health.every"),
])
def test_bad_health_tables_name_their_key(table, key):
    with pytest.raises(ConfigError) as info:
        SpawnOptions(health=table)  # type: ignore[arg-type]
    assert info.value.key == key


def test_a_table_becomes_a_health_check():
    options = SpawnOptions(health={"command": ["check", "-q"], "failures": 2})  # type: ignore[arg-type]
    assert options.health == HealthCheck(command=("check", "-q"), failures=2)
    assert options.health.kind is ProbeKind.COMMAND
