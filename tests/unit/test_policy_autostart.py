"""autostart = false: a service registered but not started with the others; a StartService
starts it, and it is then supervised like any other."""

from __future__ import annotations

from janus_mp.core import events as ev
from janus_mp.core.config import SpawnOptions
from janus_mp.core.lifecycle import ServicePhase
from janus_mp.core.snapshots import supervisor_snapshot
from tests.unit.policy_sim import Sim


def test_not_started_at_begin_then_started_on_request():
    sim = Sim()
    sim.register("web", SpawnOptions(name="web", workers=2))
    sim.register("lazy", SpawnOptions(name="lazy", workers=3, autostart=False))
    sim.begin()
    assert sorted(w.service for w in sim.workers()) == ["web", "web"]
    assert "lazy" not in sim.state.services
    row = supervisor_snapshot(sim.state, sim.now, 1, {}).service("lazy")
    assert (row.started, row.service.phase, row.workers) == (False, ServicePhase.TERMINATED, ())
    sim.feed(ev.StartService("lazy"))
    assert sorted(w.service for w in sim.workers()) == ["lazy"] * 3 + ["web"] * 2
    sim.ready_all()
    assert sim.state.services["lazy"].lifecycle.phase is ServicePhase.RUNNING
    assert supervisor_snapshot(sim.state, sim.now, 1, {}).service("lazy").started


def test_registered_while_running_waits_too():
    sim = Sim()
    sim.register("web", SpawnOptions(name="web"))
    sim.begin()
    sim.register("lazy", SpawnOptions(name="lazy", autostart=False))
    assert [w.service for w in sim.workers()] == ["web"]


def test_a_supervisor_of_only_lazy_services_keeps_running():
    sim = Sim()
    sim.register("lazy", SpawnOptions(name="lazy", autostart=False))
    sim.begin()
    assert not sim.workers() and not sim.finished
    assert sim.state.phase.value == "running"
