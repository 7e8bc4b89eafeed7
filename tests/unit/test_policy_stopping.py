"""Stopping: services on request, the supervisor stage by stage with its SIGTERM / SIGKILL
deadlines in loop time, signals, fast shutdown; and the commands the policy refuses."""

from __future__ import annotations

import pytest

from janus_mp.core import events as ev
from janus_mp.core.actions import (
    CancelRoot,
    CancelService,
    CancelWorker,
    OpenService,
    ShutdownStarted,
    SignalWorker,
    Spawn,
    StopSignal,
)
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from janus_mp.core.lifecycle import ServicePhase, TerminationKind
from janus_mp.core.pool import SupervisorPhase
from janus_mp.errors import ConfigError, JanusError, UnknownServiceError
from tests.unit.policy_helpers import (
    NO_BREAKER,
    TimedSim,
    check_invariants,
    restart_at,
    service_phase,
)
from tests.unit.policy_sim import Sim

CONFIG = SupervisorConfig(shutdown_timeout=30.0, kill_timeout=5.0)


def _staged(sim: Sim | None = None, orders: dict[str, int] | None = None,
            workers: int = 1) -> Sim:
    sim = sim or TimedSim(CONFIG)
    for name, order in (orders or {"a": 0, "b": 1, "c": 2}).items():
        sim.register(name, SpawnOptions(name=name, workers=workers, start_order=order,
                                        backoff=NO_BREAKER, stack_dump_timeout=None))
    sim.begin()
    sim.ready_all()
    return sim


def _ids(sim: Sim, service: str) -> set[int]:
    return {w.id for w in sim.workers(service)}


def _signalled(sim: Sim, sig: StopSignal) -> set[int]:
    return {w for w, s in sim.signals if s is sig}


# -- stages --------------------------------------------------------------------------------------
def test_shutdown_stops_services_in_reverse_start_order_one_drained_stage_at_a_time():
    sim = _staged(workers=2)
    a, b, c = (_ids(sim, n) for n in "abc")
    actions = sim.feed(ev.Shutdown())
    assert actions[0] == ShutdownStarted(False)
    assert set(sim.cancelled) == c
    assert [x.service for x in actions if isinstance(x, CancelService)] == ["c"]
    sim.exit(sim.current("c", 0), 0)
    assert set(sim.cancelled) == c  # c is still draining: b waits
    sim.exit(sim.current("c", 1), 0)
    assert set(sim.cancelled) == c | b
    assert not any(isinstance(x, CancelRoot) for x in sim.log)
    sim.exit_cancelled()
    assert set(sim.cancelled) == c | b | a
    assert any(isinstance(x, CancelRoot) for x in sim.log)  # with the last stage
    sim.exit_cancelled()
    assert sim.finished and sim.state.exit_status == 0
    assert [service_phase(sim, n) for n in "abc"] == [ServicePhase.TERMINATED] * 3
    assert sim.state.metrics.snapshot().services["a"].terminated_total == {"stopped": 2}
    check_invariants(sim)


def test_services_of_one_start_order_stop_together():
    sim = _staged(orders={"a": 0, "b": 0, "c": 1})
    a, b, c = (_ids(sim, n) for n in "abc")
    sim.feed(ev.Shutdown())
    sim.exit_cancelled()
    assert set(sim.cancelled) == a | b | c


def test_a_service_already_stopping_does_not_hold_back_its_stage():
    sim = _staged(orders={"a": 0, "keeper": 0})
    sim.feed(ev.StopService("a"))  # a's worker takes its time
    sim.feed(ev.Shutdown())
    assert _ids(sim, "keeper") <= set(sim.cancelled)


def test_a_service_of_a_stage_gets_its_grace_even_when_another_one_stops_slowly():
    # Was a bug: keeper waited for a (already stopping) to drain, then got its cancel and
    # SIGTERM at the same moment, 30 s in, with no cooperative grace at all.
    sim = _staged(orders={"a": 0, "keeper": 0})
    keeper = sim.current("keeper", 0)
    sim.feed(ev.StopService("a"))
    sim.advance(10.0)
    sim.feed(ev.Shutdown())
    assert keeper.id in sim.cancelled
    sim.advance(29.75)
    assert (keeper.id, StopSignal.TERM) not in sim.signals
    sim.advance(0.25)  # its stop began with the shutdown: 30 s of grace
    assert (40.0, keeper.id, StopSignal.TERM) in sim.signal_times


