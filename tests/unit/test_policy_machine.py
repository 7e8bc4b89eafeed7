"""A hypothesis state machine over the policy: workers get ready and exit with any code,
recycle, the pool restarts, scales, stops and starts, the clock jumps, the supervisor shuts
down — in any order. After every step the pool's invariants hold; a TransitionError (an
illegal lifecycle move) anywhere fails the run."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from janus_mp.core import events as ev
from janus_mp.core import startup
from janus_mp.core.actions import Action, Spawn
from janus_mp.core.backoff import BackoffConfig, BreakerState
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from janus_mp.core.lifecycle import TransitionError
from janus_mp.core.pool import SupervisorPhase, WorkerRole
from janus_mp.errors import JanusError, UnknownServiceError
from tests.unit.policy_helpers import advance_bounded, check_invariants
from tests.unit.policy_sim import Sim

SERVICES = ("a", "b")  # a: halt code 3, watchdog, breaker with(out) half-open; b: always,
#                         start timeout, max_lifetime, no halt code, one standby
CODES = (0, 1, 3, 78, -9)


class CountingSim(Sim):
    """Counts exits of known workers and successful starts, however they were fed."""

    def __init__(self, config: SupervisorConfig, seed: int) -> None:
        super().__init__(config, seed)
        self.exits = 0
        self.starts = 0

    def feed(self, event: ev.Event) -> list[Action]:
        worker = self.state.workers.get(getattr(event, "worker", -1))
        if isinstance(event, ev.WorkerExited) and worker is not None and \
                not worker.exit_announced:
            self.exits += 1
        if isinstance(event, ev.WorkerExiting) and worker is not None and \
                not worker.exit_announced and worker.stop_cause is None and \
                worker.role in (WorkerRole.CURRENT, WorkerRole.INCOMING):
            self.exits += 1  # decided (and counted) when announced
        if isinstance(event, ev.WorkerStarted) and event.worker in self.state.workers:
            self.starts += 1
        return super().feed(event)


class PolicyMachine(RuleBasedStateMachine):
    sim: CountingSim

    @initialize(seed=st.integers(0, 2**16), half_open=st.booleans())
    def start(self, seed: int, half_open: bool) -> None:
        # Batches of two: pools of 2-8 are filled over several turns, as 1,000 would be.
        self.batch, startup.FILL_BATCH = startup.FILL_BATCH, 2
        self.sim = CountingSim(SupervisorConfig(shutdown_timeout=10.0, kill_timeout=2.0,
                                                max_workers=8), seed)
        self.sim.register("a", SpawnOptions(
            name="a", workers=2, start_order=0, watchdog_timeout=20.0,
            backoff=BackoffConfig(initial_delay=0.1, max_delay=2.0, max_retries=3, window=30.0,
                                  cooldown=20.0, trial_period=3.0,
                                  half_open_after=5.0 if half_open else None)))
        self.sim.register("b", SpawnOptions(
            name="b", workers=3, standby=1, start_order=1, start_timeout=15.0, restart="always",
            max_lifetime=25.0, max_lifetime_jitter=5.0, halt_codes=frozenset(),
            force_restart_codes=frozenset({75}),
            backoff=BackoffConfig(initial_delay=0.1, max_delay=1.0, max_retries=6,
                                  window=20.0, half_open_after=8.0, trial_period=2.0)))
        self.sim.begin()
        self.rolling: dict[str, int] = {}  # service -> N, while a clean rolling restart runs
        self.stopping_from: int | None = None  # log index when the shutdown began

    # -- helpers ---------------------------------------------------------------------------
    def command(self, event: ev.Event) -> bool:
        """Feed a command; a refusal is fine (JanusError), a policy bug is not."""
        try:
            self.sim.feed(event)
        except (TransitionError, UnknownServiceError):
            raise
        except JanusError:
            return False
        return True

    def _pick(self, workers: list, index: int):  # type: ignore[no-untyped-def]
        workers = sorted(workers, key=lambda w: w.id)
        return workers[index % len(workers)]

    def _slots(self) -> list:  # type: ignore[type-arg]
        return [slot for service in self.sim.state.services.values()
                for slot in service.slots.values()]

    def _all_ready(self, name: str) -> bool:
        service = self.sim.state.services[name]
        active = service.active_slots()
        return bool(active) and not service.retiring and not service.stopping and \
            service.breaker.state is BreakerState.CLOSED and \
            all(s.current is not None and s.current.ready and s.incoming is None
                for s in active)

    # -- workers ---------------------------------------------------------------------------
    @precondition(lambda self: any(not w.ready for w in self.sim.state.workers.values()))
    @rule(index=st.integers(0, 50))
    def ready(self, index: int) -> None:
        worker = self._pick([w for w in self.sim.state.workers.values() if not w.ready], index)
        self.sim.ready(worker)

    @precondition(lambda self: any(not w.ready for w in self.sim.state.workers.values()))
    @rule()
    def all_ready(self) -> None:
        self.sim.ready_all()

    @precondition(lambda self: bool(self.sim.state.workers))
    @rule(index=st.integers(0, 50), code=st.sampled_from(CODES + (75, -15)))
    def exit(self, index: int, code: int) -> None:
        worker = self._pick(list(self.sim.state.workers.values()), index)
        service = self.sim.state.services[worker.service]
        if worker not in service.retiring and worker not in service.standby and \
                worker is not service.slots[worker.slot].incoming:  # (announced: retiring)
            self.rolling.pop(worker.service, None)  # a serving worker died: capacity may drop
        self.sim.exit(worker, code)

    @precondition(lambda self: any(w.parked_at is None for s in self.sim.state.services.values()
                                   for w in s.standby))
    @rule(index=st.integers(0, 50))
    def standby_parks(self, index: int) -> None:
        booting = [w for s in self.sim.state.services.values() for w in s.standby
                   if w.parked_at is None]
        self.sim.feed(ev.WorkerParked(self._pick(booting, index).id))

    @precondition(lambda self: bool(self.sim.state.workers))
    @rule(index=st.integers(0, 50), code=st.sampled_from((0, 1, 3, 78)))
    def announces_its_exit(self, index: int, code: int) -> None:
        """run() returned: the exit is decided now, the process drains as retiring."""
        worker = self._pick(list(self.sim.state.workers.values()), index)
        service = self.sim.state.services[worker.service]
        if worker.role is WorkerRole.CURRENT:
            self.rolling.pop(worker.service, None)
        self.sim.feed(ev.WorkerExiting(worker.id, code))
        if worker.id in self.sim.state.workers and worker.exit_announced:
            assert worker in service.retiring

    @precondition(lambda self: any(s.incoming is not None for s in self._slots()))
    @rule(index=st.integers(0, 50), code=st.sampled_from((1, -9, 0)))
    def replacement_exits(self, index: int, code: int) -> None:
        """Replacements are where the pool has most states at once: aim at them too."""
        incoming = [s.incoming for s in self._slots() if s.incoming is not None]
        self.sim.exit(self._pick(incoming, index), code)

    @precondition(lambda self: any(s.incoming is not None and not s.incoming.ready
                                   for s in self._slots()))
    @rule(index=st.integers(0, 50))
    def replacement_ready(self, index: int) -> None:
        incoming = [s.incoming for s in self._slots()
                    if s.incoming is not None and not s.incoming.ready]
        self.sim.ready(self._pick(incoming, index))

    @precondition(lambda self: bool(self.sim.state.workers))
    @rule(index=st.integers(0, 50))
    def recycle(self, index: int) -> None:
        worker = self._pick(list(self.sim.state.workers.values()), index)
        self.sim.feed(ev.RecycleAsked(worker.id, "max_requests"))

    @precondition(lambda self: bool(self.sim.state.workers))
    @rule(index=st.integers(0, 50))
    def heartbeat(self, index: int) -> None:
        worker = self._pick(list(self.sim.state.workers.values()), index)
        self.sim.heartbeats[worker.id] = self.sim.now

    @rule(error=st.sampled_from([None, None, "EAGAIN"]))
    def forks_fail(self, error: str | None) -> None:
        self.sim.fail_spawns = error

    # -- commands --------------------------------------------------------------------------
    @rule(name=st.sampled_from(SERVICES))
    def rolling_restart(self, name: str) -> None:
        clean = self._all_ready(name)
        if self.command(ev.RestartService(name)) and clean:
            self.rolling[name] = len(self.sim.state.services[name].active_slots())

    # Scaling and stop/start are one rule each (not one per flavour), so that they do not
    # crowd out the readiness and replacement rules.
    @rule(name=st.sampled_from(SERVICES), how=st.sampled_from(["workers", "delta", "signal"]),
          amount=st.integers(-2, 5))
    def scale(self, name: str, how: str, amount: int) -> None:
        if how == "signal":
            self.rolling.clear()
            self.command(ev.SignalReceived("SIGTTIN" if amount >= 0 else "SIGTTOU"))
            return
        self.rolling.pop(name, None)
        service = self.sim.state.services[name]
        before = service.desired
        if how == "workers":
            done = self.command(ev.Scale(name, workers=max(0, amount)))
            expected = max(0, amount)
        else:
            done = self.command(ev.Scale(name, delta=amount))
            expected = max(0, before + amount)  # applied to the size at that moment
        # a refused command changes nothing
        assert service.desired == (expected if done else before)

    @rule(name=st.sampled_from(SERVICES), start=st.booleans())
    def stop_or_start(self, name: str, start: bool) -> None:
        self.rolling.pop(name, None)
        self.command(ev.StartService(name) if start else ev.StopService(name))

    @rule(seconds=st.sampled_from([0.0, 0.05, 0.3, 1.0, 2.5, 5.0, 12.0, 40.0]))
    def advance(self, seconds: float) -> None:
        advance_bounded(self.sim, seconds, max_timers=2000)  # a timer storm fails, not hangs

    # Late in a run only (on the fake clock): a shutdown ends what the other rules can reach.
    @precondition(lambda self: self.sim.now >= 40.0)
    @rule(how=st.sampled_from(["shutdown", "fast", "SIGTERM", "SIGQUIT"]))
    def shutdown(self, how: str) -> None:
        if how.startswith("SIG"):
            self.command(ev.SignalReceived(how))
        else:
            self.command(ev.Shutdown(fast=how == "fast"))

    def teardown(self) -> None:
        startup.FILL_BATCH = getattr(self, "batch", startup.FILL_BATCH)

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def pool_is_consistent(self) -> None:
        check_invariants(self.sim)  # placement, one current per slot, gauge == rows

    @invariant()
    def every_exit_is_counted_once(self) -> None:
        metrics = self.sim.state.metrics.snapshot()
        assert metrics.terminated_total == self.sim.exits
        assert metrics.spawned_total == self.sim.starts

    @invariant()
    def a_clean_rolling_restart_keeps_n_minus_one_ready(self) -> None:
        state = self.sim.state
        for name, size in list(self.rolling.items()):
            service = state.services[name]
            if state.phase is not SupervisorPhase.RUNNING or service.stopping or \
                    service.breaker.state is not BreakerState.CLOSED:
                del self.rolling[name]  # a shutdown or a trip empties the pool on purpose
                continue
            assert service.ready_count() >= size - 1, \
                f"{name}: {service.ready_count()} ready of {size} during a rolling restart"
            if not service.rolling and all(s.incoming is None for s in service.slots.values()):
                del self.rolling[name]

    @invariant()
    def nothing_starts_once_the_shutdown_began(self) -> None:
        if self.sim.state.phase is SupervisorPhase.RUNNING:
            return
        if self.stopping_from is None:
            self.stopping_from = len(self.sim.log)
            return
        assert not any(isinstance(a, Spawn) for a in self.sim.log[self.stopping_from:])

    @invariant()
    def a_stopped_supervisor_with_no_workers_is_finished(self) -> None:
        state = self.sim.state
        if state.phase is SupervisorPhase.STOPPING and not state.workers:
            assert self.sim.finished
            assert all(not s.lifecycle.phase.is_alive for s in state.services.values())


TestPolicyMachine = PolicyMachine.TestCase
# Derandomized: the same sequences on every run, so the suite never flakes; no shrinking, so a
# failure costs seconds, not minutes (add Phase.shrink locally to minimise one).
TestPolicyMachine.settings = settings(
    max_examples=120, stateful_step_count=50, deadline=None, derandomize=True, database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
