"""OTP 24's significant members and auto_shutdown, and a group's own restart type, on a fake
clock: groups and the supervisor that end by themselves, and what their parents do then."""

from __future__ import annotations

import pytest

from janus_mp.core import events as ev
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from janus_mp.core.lifecycle import ServicePhase
from janus_mp.core.pool import SupervisorPhase
from janus_mp.core.tree import GroupStrategy, ServiceGroup
from janus_mp.errors import ConfigError
from tests.unit.policy_helpers import NO_BREAKER, check_invariants, service_phase
from tests.unit.policy_sim import Sim

CONFIG = SupervisorConfig(shutdown_timeout=10.0, kill_timeout=2.0)
JOB = {"restart": "never", "significant": True}


def _sim(services: dict[str, dict[str, object]], *groups: ServiceGroup,
         config: SupervisorConfig = CONFIG) -> Sim:
    sim = Sim(config)
    for name, options in services.items():
        sim.register(name, SpawnOptions(name=name, backoff=NO_BREAKER, **options))  # type: ignore[arg-type]
    for group in groups:
        sim.feed(ev.RegisterGroup(group))
    sim.begin()
    _ready(sim)
    return sim


def _ready(sim: Sim) -> None:
    while any(not w.ready for w in sim.workers()):
        sim.ready_all()
        check_invariants(sim)


def _drain(sim: Sim) -> None:
    while any(w in sim.state.workers for w in sim.cancelled):
        sim.exit_cancelled()
        check_invariants(sim)


def _end(sim: Sim, name: str, code: int = 0) -> None:
    for worker in sim.workers(name):
        sim.exit(worker, code)
    check_invariants(sim)


def _phase(sim: Sim, group: str) -> str:
    return sim.snapshot().group(group).phase


# -- groups --------------------------------------------------------------------------------
def test_any_significant_ends_the_group_when_its_first_significant_member_ends():
    sim = _sim({"job": JOB, "web": {}, "keeper": {}},
               ServiceGroup("g", ("job", "web"), auto_shutdown="any_significant"))  # type: ignore[arg-type]
    _end(sim, "job")
    assert _phase(sim, "g") == "stopping"
    _drain(sim)
    assert _phase(sim, "g") == "completed"
    assert service_phase(sim, "web") is ServicePhase.TERMINATED
    assert sim.workers("web") == [] and sim.state.phase is SupervisorPhase.RUNNING
    sim.advance(3600)
    assert sim.workers("web") == []  # nothing restarts a completed group's members
    assert sim.logs().count("group g: every member is up") == 1  # at the start only
    assert "group g: job ended (any_significant): shutting the group down" in sim.logs()
    assert "group g: every member stopped: completed" in sim.logs()


def test_all_significant_waits_for_every_significant_member():
    sim = _sim({"a": JOB, "b": {"restart": "on_failure", "significant": True}, "web": {},
                "keeper": {}},
               ServiceGroup("g", ("a", "b", "web"), auto_shutdown="all_significant"))  # type: ignore[arg-type]
    _end(sim, "a")
    _end(sim, "b", code=1)  # on_failure: a failure restarts it, it has not ended
    sim.advance(5.0)
    _ready(sim)
    assert _phase(sim, "g") == "running" and sim.workers("web")
    _end(sim, "b")  # completed: the last significant member ended
    _drain(sim)
    assert _phase(sim, "g") == "completed"


def test_a_significant_member_stopped_by_hand_does_not_end_its_group():
    sim = _sim({"a": JOB, "b": JOB, "web": {}, "keeper": {}},
               ServiceGroup("g", ("a", "b", "web"), auto_shutdown="all_significant"))  # type: ignore[arg-type]
    sim.feed(ev.StopService("a"))
    _drain(sim)
    assert _phase(sim, "g") == "running" and sim.workers("web")
    _end(sim, "b")  # b was the last one running (OTP counts a terminated child as gone)
    _drain(sim)
    assert _phase(sim, "g") == "completed"


def test_a_transient_group_that_completed_is_not_restarted_by_its_parent():
    child = ServiceGroup("child", ("job", "worker"), restart="on_failure",  # type: ignore[arg-type]
                         auto_shutdown="any_significant")  # type: ignore[arg-type]
    sim = _sim({"job": JOB, "worker": {}, "web": {}}, child,
               ServiceGroup("top", ("child", "web"), GroupStrategy.ONE_FOR_ALL))
    web = sim.current("web", 0).pid
    _end(sim, "job")
    _drain(sim)
    assert _phase(sim, "child") == "completed" and _phase(sim, "top") == "running"
    assert sim.current("web", 0).pid == web  # no restart of the parent's members
    assert sim.snapshot().group("top").restarts == 0