def test_a_worker_that_crashes_during_shutdown_is_not_restarted():
    sim = _staged()
    sim.exit(sim.current("a", 0), 1)  # backing off when the shutdown starts
    sim.feed(ev.Shutdown())
    assert restart_at(sim, 0, "a") is None
    sim.exit(sim.current("b", 0), -11)  # b's stage has not begun, and b crashes
    sim.advance(3600)
    sim.exit_signalled()
    sim.exit_cancelled()
    assert sim.finished
    assert [s for s in sim.spawned if s.generation > 1] == []


# -- deadlines -----------------------------------------------------------------------------------
def test_sigterm_grace_after_the_stop_began_then_sigkill_kill_timeout_later():
    sim = _staged(orders={"a": 0})
    sim.advance(10.0)
    sim.feed(ev.Shutdown())
    worker = sim.current("a", 0)
    sim.advance(29.75)
    assert sim.signal_times == []
    sim.advance(0.25)
    assert sim.signal_times == [(40.0, worker.id, StopSignal.TERM)]
    sim.advance(4.75)
    assert len(sim.signal_times) == 1
    sim.advance(0.25)
    assert sim.signal_times[1] == (45.0, worker.id, StopSignal.KILL)
    sim.exit_signalled()
    assert sim.finished


def test_a_later_stage_counts_its_stop_timeout_from_when_its_own_stop_begins():
    sim = _staged(orders={"a": 0, "c": 1})
    sim.feed(ev.Shutdown())
    sim.advance(20.0)
    sim.exit(sim.current("c", 0), 0)  # a's stage starts 20 s in
    a = sim.current("a", 0)
    assert a.id in sim.cancelled
    sim.advance(29.75)  # not 30 s after the shutdown began: 30 s after a's own stop began
    assert sim.signal_times == []
    sim.advance(0.25)
    assert sim.signal_times == [(50.0, a.id, StopSignal.TERM)]
    sim.advance(5.0)
    assert sim.signal_times[1] == (55.0, a.id, StopSignal.KILL)


def test_a_dependency_stopped_after_its_slow_client_still_gets_its_whole_stop_timeout():
    sim = TimedSim(SupervisorConfig(shutdown_timeout=30.0, kill_timeout=5.0))
    sim.register("db", SpawnOptions(name="db", stop_timeout=2.0))
    sim.register("app", SpawnOptions(name="app", depends_on=("db",), stop_timeout=0.5))
    sim.begin()
    sim.ready_all()
    sim.ready_all()
    sim.feed(ev.Shutdown())
    app, db = sim.current("app", 0), sim.current("db", 0)
    sim.advance(0.5)
    assert sim.signal_times == [(0.5, app.id, StopSignal.TERM)]
    sim.exit(app, -15)  # the client is gone 0.5 s in: db's stop begins now
    assert db.id in sim.cancelled
    sim.advance(1.99)
    assert [t for t in sim.signal_times if t[1] == db.id] == []
    sim.advance(0.01)
    assert (2.5, db.id, StopSignal.TERM) in sim.signal_times


def test_a_service_stop_timeout_is_its_grace():
    sim = TimedSim(CONFIG)
    sim.register("a", SpawnOptions(name="a", stop_timeout=2.0))
    sim.register("b", SpawnOptions(name="b"))
    sim.begin()
    sim.feed(ev.Shutdown())
    sim.advance(2.0)
    assert sim.signal_times == [(2.0, sim.current("a", 0).id, StopSignal.TERM)]
    assert sim.spawned[0].stop_timeout == 2.0 and sim.spawned[1].stop_timeout == 30.0


@pytest.mark.parametrize("pause", [36.0, 1000.0, 10**6])
def test_sigkill_comes_kill_timeout_after_the_sigterm_even_after_a_long_pause(pause):
    sim = _staged(orders={"a": 0}, workers=2)
    sim.feed(ev.Shutdown())
    sim.jump(pause)  # the supervisor was stopped past both deadlines
    assert [(t, s) for t, _, s in sim.signal_times] == [(pause, StopSignal.TERM)] * 2
    sim.jump(4.75)
    assert len(sim.signal_times) == 2
    sim.jump(0.25)
    terms = {w: t for t, w, s in sim.signal_times if s is StopSignal.TERM}
    kills = {w: t for t, w, s in sim.signal_times if s is StopSignal.KILL}
    assert set(kills) == set(terms) == _ids(sim, "a")
    assert all(kills[w] - terms[w] == pytest.approx(5.0) for w in kills)


