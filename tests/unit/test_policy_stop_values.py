"""stop_timeout's OTP values on a fake clock: "brutal_kill" (SIGKILL at once) and "infinity"
(no signal ever), and how they are checked."""

from __future__ import annotations

import pytest

from janus_mp.core import events as ev
from janus_mp.core.actions import StopSignal
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from janus_mp.core.lifecycle import ServicePhase
from janus_mp.core.pool import SupervisorPhase
from janus_mp.errors import ConfigError
from tests.unit.policy_helpers import TimedSim, check_invariants, service_phase

CONFIG = SupervisorConfig(shutdown_timeout=10.0, kill_timeout=2.0)


def _sim(stop_timeout: object, workers: int = 2) -> TimedSim:
    sim = TimedSim(CONFIG)
    sim.register("a", SpawnOptions(name="a", workers=workers, stop_timeout=stop_timeout,  # type: ignore[arg-type]
                                   stack_dump_timeout=None))
    sim.register("keeper", SpawnOptions(name="keeper"))
    sim.begin()
    sim.ready_all()
    return sim


def test_brutal_kill_sigkills_at_once_on_a_stop_and_at_shutdown():
    sim = _sim("brutal_kill")
    ids = [w.id for w in sim.workers("a")]
    sim.feed(ev.StopService("a"))
    assert sorted(w for _, w, sig in sim.signal_times if sig is StopSignal.KILL) == sorted(ids)
    assert all(t == 0.0 for t, _, _ in sim.signal_times)
    assert not any(sig is StopSignal.TERM for _, _, sig in sim.signal_times)
    sim.exit_signalled()
    check_invariants(sim)
    assert service_phase(sim, "a") is ServicePhase.TERMINATED
    assert dict(sim.state.metrics.snapshot().services["a"].terminated_total) == {"stopped": 2}
    sim = _sim("brutal_kill")
    sim.feed(ev.Shutdown())
    killed = {w for _, w, sig in sim.signal_times if sig is StopSignal.KILL}
    assert killed == {w.id for w in sim.workers("a")}  # keeper is asked and waited for


def test_brutal_kill_applies_to_a_rolling_restart_too():
    sim = _sim("brutal_kill", workers=1)
    old = sim.current("a", 0)
    sim.feed(ev.RestartService("a"))
    sim.ready_all()  # the replacement is ready: the old worker is stopped, brutally
    assert (0.0, old.id, StopSignal.KILL) in sim.signal_times


def test_infinity_never_signals_a_stopping_worker():
    sim = _sim("infinity", workers=1)
    worker = sim.current("a", 0)
    sim.feed(ev.Shutdown())
    sim.advance(10 ** 7)
    assert worker.id in sim.cancelled  # asked, cooperatively
    assert [t for t in sim.signal_times if t[1] == worker.id] == []
    assert sim.state.phase is SupervisorPhase.STOPPING and not sim.finished
    sim.exit(worker, 0)
    sim.exit_cancelled()
    assert sim.finished


def test_a_second_sigterm_still_kills_an_infinity_worker():
    sim = _sim("infinity", workers=1)
    worker = sim.current("a", 0)
    sim.feed(ev.SignalReceived("SIGTERM"))
    sim.feed(ev.SignalReceived("SIGTERM"))
    assert (0.0, worker.id, StopSignal.KILL) in sim.signal_times


def test_the_worker_is_told_its_grace():
    assert _sim("infinity").spawned[0].stop_timeout == float("inf")
    assert _sim("brutal_kill").spawned[0].stop_timeout == 0.0


@pytest.mark.parametrize(("value", "stored"), [
    ("brutal_kill", "brutal_kill"), ("Brutal-Kill", "brutal_kill"), ("infinity", "infinity"),
    (float("inf"), "infinity"), (2, 2), (None, None)])
def test_stop_timeout_values(value, stored):
    assert SpawnOptions(stop_timeout=value).stop_timeout == stored


@pytest.mark.parametrize("value", ["forever", -1, float("nan"), float("-inf"), True, [1]])
def test_a_bad_stop_timeout_names_the_key_and_what_it_takes(value):
    with pytest.raises(ConfigError) as caught:
        SpawnOptions(stop_timeout=value)
    assert str(caught.value) == \
        'stop_timeout: must be seconds >= 0, "brutal_kill" or "infinity"'



def test_an_asgi_worker_drains_without_limit_under_infinity():
    from janus_mp.adapters.api import _graceful

    assert (_graceful(float("inf")), _graceful(30.0), _graceful(0.0)) == (None, 29, 1)
