"""Lifecycle notices: the policy publishes one frozen record per happening, with what it knew."""

from __future__ import annotations

import dataclasses
import json

import pytest

from janus_mp.core import announce
from janus_mp.core import events as ev
from janus_mp.core.hooks_config import HooksConfig
from janus_mp.core.notices import LifecycleNotice, NoticeKind
from janus_mp.core.step import Step
from janus_mp.errors import ConfigError
from tests.unit.policy_helpers import FAST, pool


def _kinds(sim, service="a"):
    return [n.kind for n in sim.notices if n.service == service]


def test_a_worker_life_is_spawned_ready_exited_backing_off_spawned():
    sim = pool(1, keeper=True)
    worker = sim.current("a", 0)
    sim.exit(worker, 1)
    sim.advance(1.0)
    K = NoticeKind
    assert _kinds(sim) == [K.SPAWNED, K.READY, K.EXITED, K.BACKING_OFF, K.SPAWNED]
    exited = next(n for n in sim.notices if n.kind is K.EXITED)
    assert (exited.slot, exited.pid, exited.exit_code, exited.reason, exited.reason_text) == \
        (0, worker.pid, 1, "failed", "failed (exit code 1)")
    backing = next(n for n in sim.notices if n.kind is K.BACKING_OFF)
    assert backing.delay is not None and backing.delay > 0 and backing.exit_code == 1


def test_the_breaker_opens_and_the_service_terminates():
    sim = pool(1, backoff=FAST, keeper=True)
    for _ in range(3):
        sim.exit(sim.current("a", 0), 1)
        sim.advance(2.0)
    kinds = _kinds(sim)
    assert NoticeKind.BREAKER_OPENED in kinds
    assert kinds[-1] is NoticeKind.SERVICE_TERMINATED
    ended = sim.notices[-1]
    assert ended.reason == "circuit_breaker_open"


def test_the_breaker_closes_after_a_good_trial():
    from janus_mp.core.backoff import BackoffConfig

    backoff = BackoffConfig(initial_delay=0.1, max_delay=1.0, max_retries=2, window=60.0,
                            half_open_after=5.0, trial_period=3.0)
    sim = pool(1, backoff=backoff, keeper=True)
    for _ in range(2):
        sim.exit(sim.current("a", 0), 1)
        sim.advance(1.0)
    assert NoticeKind.BREAKER_OPENED in _kinds(sim)
    sim.advance(5.0)
    sim.ready(sim.current("a", 0))
    sim.advance(3.0)
    assert _kinds(sim)[-1] in (NoticeKind.BREAKER_CLOSED, NoticeKind.SPAWNED)
    assert NoticeKind.BREAKER_CLOSED in _kinds(sim)


def test_a_stopped_service_announces_its_end_once():
    sim = pool(2, keeper=True)
    sim.feed(ev.StopService("a"))
    for worker in sim.workers("a"):
        sim.exit(worker, 0)
    sim.advance(1.0)
    assert _kinds(sim).count(NoticeKind.SERVICE_TERMINATED) == 1


def test_group_restarted_is_a_hook_point_for_groups():
    sim = pool(1)
    step = Step(sim.state, 7.0)
    announce.group_restarted(step, "backend", ["db", "api"], "db failed")
    notice = step.actions[0].notice  # type: ignore[attr-defined]
    assert notice.kind is NoticeKind.GROUP_RESTARTED and notice.members == ("db", "api")


def test_a_notice_as_json_and_as_hook_environment():
    notice = LifecycleNotice(NoticeKind.EXITED, 10.0, service="web", slot=1, generation=2,
                             pid=4242, exit_code=-9, reason="killed",
                             reason_text="killed by signal 9 (SIGKILL)")
    data = json.loads(json.dumps(notice.to_dict(1000.0)))
    assert data == {"event": "exited", "at": 1010.0, "service": "web", "slot": 1,
                    "generation": 2, "pid": 4242, "exit_code": -9, "reason": "killed",
                    "reason_text": "killed by signal 9 (SIGKILL)"}
    env = notice.environment(1000.0)
    assert env["JANUS_EVENT"] == "exited" and env["JANUS_PID"] == "4242"
    assert env["JANUS_EXIT_CODE"] == "-9" and env["JANUS_REASON"] == "killed"
    assert env["JANUS_SERVICE"] == "web" and env["JANUS_SLOT"] == "1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        notice.pid = 1  # type: ignore[misc]


def test_hooks_config():
    hooks = HooksConfig(on_exit="notify --exit 'a b'", on_ready=["r"])
    assert hooks.commands() == {NoticeKind.EXITED: ("notify", "--exit", "a b"),
                                NoticeKind.READY: ("r",)}
    for bad in ({"on_exit": []}, {"on_exit": 3}, {"timeout": 0}, {"max_concurrent": 0}):
        with pytest.raises(ConfigError):
            HooksConfig(**bad)  # type: ignore[arg-type]
