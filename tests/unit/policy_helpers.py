"""Small helpers the policy tests share: a started pool, timer and signal look-ups, fixed
random sources, and the invariants every test may check after a step."""

from __future__ import annotations

from collections import Counter

from janus_mp.core import events as ev
from janus_mp.core.actions import Action, ScheduleTimer, SignalWorker, StopSignal
from janus_mp.core.backoff import BackoffConfig
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from janus_mp.core.lifecycle import ServicePhase
from janus_mp.core.pool import WorkerRole
from janus_mp.core.timers import TimerKey, TimerKind
from tests.unit.policy_sim import Sim

#: Quick backoff, the breaker off (max_retries=0): restarts never stop.
NO_BREAKER = BackoffConfig(initial_delay=0.1, max_delay=1.0, max_retries=0, window=60.0)
#: Quick backoff, the breaker trips on the third failure within a minute and stays open.
FAST = BackoffConfig(initial_delay=0.1, max_delay=1.0, max_retries=3, window=60.0,
                     half_open_after=None)


class TopRandom:
    """Always the top of the range: every jittered delay is its cap."""

    def randint(self, a: int, b: int) -> int:
        return b

    def uniform(self, a: float, b: float) -> float:
        return b


class BottomRandom:
    """Always the bottom of the range: every jittered delay is zero."""

    def randint(self, a: int, b: int) -> int:
        return a

    def uniform(self, a: float, b: float) -> float:
        return a


class TimedSim(Sim):
    """A Sim that also records when (on its clock) each signal was sent."""

    def __init__(self, config: SupervisorConfig | None = None, seed: int = 0) -> None:
        super().__init__(config, seed)
        self.signal_times: list[tuple[float, int, StopSignal]] = []
        self._depth = 0

    def feed(self, event: ev.Event) -> list[Action]:
        # Follow-ups are fed recursively at the same time: record once, at the outermost call.
        before = len(self.log)
        self._depth += 1
        try:
            actions = super().feed(event)
        finally:
            self._depth -= 1
        if self._depth == 0:
            for action in self.log[before:]:
                if isinstance(action, SignalWorker):
                    self.signal_times.append((self.now, action.worker, action.signal))
        return actions

    def jump(self, seconds: float) -> None:
        """The supervisor was paused: the clock moves at once, then every due timer fires at
        the new time (as the real loop would see them after a stall)."""
        self.now += seconds
        while True:
            due = self.timers.pop_due(self.now)
            if not due:
                return
            for key in due:
                self.feed(ev.TimerDue(key))


def pool(workers: int = 1, *, sim: Sim | None = None, name: str = "a", ready: bool = True,
         keeper: bool = False, config: SupervisorConfig | None = None,
         **options: object) -> Sim:
    """A running supervisor with one service ``name`` of ``workers`` (all ready by default);
    ``keeper`` adds a second service so that ``name`` ending does not end the supervisor."""
    sim = sim or Sim(config)
    options.setdefault("backoff", NO_BREAKER)
    # Kills come at once, without the stack-dump wait (test_policy_dumps covers that wait).
    options.setdefault("stack_dump_timeout", None)
    sim.register(name, SpawnOptions(name=name, workers=workers, **options))  # type: ignore[arg-type]
    if keeper:
        sim.register("keeper", SpawnOptions(name="keeper"))
    sim.begin()
    if ready:
        sim.ready_all()
    return sim


def timer(sim: Sim, kind: TimerKind, service: str = "a", slot: int = -1,
          worker: int = -1) -> float | None:
    """The deadline of a pending timer, or None."""
    return sim.timers.deadline(TimerKey(kind, service, slot, worker))


def restart_at(sim: Sim, slot: int = 0, service: str = "a") -> float | None:
    return timer(sim, TimerKind.RESTART, service, slot)


def worker_timer(sim: Sim, kind: TimerKind, worker_id: int) -> float | None:
    worker = sim.state.workers[worker_id]
    return timer(sim, kind, worker.service, worker.slot, worker.id)


def scheduled(actions: list[Action], kind: TimerKind) -> list[ScheduleTimer]:
    return [a for a in actions if isinstance(a, ScheduleTimer) and a.key.kind is kind]


def slot_phase(sim: Sim, slot: int, service: str = "a") -> ServicePhase:
    return sim.state.services[service].slots[slot].lifecycle.phase


def service_phase(sim: Sim, service: str = "a") -> ServicePhase:
    return sim.state.services[service].lifecycle.phase


def terminated(sim: Sim, service: str = "a") -> dict[str, int]:
    """Terminations by reason label, from the metrics snapshot."""
    return dict(sim.state.metrics.snapshot().services[service].terminated_total)


def ready_count(sim: Sim, service: str = "a") -> int:
    return sim.state.services[service].ready_count()


def check_invariants(sim: Sim) -> None:
    """What must hold after every step, whatever happened."""
    state = sim.state
    placed: Counter[int] = Counter()
    for service in state.services.values():
        for slot in service.slots.values():
            if slot.current is not None:
                placed[slot.current.id] += 1
                assert slot.current.role is WorkerRole.CURRENT
            if slot.incoming is not None:
                placed[slot.incoming.id] += 1
                assert slot.incoming.role is WorkerRole.INCOMING
                assert slot.incoming is not slot.current
        for worker in service.retiring:
            placed[worker.id] += 1
        for worker in service.standby:
            placed[worker.id] += 1
            assert worker.role is WorkerRole.STANDBY and worker.slot == -1
    assert set(placed) == set(state.workers), "a worker is tracked but not placed, or vice versa"
    assert all(n == 1 for n in placed.values()), f"a worker is placed twice: {placed}"
    current = Counter((w.service, w.slot) for w in state.workers.values()
                      if w.role is WorkerRole.CURRENT)
    assert all(n == 1 for n in current.values()), f"a slot has two current workers: {current}"
    snap = sim.snapshot()
    metrics = state.metrics.snapshot()
    for svc in snap.services:
        rows = Counter(row.phase.value for row in svc.workers)
        rows["standby"] = len(state.services[svc.name].standby)
        gauge = {k: v for k, v in metrics.services[svc.name].workers_by_phase.items() if v}
        rows = +rows  # drop zero counts
        assert gauge == dict(rows), f"{svc.name}: gauge {gauge} != rows {dict(rows)}"
        for row in svc.workers:
            if row.phase is ServicePhase.STOPPING:
                assert row.pids, f"{svc.name}[{row.worker}] is stopping with no process"


def advance_bounded(sim: Sim, seconds: float, max_timers: int = 1000) -> int:
    """``sim.advance`` that fails on a timer storm instead of spinning."""
    return sim.advance(seconds, max_timers)