def test_a_stop_request_after_the_sigterm_does_not_postpone_the_sigkill():
    sim = _staged(orders={"a": 0, "keeper": 1})
    sim.feed(ev.StopService("a"))
    sim.advance(30.0)
    worker = sim.current("a", 0)
    assert _signalled(sim, StopSignal.TERM) == {worker.id}
    sim.feed(ev.Shutdown())  # a stop with a later deadline cannot move the SIGKILL
    sim.advance(5.0)
    assert _signalled(sim, StopSignal.KILL) == {worker.id}


# -- signals and fast shutdown -------------------------------------------------------------------
def test_sigterm_stops_gracefully_and_a_second_one_kills_everything_now():
    sim = _staged(workers=2)
    actions = sim.feed(ev.SignalReceived("SIGTERM"))
    assert ShutdownStarted(False) in actions
    assert not sim.signals
    sim.advance(1.0)
    actions = sim.feed(ev.SignalReceived("SIGTERM"))
    assert {a.worker for a in actions if isinstance(a, SignalWorker)
            and a.signal is StopSignal.KILL} == set(sim.state.workers)
    sim.advance(100.0)
    assert _signalled(sim, StopSignal.TERM) == set()  # the SIGTERM step is skipped
    sim.exit_signalled()
    sim.exit_cancelled()
    assert sim.finished


@pytest.mark.parametrize("second", ["SIGINT", "SIGTERM", "SIGQUIT"])
def test_sigint_then_any_stop_signal_kills_now(second):
    sim = _staged()
    sim.feed(ev.SignalReceived("SIGINT"))
    assert sim.state.phase is SupervisorPhase.STOPPING and not sim.signals
    sim.feed(ev.SignalReceived(second))
    assert _signalled(sim, StopSignal.KILL) == set(sim.state.workers)


def test_sigquit_is_a_fast_shutdown():
    sim = _staged()
    actions = sim.feed(ev.SignalReceived("SIGQUIT"))
    assert ShutdownStarted(True) in actions
    assert any(isinstance(a, CancelRoot) for a in actions)
    assert _signalled(sim, StopSignal.KILL) == set(sim.state.workers)


def test_fast_shutdown_kills_every_stage_at_once():
    sim = _staged(workers=2)
    actions = sim.feed(ev.Shutdown(status=7, fast=True))
    assert actions[0] == ShutdownStarted(True)
    assert {a.worker for a in actions if isinstance(a, SignalWorker)} == set(sim.state.workers)
    assert {a.service for a in actions if isinstance(a, CancelService)} == {"a", "b", "c"}
    sim.exit_signalled()
    assert sim.finished and sim.state.exit_status == 7
    reasons = {sim.state.services[n].lifecycle.termination_reason.kind for n in "abc"}
    assert reasons == {TerminationKind.CANCELLED}


def test_the_first_non_zero_status_wins():
    sim = _staged()
    sim.feed(ev.Shutdown(status=4))
    sim.feed(ev.Shutdown(status=9))
    assert sim.state.exit_status == 4


def test_shutdown_before_begin_stops_at_once():
    sim = Sim()
    sim.register("a", SpawnOptions(name="a"))
    assert sim.feed(ev.Shutdown(status=2)) == []
    assert sim.finished and sim.state.exit_status == 2 and not sim.spawned


def test_ttin_and_ttou_scale_every_service():
    sim = _staged(orders={"a": 0, "b": 0}, workers=2)
    sim.feed(ev.SignalReceived("SIGTTIN"))
    assert [sim.state.services[n].desired for n in "ab"] == [3, 3]
    assert len(sim.workers()) == 6
    sim.feed(ev.SignalReceived("SIGTTOU"))
    sim.feed(ev.SignalReceived("SIGTTOU"))
    assert [sim.state.services[n].desired for n in "ab"] == [1, 1]


