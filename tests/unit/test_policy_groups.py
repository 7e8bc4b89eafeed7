"""Supervision-tree groups on a fake clock: start order, every strategy, restart intensity,
escalation through two levels, and what a group leaves alone."""

from __future__ import annotations

import pytest

from janus_mp.core import events as ev
from janus_mp.core.actions import Publish
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from janus_mp.core.lifecycle import ServicePhase
from janus_mp.core.notices import NoticeKind
from janus_mp.core.pool import SupervisorPhase
from janus_mp.core.tree import GroupStrategy, ServiceGroup
from janus_mp.errors import ConfigError, JanusError
from tests.unit.policy_helpers import NO_BREAKER, check_invariants, restart_at, slot_phase
from tests.unit.policy_sim import Sim

CONFIG = SupervisorConfig(shutdown_timeout=10.0, kill_timeout=2.0)


def _tree(services: str, *groups: ServiceGroup, workers: int = 1, ready: bool = True) -> Sim:
    sim = Sim(CONFIG)
    for name in services:
        sim.register(name, SpawnOptions(name=name, workers=workers, backoff=NO_BREAKER))
    for group in groups:
        sim.feed(ev.RegisterGroup(group))
    sim.begin()
    if ready:
        _ready_in_order(sim)
    return sim


def _ready_in_order(sim: Sim) -> None:
    """Members start one after the other: make each ready until no new worker appears."""
    while any(not w.ready for w in sim.workers()):
        sim.ready_all()


def _pids(sim: Sim) -> dict[str, set[int]]:
    pids: dict[str, set[int]] = {}
    for worker in sim.workers():
        assert worker.pid is not None
        pids.setdefault(worker.service, set()).add(worker.pid)
    return pids


def _crash(sim: Sim, service: str, slot: int = 0, code: int = 1) -> None:
    sim.exit(sim.current(service, slot), code)
    check_invariants(sim)


def _cancelled_services(sim: Sim, start: int = 0) -> list[str]:
    """Services whose workers were asked to stop, in the order asked (each once)."""
    order: list[str] = []
    for worker_id in sim.cancelled[start:]:
        worker = sim.state.workers.get(worker_id)
        name = worker.service if worker else "?"
        if name not in order:
            order.append(name)
    return order


def _drain_one_by_one(sim: Sim) -> list[str]:
    """Let the workers asked to stop exit, one service at a time; return the order they were
    asked in (a service is only asked once the one before it has drained)."""
    order: list[str] = []
    seen = 0
    while seen < len(sim.cancelled):
        batch = [w for w in sim.cancelled[seen:] if w in sim.state.workers]
        seen = len(sim.cancelled)
        if not batch:
            continue
        services = {sim.state.workers[w].service for w in batch}
        assert len(services) == 1, f"two services stopping at once: {services}"
        order.append(services.pop())
        for worker_id in batch:
            sim.exit(worker_id, 0)
        check_invariants(sim)
    return order


# -- start order ---------------------------------------------------------------------------------
def test_members_start_in_list_order_each_once_the_previous_is_ready():
    sim = _tree("abc", ServiceGroup("g", ("c", "a", "b")), workers=2, ready=False)
    assert {w.service for w in sim.workers()} == {"c"}
    snapshot = sim.snapshot()
    assert snapshot.service("a").waiting == "waiting for c (group g starts its members in order)"
    assert slot_phase(sim, 0, "a") is ServicePhase.STARTING
    assert snapshot.group("g").phase == "starting"
    sim.ready(sim.current("c", 0))
    assert {w.service for w in sim.workers()} == {"c"}  # one of two ready is not ready
    sim.ready(sim.current("c", 1))
    assert {w.service for w in sim.workers()} == {"c", "a"}
    sim.ready_all("a")
    assert {w.service for w in sim.workers()} == {"c", "a", "b"}
    sim.ready_all("b")
    snapshot = sim.snapshot()
    assert snapshot.service("b").waiting is None
    assert snapshot.group("g").phase == "running"


def test_shutdown_stops_members_in_reverse_order():
    sim = _tree("abc", ServiceGroup("g", ("a", "b", "c")))
    sim.feed(ev.Shutdown())
    assert _drain_one_by_one(sim) == ["c", "b", "a"]
    assert sim.finished


