"""depends_on on a fake clock: a service starts (and restarts) only while what it depends on
has every worker ready, waits in ``starting`` with its reason meanwhile, and stops first."""

from __future__ import annotations

import pytest

from janus_mp.core import events as ev
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from janus_mp.core.lifecycle import ServicePhase
from janus_mp.errors import ConfigError
from tests.unit.policy_helpers import NO_BREAKER, check_invariants, restart_at, slot_phase
from tests.unit.policy_sim import Sim

CONFIG = SupervisorConfig(shutdown_timeout=10.0, kill_timeout=2.0)


def _sim(**services: SpawnOptions) -> Sim:
    sim = Sim(CONFIG)
    for name, options in services.items():
        sim.register(name, options)
    sim.begin()
    return sim


def _options(name: str, *needs: str, workers: int = 1, **extra: object) -> SpawnOptions:
    return SpawnOptions(name=name, workers=workers, depends_on=needs, backoff=NO_BREAKER,
                        **extra)  # type: ignore[arg-type]


def _services(sim: Sim) -> set[str]:
    return {w.service for w in sim.workers()}


def test_a_dependent_waits_in_starting_until_every_worker_of_its_dependency_is_ready():
    sim = _sim(api=_options("api", "db", workers=2), db=_options("db", workers=2))
    assert _services(sim) == {"db"}
    api = sim.snapshot().service("api")
    assert api.waiting == "waiting for db (starting)"
    assert [w.phase for w in api.workers] == [ServicePhase.STARTING] * 2
    assert api.service.phase is ServicePhase.STARTING
    sim.ready(sim.current("db", 0))
    assert _services(sim) == {"db"}
    sim.ready(sim.current("db", 1))
    assert _services(sim) == {"db", "api"}
    assert len(sim.workers("api")) == 2
    assert sim.snapshot().service("api").waiting is None
    check_invariants(sim)


def test_every_dependency_must_be_up_and_a_chain_starts_link_by_link():
    sim = _sim(web=_options("web", "api", "cache"), api=_options("api", "db"),
               cache=_options("cache"), db=_options("db"))
    assert _services(sim) == {"cache", "db"}
    sim.ready_all("db")
    assert _services(sim) == {"cache", "db", "api"}
    sim.ready_all("api")
    assert sim.snapshot().service("web").waiting == "waiting for cache (starting)"
    sim.ready_all("cache")
    assert "web" in _services(sim)


def test_a_restart_waits_while_its_dependency_is_down_and_goes_once_it_is_back():
    sim = _sim(db=_options("db"), api=_options("api", "db"))
    sim.ready_all("db")
    sim.ready_all("api")
    sim.exit(sim.current("db", 0), 1)
    sim.exit(sim.current("api", 0), 1)
    assert restart_at(sim, 0, "api") is not None
    sim.advance(1.5)  # both restart deadlines pass: db respawns, api is held
    assert _services(sim) == {"db"}
    assert slot_phase(sim, 0, "api") is ServicePhase.STARTING
    assert sim.snapshot().service("api").waiting == "waiting for db (starting)"
    sim.ready_all("db")
    assert _services(sim) == {"db", "api"}
    assert sim.state.services["api"].slots[0].restarts == 1
    check_invariants(sim)


def test_a_running_dependent_is_left_alone_when_its_dependency_restarts():
    sim = _sim(db=_options("db"), api=_options("api", "db"))
    sim.ready_all("db")
    sim.ready_all("api")
    api = sim.current("api", 0)
    sim.exit(sim.current("db", 0), 1)
    assert sim.cancelled == [] and sim.current("api", 0) is api


def test_a_one_shot_dependency_that_completed_counts_as_up():
    sim = _sim(migrate=_options("migrate", restart="never"), api=_options("api", "migrate"))
    sim.ready_all("migrate")
    assert _services(sim) == {"migrate", "api"}
    sim.exit(sim.current("migrate", 0), 0)
    sim.exit(sim.current("api", 0), 1)
    sim.advance(1.5)
    assert _services(sim) == {"api"}


def test_shutdown_stops_a_dependent_before_its_dependency():
    sim = _sim(db=_options("db"), api=_options("api", "db"))
    sim.ready_all("db")
    sim.ready_all("api")
    db, api = sim.current("db", 0), sim.current("api", 0)
    sim.feed(ev.Shutdown())
    assert sim.cancelled == [api.id]
    sim.exit(api, 0)
    assert sim.cancelled == [api.id, db.id]
    sim.exit(db, 0)
    assert sim.finished


def test_a_dependency_that_is_not_registered_is_named_as_such():
    sim = _sim(api=_options("api", "db"))
    assert sim.snapshot().service("api").waiting == "waiting for db (not registered)"
    sim.register("db", _options("db"))
    sim.ready_all("db")
    assert _services(sim) == {"db", "api"}


def test_a_dependency_cycle_is_refused_at_registration_with_the_cycle_spelled_out():
    sim = Sim(CONFIG)
    sim.register("a", _options("a", "b"))
    with pytest.raises(ConfigError, match=r"depends_on: cycle b -> a -> b"):
        sim.register("b", _options("b", "a"))
    with pytest.raises(ConfigError, match="cannot depend on itself"):
        _options("c", "c")


def test_scaling_a_waiting_service_keeps_its_new_slots_waiting():
    sim = _sim(api=_options("api", "db", workers=1), db=_options("db"))
    sim.feed(ev.Scale("api", 3))
    check_invariants(sim)
    assert _services(sim) == {"db"}  # no api worker started, old slot or new
    api = sim.snapshot().service("api")
    assert api.waiting == "waiting for db (starting)" and api.service.desired == 3
    assert [w.phase for w in api.workers] == [ServicePhase.STARTING] * 3
    sim.ready_all("db")
    sim.advance(1.0)
    assert len([w for w in sim.workers() if w.service == "api"]) == 3
    sim.ready_all("api")
    assert sim.snapshot().service("api").service.ready == 3
