"""What a group restart does with each member (OTP's restart types), and which members a
starting group waits for (OTP skips children it does not start), on a fake clock."""

from __future__ import annotations

from janus_mp.core import events as ev
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from janus_mp.core.lifecycle import ServicePhase
from janus_mp.core.pool import SupervisorPhase
from janus_mp.core.tree import GroupStrategy, ServiceGroup
from tests.unit.policy_helpers import FAST, NO_BREAKER, check_invariants, service_phase
from tests.unit.policy_sim import Sim

CONFIG = SupervisorConfig(shutdown_timeout=10.0, kill_timeout=2.0)


def _tree(group: ServiceGroup, **restart: str) -> Sim:
    """One service per member (restart policy by name, default always), the group, begun,
    and every member ready in order."""
    sim = Sim(CONFIG)
    for name in group.members:
        sim.register(name, SpawnOptions(name=name, restart=restart.get(name, "always"),  # type: ignore[arg-type]
                                        backoff=NO_BREAKER))
    sim.register("keeper", SpawnOptions(name="keeper"))  # the supervisor never runs out
    sim.feed(ev.RegisterGroup(group))
    sim.begin()
    _ready_in_order(sim)
    return sim


def _ready_in_order(sim: Sim) -> None:
    while any(not w.ready for w in sim.workers()):
        sim.ready_all()
        check_invariants(sim)


def _pid(sim: Sim, name: str) -> int | None:
    slot = sim.state.services[name].slots[0]
    return slot.current.pid if slot.current is not None else None


def _crash(sim: Sim, name: str, code: int = 1) -> None:
    sim.exit(sim.current(name, 0), code)
    check_invariants(sim)


def _restart_group(sim: Sim, failing: str) -> None:
    """``failing`` crashes; everything asked to stop stops; what starts again gets ready."""
    _crash(sim, failing)
    _drain(sim)
    _ready_in_order(sim)


def _drain(sim: Sim) -> None:
    """Workers asked to stop do so, one wave after the other (members stop one by one)."""
    while any(w in sim.state.workers for w in sim.cancelled):
        sim.exit_cancelled()
        check_invariants(sim)


# -- item: a group restart respects each member's restart policy -------------------------------
def test_one_for_all_does_not_start_a_never_member_again():
    sim = _tree(ServiceGroup("g", ("once", "app", "web"), GroupStrategy.ONE_FOR_ALL),
                once="never")
    once = _pid(sim, "once")
    _restart_group(sim, "web")
    assert service_phase(sim, "once") is ServicePhase.TERMINATED
    assert _pid(sim, "once") is None and sim.workers("once") == []
    assert [s.generation for s in sim.spawned if s.service == "once"] == [1], \
        f"once ({once}) was started again"
    # the later members did not wait behind it
    assert {w.service for w in sim.workers() if w.ready} == {"app", "web", "keeper"}
    assert sim.snapshot().group("g").phase == "running"
    assert any("once is not started again: its restart policy is never" in line
               for line in sim.logs())


def test_rest_for_one_does_not_start_a_completed_on_failure_member_again():
    sim = _tree(ServiceGroup("g", ("db", "load", "api"), GroupStrategy.REST_FOR_ONE),
                load="on_failure")
    _crash(sim, "load", code=0)  # completed: on_failure leaves it down
    assert service_phase(sim, "load") is ServicePhase.TERMINATED
    api = _pid(sim, "api")
    _restart_group(sim, "db")
    assert [s.generation for s in sim.spawned if s.service == "load"] == [1]
    assert _pid(sim, "db") is not None and _pid(sim, "api") not in (None, api)
    assert sim.state.tree.waiting == {}


def test_an_on_failure_member_that_was_running_is_restarted_with_its_group():
    sim = _tree(ServiceGroup("g", ("a", "b"), GroupStrategy.ONE_FOR_ALL), b="on_failure")
    before = _pid(sim, "b")
    _restart_group(sim, "a")
    assert _pid(sim, "b") not in (None, before)


# -- item: a later member never waits for ever behind one that will not start ---------------
def test_a_member_stopped_by_hand_is_skipped_by_the_members_after_it_after_a_restart():
    for strategy in (GroupStrategy.ONE_FOR_ALL, GroupStrategy.REST_FOR_ONE):
        sim = _tree(ServiceGroup("g", ("a", "b", "c"), strategy))
        sim.feed(ev.StopService("b"))
        _drain(sim)
        before = _pid(sim, "c")
        _restart_group(sim, "a")
        assert _pid(sim, "c") not in (None, before), strategy
        assert sim.workers("b") == [], strategy
        assert sim.state.tree.waiting == {}, strategy
        assert sim.snapshot().group("g").phase == "running", strategy


def test_a_never_member_whose_start_failed_is_skipped():
    sim = Sim(CONFIG)
    for name, restart in (("migrate", "never"), ("app", "always")):
        sim.register(name, SpawnOptions(name=name, restart=restart, wait_for_ready=True,  # type: ignore[arg-type]
                                        backoff=NO_BREAKER))
    sim.register("keeper", SpawnOptions(name="keeper"))
    sim.feed(ev.RegisterGroup(ServiceGroup("g", ("migrate", "app"))))
    sim.begin()
    assert sim.workers("app") == []  # waits for migrate to be ready
    assert sim.snapshot().service("app").waiting == \
        "waiting for migrate (group g starts its members in order)"
    _crash(sim, "migrate", code=1)  # dies before it was ready: it will never be up
    assert service_phase(sim, "migrate") is ServicePhase.TERMINATED
    assert [w.service for w in sim.workers("app")] == ["app"]
    assert sim.snapshot().service("app").waiting is None