# -- strategies ----------------------------------------------------------------------------------
def test_one_for_one_restarts_the_failed_member_alone_with_its_own_backoff():
    sim = _tree("abc", ServiceGroup("g", ("a", "b", "c"), GroupStrategy.ONE_FOR_ONE))
    before = _pids(sim)
    _crash(sim, "b")
    assert sim.cancelled == []
    assert restart_at(sim, 0, "b") is not None  # the service's backoff, as without a group
    sim.advance(1.0)
    after = _pids(sim)
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"] != before["b"]
    assert sim.snapshot().group("g").restarts == 1


def test_one_for_all_stops_every_other_member_last_first_then_starts_all_in_order():
    sim = _tree("abc", ServiceGroup("g", ("a", "b", "c"), GroupStrategy.ONE_FOR_ALL),
                workers=2)
    before = _pids(sim)
    _crash(sim, "b", slot=1)
    assert slot_phase(sim, 1, "b") is ServicePhase.BACKING_OFF  # parked: the group decides
    assert sim.snapshot().group("g").phase == "restarting"
    assert _drain_one_by_one(sim) == ["c", "b", "a"]
    # Started again in order, each once the previous is ready.
    assert set(_pids(sim)) == {"a"}
    _ready_in_order(sim)
    after = _pids(sim)
    for name in "abc":
        assert len(after[name]) == 2 and not after[name] & before[name], name
    assert sim.snapshot().group("g").phase == "running"
    assert sim.state.phase is SupervisorPhase.RUNNING


def test_rest_for_one_restarts_the_failed_member_and_those_after_it_only():
    sim = _tree("abcd", ServiceGroup("g", ("a", "b", "c", "d"), GroupStrategy.REST_FOR_ONE))
    before = _pids(sim)
    _crash(sim, "b")
    assert _drain_one_by_one(sim) == ["d", "c"]  # b's only worker is already gone
    _ready_in_order(sim)
    after = _pids(sim)
    assert after["a"] == before["a"]
    for name in "bcd":
        assert not after[name] & before[name], name
    (notice,) = [a.notice for a in sim.log if isinstance(a, Publish)
                 and a.notice.kind is NoticeKind.GROUP_RESTARTED]  # for events and hooks
    assert notice.group == "g" and notice.members == ("b", "c", "d")


def test_a_clean_exit_that_would_restart_is_a_failure_of_the_member_too():
    sim = Sim(CONFIG)
    for name in "ab":
        sim.register(name, SpawnOptions(name=name, restart="always", backoff=NO_BREAKER))
    sim.feed(ev.RegisterGroup(ServiceGroup("g", ("a", "b"), GroupStrategy.ONE_FOR_ALL)))
    sim.begin()
    _ready_in_order(sim)
    before = _pids(sim)
    _crash(sim, "a", code=0)
    _drain_one_by_one(sim)
    _ready_in_order(sim)
    assert not _pids(sim)["b"] & before["b"]


def test_a_member_stopped_on_request_or_ending_for_good_restarts_nothing():
    sim = _tree("abc", ServiceGroup("g", ("a", "b", "c"), GroupStrategy.ONE_FOR_ALL))
    before = _pids(sim)
    sim.feed(ev.StopService("b"))
    sim.exit_cancelled()
    _crash(sim, "c", code=78)  # no_restart_codes: the slot ends, no failure of the group
    assert _pids(sim) == {"a": before["a"]}
    assert sim.snapshot().group("g").restarts == 0


def test_a_failure_while_the_group_stops_for_a_restart_joins_the_same_restart():
    sim = _tree("abc", ServiceGroup("g", ("a", "b", "c"), GroupStrategy.REST_FOR_ONE),
                workers=2)
    before = _pids(sim)
    _crash(sim, "b")  # plan: b, c; c's workers are asked to stop
    assert _cancelled_services(sim) == ["c"]
    _crash(sim, "a")  # before c drained: a joins the plan, which goes on from where it is
    assert sim.snapshot().group("g").restarts == 2
    assert _drain_one_by_one(sim) == ["c", "b", "a"]
    _ready_in_order(sim)
    after = _pids(sim)
    for name in "abc":
        assert not after[name] & before[name], name


# -- intensity and escalation -------------------------------------------------------------------
def test_more_restarts_than_the_intensity_allows_take_a_top_level_group_down_with_status_1():
    sim = _tree("ab", ServiceGroup("g", ("a", "b"), GroupStrategy.ONE_FOR_ONE,
                                   max_restarts=2, within=10.0))
    for _ in range(2):
        _crash(sim, "a")
        sim.advance(1.0)
        sim.ready_all()
    assert sim.state.phase is SupervisorPhase.RUNNING
    _crash(sim, "a")
    assert sim.state.phase is SupervisorPhase.STOPPING
    assert sim.state.exit_status == 1
    assert any("more than 2 restarts within 10s" in line for line in sim.logs())
    assert sim.snapshot().group("g").phase == "terminated"


