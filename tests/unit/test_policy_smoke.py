from __future__ import annotations

from janus_mp.core import events as ev
from janus_mp.core.backoff import BackoffConfig
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from janus_mp.core.lifecycle import ServicePhase
from tests.unit.policy_sim import Sim

FAST = BackoffConfig(initial_delay=0.1, max_delay=1.0, max_retries=3, window=60.0,
                     half_open_after=None)


def test_start_crash_restart_and_shutdown():
    sim = Sim(SupervisorConfig(shutdown_timeout=1.0, kill_timeout=1.0))
    sim.register("a", SpawnOptions(name="a", workers=2, backoff=FAST))
    sim.begin()
    assert len(sim.spawned) == 2
    sim.ready_all()
    assert sim.state.services["a"].lifecycle.phase is ServicePhase.RUNNING
    sim.exit(sim.current("a", 0), 1)
    assert sim.state.services["a"].slots[0].lifecycle.phase is ServicePhase.BACKING_OFF
    sim.advance(1.0)
    assert len(sim.spawned) == 3
    sim.ready_all()
    sim.feed(ev.Shutdown())
    assert sorted(sim.cancelled) == sorted(w.id for w in sim.workers())
    sim.exit_cancelled()
    assert sim.finished
    snap = sim.state.metrics.snapshot()
    assert snap.spawned_total == 3 and snap.restarts_total == 1 and snap.terminated_total == 3


def test_breaker_trip_leaves_no_phantom_stopping_slot():
    sim = Sim()
    sim.register("a", SpawnOptions(name="a", workers=2, backoff=FAST))
    sim.register("keeper", SpawnOptions(name="keeper"))
    sim.begin()
    sim.ready_all()
    for _ in range(3):
        sim.exit(sim.current("a", 0), 1)
        sim.advance(1.0)
    svc = sim.snapshot().service("a")
    assert svc.service.phase is ServicePhase.STOPPING or svc.service.phase is ServicePhase.TERMINATED
    sim.exit_cancelled()
    sim.exit_signalled()
    svc = sim.snapshot().service("a")
    assert svc.service.phase is ServicePhase.TERMINATED
    assert [w.phase for w in svc.workers] == [ServicePhase.TERMINATED] * 2
    assert all(w.breaker == "open" for w in svc.workers)
    phases = sim.state.metrics.snapshot().services["a"].workers_by_phase
    assert phases.get("stopping", 0) == 0 and phases["terminated"] == 2