def test_a_member_stopped_by_hand_while_its_group_starts_lets_the_next_one_start():
    sim = Sim(CONFIG)
    for name in "abc":
        sim.register(name, SpawnOptions(name=name, backoff=NO_BREAKER))
    sim.feed(ev.RegisterGroup(ServiceGroup("g", ("a", "b", "c"))))
    sim.begin()
    sim.ready_all("a")
    assert sim.workers("c") == []
    sim.feed(ev.StopService("b"))  # b never got ready
    assert [w.service for w in sim.workers("c")] == ["c"]
    _drain(sim)
    sim.ready_all("c")
    assert sim.snapshot().group("g").phase == "running"
    assert sim.state.phase is SupervisorPhase.RUNNING


def test_a_later_member_still_waits_for_one_that_is_only_slow():
    sim = Sim(CONFIG)
    for name in "ab":
        sim.register(name, SpawnOptions(name=name, backoff=NO_BREAKER))
    sim.feed(ev.RegisterGroup(ServiceGroup("g", ("a", "b"), GroupStrategy.ONE_FOR_ALL)))
    sim.begin()
    sim.advance(3600)
    assert sim.workers("b") == []
    _crash(sim, "a")  # crashed while starting: it restarts, so b keeps waiting
    _drain(sim)
    assert sim.workers("b") == []
    sim.ready_all("a")
    assert [w.service for w in sim.workers("b")] == ["b"]


# -- item: a member's breaker that ends it for good is a failure for its group ----------------
def _breaker_tree(strategy: GroupStrategy, max_restarts: int, *, critical: bool = False) -> Sim:
    sim = Sim(CONFIG)
    sim.register("db", SpawnOptions(name="db", backoff=NO_BREAKER))
    sim.register("flaky", SpawnOptions(name="flaky", backoff=FAST, critical=critical))
    sim.register("keeper", SpawnOptions(name="keeper"))
    sim.feed(ev.RegisterGroup(ServiceGroup("g", ("db", "flaky"), strategy,
                                           max_restarts=max_restarts, within=60.0)))
    sim.begin()
    _ready_in_order(sim)
    return sim


def _fail_until_the_breaker_ends_it(sim: Sim) -> None:
    """flaky crashes at once every time it starts, until its breaker (3 failures) ends it."""
    for _ in range(3):
        _crash(sim, "flaky")
        sim.advance(2.0)
    assert any("circuit breaker open (3/3 failures)" in line for line in sim.logs())


def test_a_breaker_ending_a_one_for_one_member_restarts_it_fresh_and_counts():
    sim = _breaker_tree(GroupStrategy.ONE_FOR_ONE, max_restarts=10)
    db = _pid(sim, "db")
    _fail_until_the_breaker_ends_it(sim)
    _drain(sim)
    _ready_in_order(sim)
    assert service_phase(sim, "flaky") is ServicePhase.RUNNING  # a fresh service, breaker closed
    assert sim.state.services["flaky"].breaker.state.value == "closed"
    assert _pid(sim, "db") == db
    assert sim.snapshot().group("g").restarts == 4  # three crashes, then the breaker's end


def test_a_member_that_keeps_tripping_its_breaker_escalates_instead_of_vanishing():
    sim = _breaker_tree(GroupStrategy.ONE_FOR_ONE, max_restarts=4)  # >= the breaker's 3
    _fail_until_the_breaker_ends_it(sim)  # 4 restarts: at the limit, flaky restarts fresh
    _drain(sim)
    _ready_in_order(sim)
    assert sim.state.phase is SupervisorPhase.RUNNING
    _crash(sim, "flaky")  # the fifth within the minute: the group gives up
    assert sim.state.phase is SupervisorPhase.STOPPING and sim.state.exit_status == 1
    assert any("group g: more than 4 restarts within 60s" in line for line in sim.logs())


def test_a_critical_member_whose_breaker_ends_it_still_shuts_the_supervisor_down():
    sim = _breaker_tree(GroupStrategy.ONE_FOR_ONE, max_restarts=10, critical=True)
    _fail_until_the_breaker_ends_it(sim)
    assert sim.state.phase is SupervisorPhase.STOPPING and sim.state.exit_status == 1


# -- how a pool counts toward its group's intensity -------------------------------------------
def _pool_tree(strategy: GroupStrategy, max_restarts: int) -> Sim:
    sim = Sim(CONFIG)
    sim.register("pool", SpawnOptions(name="pool", workers=4, backoff=NO_BREAKER))
    sim.register("keeper", SpawnOptions(name="keeper"))
    sim.feed(ev.RegisterGroup(ServiceGroup("g", ("pool", "keeper"), strategy,
                                           max_restarts=max_restarts, within=60.0)))
    sim.begin()
    _ready_in_order(sim)
    return sim


def test_one_for_one_counts_every_worker_of_a_pool():
    sim = _pool_tree(GroupStrategy.ONE_FOR_ONE, max_restarts=3)
    for slot in range(3):
        sim.exit(sim.current("pool", slot), 1)
    assert sim.state.phase is SupervisorPhase.RUNNING
    sim.exit(sim.current("pool", 3), 1)  # the whole pool crashed: 4 restarts > 3
    assert sim.state.phase is SupervisorPhase.STOPPING and sim.state.exit_status == 1


def test_one_for_all_counts_a_pool_crashing_at_once_as_one_restart():
    sim = _pool_tree(GroupStrategy.ONE_FOR_ALL, max_restarts=1)
    for slot in range(4):  # the later exits join the restart under way
        sim.exit(sim.current("pool", slot), 1)
    assert sim.state.phase is SupervisorPhase.RUNNING
    assert sim.snapshot().group("g").restarts == 1