def test_restarts_older_than_the_window_do_not_count():
    sim = _tree("ab", ServiceGroup("g", ("a", "b"), GroupStrategy.ONE_FOR_ALL,
                                   max_restarts=1, within=5.0))
    for _ in range(3):
        _crash(sim, "a")
        _drain_one_by_one(sim)
        _ready_in_order(sim)
        sim.advance(6.0)
    assert sim.state.phase is SupervisorPhase.RUNNING
    assert sim.snapshot().group("g").restarts == 3


def test_escalation_through_two_levels_restarts_by_the_top_groups_strategy():
    # top (one_for_all: mid, z) > mid (rest_for_one: w, inner, y) > inner (one_for_one: x)
    inner = ServiceGroup("inner", ("x",), GroupStrategy.ONE_FOR_ONE, max_restarts=0)
    mid = ServiceGroup("mid", ("w", "inner", "y"), GroupStrategy.REST_FOR_ONE, max_restarts=0)
    top = ServiceGroup("top", ("mid", "z"), GroupStrategy.ONE_FOR_ALL, max_restarts=1,
                       within=60.0)
    sim = _tree("wxyz", inner, mid, top)
    before = _pids(sim)
    _crash(sim, "x")  # inner gives up at once, so does mid: top restarts everything
    logs = sim.logs()
    assert any("group inner: more than 0 restarts" in line for line in logs)
    assert any("group mid: more than 0 restarts" in line for line in logs)
    assert any("group top (one_for_all): mid failed" in line for line in logs)
    assert _drain_one_by_one(sim) == ["z", "y", "w"]
    _ready_in_order(sim)
    after = _pids(sim)
    for name in "wxyz":
        assert not after[name] & before[name], name
    groups = sim.snapshot()
    assert [groups.group(n).phase for n in ("inner", "mid", "top")] == ["running"] * 3
    assert groups.group("top").restarts == 1
    # The restarted inner groups start with a clean history; top's intensity is used up.
    _crash(sim, "x")
    assert sim.state.phase is SupervisorPhase.STOPPING and sim.state.exit_status == 1


def test_an_escalated_child_group_in_a_one_for_one_parent_restarts_alone():
    child = ServiceGroup("child", ("b", "c"), GroupStrategy.ONE_FOR_ALL, max_restarts=0)
    sim = _tree("abcd", child, ServiceGroup("top", ("a", "child", "d")))
    before = _pids(sim)
    _crash(sim, "c")
    assert _drain_one_by_one(sim) == ["b"]
    _ready_in_order(sim)
    after = _pids(sim)
    assert after["a"] == before["a"] and after["d"] == before["d"]
    assert not after["b"] & before["b"] and not after["c"] & before["c"]


# -- the Python API's refusals -------------------------------------------------------------------
@pytest.mark.parametrize(("group", "message"), [
    (ServiceGroup("g", ("a", "nope")), "members: unknown member 'nope'"),
    (ServiceGroup("a", ("b",)), "name: a service is named 'a' too"),
])
def test_a_group_with_unknown_members_or_a_clashing_name_is_refused(group, message):
    sim = Sim(CONFIG)
    for name in "ab":
        sim.register(name)
    with pytest.raises(ConfigError, match=message):
        sim.feed(ev.RegisterGroup(group))


def test_a_member_belongs_to_one_group_and_groups_are_added_before_the_start():
    sim = Sim(CONFIG)
    for name in "ab":
        sim.register(name)
    sim.feed(ev.RegisterGroup(ServiceGroup("g1", ("a",))))
    with pytest.raises(ConfigError, match="'a' is already a member of group 'g1'"):
        sim.feed(ev.RegisterGroup(ServiceGroup("g2", ("a", "b"))))
    sim.begin()
    with pytest.raises(JanusError, match="before run_until_shutdown"):
        sim.feed(ev.RegisterGroup(ServiceGroup("g3", ("b",))))


def test_a_group_spec_checks_its_own_fields():
    with pytest.raises(ConfigError, match="strategy"):
        ServiceGroup("g", ("a",), "one_for_some")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="listed twice"):
        ServiceGroup("g", ("a", "a"))
    with pytest.raises(ConfigError, match="within"):
        ServiceGroup("g", ("a",), within=0)
    assert ServiceGroup("g", ["a"], "rest-for-one").strategy is GroupStrategy.REST_FOR_ONE  # type: ignore[arg-type]
