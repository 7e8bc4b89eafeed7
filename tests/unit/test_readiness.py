"""The one readiness verdict (core/readiness.py) through every state a service can be in, on
the policy simulator's fake clock: /readyz and `status --check` both read it."""

from __future__ import annotations

from janus_mp.core import events as ev
from janus_mp.core.backoff import BackoffConfig
from janus_mp.core.config import SpawnOptions
from janus_mp.core.exits import RestartPolicy
from janus_mp.core.readiness import Readiness, readiness
from tests.unit.policy_helpers import NO_BREAKER, pool
from tests.unit.policy_sim import Sim

HALF_OPEN = BackoffConfig(initial_delay=0.1, max_delay=1.0, max_retries=2, window=60.0,
                          half_open_after=5.0, trial_period=3.0)
NEVER = BackoffConfig(initial_delay=0.1, max_delay=1.0, max_retries=2, window=60.0,
                      half_open_after=None)


def verdict(sim: Sim) -> Readiness:
    return readiness(sim.snapshot().to_dict())


def test_a_pool_is_not_ready_while_starting_and_ready_once_all_its_workers_are():
    sim = pool(2, keeper=True, ready=False)
    answer = verdict(sim)
    assert not answer.ready
    assert answer.not_ready["a"]["phase"] == "starting"
    assert "starting 0/2" in answer.line(2, 0)
    sim.ready_all()
    assert verdict(sim).ready and verdict(sim).not_ready == {}
    assert verdict(sim).line(2, 3) == "ready: 2 services, 3 workers"


def test_backing_off_is_not_ready():
    sim = pool(1, keeper=True, backoff=NO_BREAKER)
    sim.exit(sim.current("a", 0), 1)
    answer = verdict(sim)
    assert not answer.ready and answer.not_ready["a"]["phase"] == "backing_off"
    sim.advance(2.0)
    sim.ready_all()
    assert verdict(sim).ready


def test_open_then_half_open_breaker_is_not_ready_until_it_closes():
    sim = pool(1, keeper=True, backoff=HALF_OPEN)
    for _ in range(2):
        sim.exit(sim.current("a", 0), 1)
        sim.advance(1.0)
    answer = verdict(sim)
    assert not answer.ready and answer.not_ready["a"]["breaker"] == "open"
    assert answer.given_up == ()  # it comes back by itself
    sim.advance(5.0)  # half-open: one trial worker
    sim.ready_all()
    answer = verdict(sim)
    assert not answer.ready and answer.not_ready["a"]["breaker"] == "half_open"
    sim.advance(3.5)  # the trial held: closed
    assert verdict(sim).ready


def test_a_breaker_open_for_good_is_not_ready_and_given_up():
    sim = pool(1, keeper=True, backoff=NEVER)
    for _ in range(2):
        sim.exit(sim.current("a", 0), 1)
        sim.advance(1.0)
    sim.exit_cancelled()
    answer = verdict(sim)
    assert answer.not_ready["a"]["phase"] == "terminated"
    assert answer.not_ready["a"]["reason"] == "circuit_breaker_open"
    assert answer.given_up == ("a",) and not answer.ready
    assert "circuit_breaker_open" in answer.line(2, 1)


def test_a_service_stopped_by_the_operator_is_not_ready_but_not_given_up():
    sim = pool(1, keeper=True)
    sim.feed(ev.StopService("a"))
    sim.exit_cancelled()
    answer = verdict(sim)
    assert answer.not_ready["a"]["reason"] == "stopped"
    assert answer.given_up == () and not answer.ready
    sim.feed(ev.StartService("a"))
    sim.ready_all()
    assert verdict(sim).ready


def test_a_one_shot_that_completed_is_ready_and_one_that_failed_is_given_up():
    sim = Sim()
    sim.register("once", SpawnOptions(name="once", restart=RestartPolicy.NEVER))
    sim.register("broken", SpawnOptions(name="broken", restart=RestartPolicy.NEVER))
    sim.register("keeper", SpawnOptions(name="keeper"))
    sim.begin()
    sim.ready_all()
    sim.exit(sim.current("once", 0), 0)
    sim.exit(sim.current("broken", 0), 1)
    answer = verdict(sim)
    assert "once" not in answer.not_ready
    assert answer.given_up == ("broken",) and not answer.ready


def test_a_supervisor_that_is_not_running_is_not_ready():
    sim = pool(1)
    sim.feed(ev.Shutdown())
    answer = verdict(sim)
    assert not answer.ready and answer.state != "running"
    assert answer.line(1, 1).startswith("not ready: supervisor ")


def test_a_service_not_started_on_purpose_is_not_waited_for():
    # autostart = false and no `janus-mp start` yet: shown terminated, with "started": false.
    status = {"state": "running", "services": [
        {"name": "later", "started": False, "phase": "terminated", "ready": 0, "desired": 1,
         "breaker": "closed", "termination_reason": None},
        {"name": "web", "phase": "running", "ready": 2, "desired": 2, "breaker": "closed",
         "termination_reason": None}]}
    answer = readiness(status)
    assert answer.ready and answer.not_ready == {} and answer.given_up == ()