def test_a_permanent_group_that_completed_is_restarted_by_its_parent():
    child = ServiceGroup("child", ("job", "worker"), auto_shutdown="any_significant")  # type: ignore[arg-type]
    sim = _sim({"job": {"restart": "on_failure", "significant": True}, "worker": {},
                "web": {}}, child, ServiceGroup("top", ("child", "web")))
    first = [s for s in sim.spawned if s.service == "job"]
    _end(sim, "job")
    _drain(sim)
    _ready(sim)
    assert len([s for s in sim.spawned if s.service == "job"]) == len(first) + 1
    assert _phase(sim, "child") == "running" and sim.snapshot().group("top").restarts == 1


def test_a_temporary_group_past_its_intensity_ends_and_its_parent_runs_on():
    child = ServiceGroup("child", ("x",), max_restarts=0, restart="never")  # type: ignore[arg-type]
    sim = _sim({"x": {}, "web": {}}, child,
               ServiceGroup("top", ("child", "web"), GroupStrategy.ONE_FOR_ALL))
    web = sim.current("web", 0).pid
    _end(sim, "x", code=1)
    _drain(sim)
    assert _phase(sim, "child") == "terminated" and _phase(sim, "top") == "running"
    assert sim.current("web", 0).pid == web and sim.state.phase is SupervisorPhase.RUNNING


def test_an_on_failure_group_past_its_intensity_is_a_failure_in_its_parent():
    child = ServiceGroup("child", ("x",), max_restarts=0, restart="on_failure")  # type: ignore[arg-type]
    sim = _sim({"x": {}, "web": {}}, child,
               ServiceGroup("top", ("child", "web"), GroupStrategy.ONE_FOR_ALL))
    web = sim.current("web", 0).pid
    _end(sim, "x", code=1)
    _drain(sim)
    _ready(sim)
    assert sim.current("web", 0).pid != web and sim.snapshot().group("top").restarts == 1


def test_a_member_started_by_hand_after_its_group_completed_restarts_on_its_own():
    sim = _sim({"job": JOB, "web": {}, "keeper": {}},
               ServiceGroup("g", ("job", "web"), GroupStrategy.ONE_FOR_ALL,
                            auto_shutdown="any_significant"))  # type: ignore[arg-type]
    _end(sim, "job")
    _drain(sim)
    sim.feed(ev.StartService("web"))
    _ready(sim)
    _end(sim, "web", code=1)
    sim.advance(5.0)  # its own backoff, not a plan of a group that has ended
    _ready(sim)
    assert service_phase(sim, "web") is ServicePhase.RUNNING and _phase(sim, "g") == "completed"


# -- the supervisor ------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "status"), [(0, 0), (1, 1)])
def test_the_supervisor_ends_when_a_significant_service_in_no_group_ends(code, status):
    sim = _sim({"job": JOB, "web": {}},
               config=SupervisorConfig(auto_shutdown="any_significant"))  # type: ignore[arg-type]
    _end(sim, "job", code)
    assert sim.state.phase is SupervisorPhase.STOPPING and sim.state.exit_status == status


def test_a_batch_pipeline_ends_when_its_significant_members_complete():
    pipeline = ServiceGroup("pipeline", ("extract", "transform", "cache"),
                            restart="on_failure", significant=True,  # type: ignore[arg-type]
                            auto_shutdown="all_significant")  # type: ignore[arg-type]
    sim = _sim({"extract": JOB, "transform": JOB, "cache": {}, "metrics": {}}, pipeline,
               config=SupervisorConfig(auto_shutdown="all_significant"))  # type: ignore[arg-type]
    _end(sim, "extract")
    assert sim.state.phase is SupervisorPhase.RUNNING
    _end(sim, "transform")
    _drain(sim)  # the pipeline stops cache, completes; the supervisor shuts down
    assert _phase(sim, "pipeline") == "completed"
    assert sim.state.phase is SupervisorPhase.STOPPING and sim.state.exit_status == 0
    _drain(sim)
    assert sim.finished


# -- what is refused -----------------------------------------------------------------------
def test_a_significant_always_member_is_refused():
    with pytest.raises(ConfigError, match="^significant: needs restart"):
        SpawnOptions(significant=True, restart="always")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="^significant: needs restart"):
        ServiceGroup("g", ("a",), significant=True)


def test_a_significant_service_added_while_running_needs_the_supervisors_auto_shutdown():
    sim = _sim({"web": {}})
    with pytest.raises(ConfigError, match="^significant: a service added while"):
        sim.register("job", SpawnOptions(name="job", **JOB))  # type: ignore[arg-type]


def test_a_significant_member_under_auto_shutdown_never_is_refused():
    sim = Sim(CONFIG)
    sim.register("job", SpawnOptions(name="job", **JOB))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="^auto_shutdown: is \"never\" but member 'job' is "
                                          "significant"):
        sim.feed(ev.RegisterGroup(ServiceGroup("g", ("job",))))
    with pytest.raises(ConfigError, match="^auto_shutdown: is \"never\" but the top-level "
                                          "member 'job'"):
        sim.begin()
    with pytest.raises(ConfigError, match="auto_shutdown: must be one of"):
        ServiceGroup("g", ("a",), auto_shutdown="sometimes")  # type: ignore[arg-type]