# -- a service on request ------------------------------------------------------------------------
def test_stop_then_start_a_service():
    sim = _staged(orders={"a": 0, "keeper": 0}, workers=2)
    old = _ids(sim, "a")
    actions = sim.feed(ev.StopService("a"))
    assert {a.worker for a in actions if isinstance(a, CancelWorker)} == old
    assert CancelService("a", "service stopped") in actions
    assert service_phase(sim) is ServicePhase.STOPPING
    sim.exit_cancelled()
    assert service_phase(sim) is ServicePhase.TERMINATED
    assert sim.state.phase is SupervisorPhase.RUNNING  # a stop on request ends nothing else
    actions = sim.feed(ev.StartService("a"))
    assert OpenService("a") in actions
    assert len([a for a in actions if isinstance(a, Spawn)]) == 2
    sim.ready_all()
    assert service_phase(sim) is ServicePhase.RUNNING
    assert sim.feed(ev.StartService("a")) == []  # idempotent
    check_invariants(sim)


def test_starting_a_stopping_service_is_refused_not_dropped():
    sim = _staged(orders={"a": 0, "keeper": 0})
    sim.feed(ev.StopService("a"))
    with pytest.raises(JanusError, match="still stopping"):
        sim.feed(ev.StartService("a"))


def test_stopping_a_backing_off_slot_ends_it_at_once():
    sim = _staged(orders={"a": 0, "keeper": 0})
    sim.exit(sim.current("a", 0), 1)
    sim.feed(ev.StopService("a"))
    assert service_phase(sim) is ServicePhase.TERMINATED
    assert restart_at(sim, 0, "a") is None
    check_invariants(sim)


# -- commands the policy refuses -----------------------------------------------------------------
@pytest.mark.parametrize("event", [ev.StopService("nope"), ev.StartService("nope"),
                                   ev.RestartService("nope"), ev.Scale("nope", workers=2),
                                   ev.Scale("nope", delta=1), ev.Remove("nope")])
def test_a_command_on_an_unknown_service_raises(event):
    sim = _staged(orders={"a": 0})
    before = (len(sim.log), set(sim.state.workers))
    with pytest.raises(UnknownServiceError) as info:
        sim.feed(event)
    assert "nope" in str(info.value) and "a" in info.value.known
    assert (len(sim.log), set(sim.state.workers)) == before


@pytest.mark.parametrize("event", [ev.Scale("a", workers=11), ev.Scale("a", delta=9)])
def test_scaling_out_of_bounds_raises_a_config_error(event):
    sim = _staged(sim=TimedSim(SupervisorConfig(max_workers=10)), orders={"a": 0}, workers=2)
    with pytest.raises(ConfigError) as info:
        sim.feed(event)
    assert info.value.key == "workers"
    assert sim.state.services["a"].desired == 2 and len(sim.workers()) == 2


def test_registration_refuses_duplicates_and_oversized_pools():
    sim = Sim(SupervisorConfig(max_workers=4))
    sim.register("a", SpawnOptions(name="a"))
    with pytest.raises(ConfigError, match="already registered"):
        sim.register("a", SpawnOptions(name="a"))
    with pytest.raises(ConfigError, match="already registered"):
        sim.feed(ev.Register("a", SpawnOptions(name="a", workers=2)))
    with pytest.raises(ConfigError, match="max_workers"):
        sim.register("b", SpawnOptions(name="b", workers=5))
    assert list(sim.state.options) == ["a"] and sim.state.options["a"].workers == 1


def test_a_service_registered_while_running_starts_at_once():
    sim = _staged(orders={"a": 0})
    sim.register("late", SpawnOptions(name="late", workers=2))
    assert len(sim.workers("late")) == 2


def test_begin_runs_once():
    sim = _staged(orders={"a": 0})
    with pytest.raises(JanusError):
        sim.feed(ev.Begin())


def test_commands_after_shutdown_are_refused():
    sim = _staged(orders={"a": 0})
    sim.feed(ev.Shutdown())
    for event in (ev.Scale("a", workers=2), ev.RestartService("a")):
        with pytest.raises(JanusError):
            sim.feed(event)


def test_a_later_stage_with_no_live_worker_ends_terminated():
    sim = _staged(orders={"a": 0, "b": 1})
    sim.exit(sim.current("a", 0), 1)  # a backs off: no live worker
    sim.feed(ev.Shutdown())
    sim.exit_cancelled()  # b drains; a's stage is stopped in the same step
    assert sim.finished
    assert service_phase(sim, "a") is ServicePhase.TERMINATED
    assert sim.snapshot().service("a").service.phase is ServicePhase.TERMINATED
    assert sim.state.metrics.snapshot().active_services == 0
