"""A fake runtime for the pure policy: a fake clock, fake pids, timers in a Deadlines heap.

It does what janus_mp.runtime does with actions, minus the OS: Spawn answers WorkerStarted
(or SpawnFailed when ``fail_spawns`` is set), timers fire in deadline order as the clock
advances, ReadHeartbeat answers from ``heartbeats``, MeasureRss from ``rss``, ReadStackDump
from ``dumps`` (RunProbe and Publish are recorded in ``probes`` and ``notices``). Workers never
exit by themselves: a test says when one exits (``exit``), which is what makes every
interleaving reachable.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from janus_mp.core import events as ev
from janus_mp.core.actions import (
    Action,
    CancelTimer,
    CancelWorker,
    Log,
    MeasureRss,
    Publish,
    ReadHeartbeat,
    ReadStackDump,
    RunProbe,
    ScheduleTimer,
    SignalWorker,
    Spawn,
    StopSignal,
)
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from janus_mp.core.notices import LifecycleNotice
from janus_mp.core.policy import finished, handle, validate_registration
from janus_mp.core.pool import SupervisorState, WorkerState
from janus_mp.core.snapshots import SupervisorSnapshot, supervisor_snapshot
from janus_mp.core.timers import Deadlines


class Sim:
    def __init__(self, config: SupervisorConfig | None = None, seed: int = 0) -> None:
        self.state = SupervisorState(config or SupervisorConfig(), random.Random(seed))
        self.now = 0.0
        self.timers = Deadlines()
        self.next_pid = 1000
        self.fail_spawns: str | None = None
        self.heartbeats: dict[int, float] = {}
        self.rss: dict[int, int] = {}
        self.log: list[Action] = []          # every action, in order
        self.spawned: list[Spawn] = []
        self.signals: list[tuple[int, StopSignal]] = []
        self.cancelled: list[int] = []
        self.dumps: dict[int, str] = {}
        self.probes: list[RunProbe] = []
        self.notices: list[LifecycleNotice] = []

    # -- driving ---------------------------------------------------------------------------
    def feed(self, event: ev.Event) -> list[Action]:
        actions = handle(self.state, event, self.now)
        follow_ups: list[ev.Event] = []
        for action in actions:
            self.log.append(action)
            match action:
                case ScheduleTimer(key=key, at=at):
                    self.timers.schedule(key, at)
                case CancelTimer(key=key):
                    self.timers.cancel(key)
                case Spawn():
                    self.spawned.append(action)
                    if self.fail_spawns is not None:
                        follow_ups.append(ev.SpawnFailed(action.worker, self.fail_spawns))
                    else:
                        self.next_pid += 1
                        follow_ups.append(ev.WorkerStarted(action.worker, self.next_pid))
                case SignalWorker(worker=worker, signal=sig):
                    self.signals.append((worker, sig))
                case CancelWorker(worker=worker):
                    self.cancelled.append(worker)
                case ReadHeartbeat(worker=worker):
                    spawned_at = self.state.workers[worker].spawned_at \
                        if worker in self.state.workers else 0.0
                    follow_ups.append(ev.HeartbeatRead(worker,
                                                       self.heartbeats.get(worker, spawned_at)))
                case ReadStackDump(worker=worker):
                    follow_ups.append(ev.StackDumpRead(worker, self.dumps.get(worker, "")))
                case RunProbe():
                    self.probes.append(action)
                case Publish(notice=notice):
                    self.notices.append(notice)
                case MeasureRss(service=service, workers=workers):
                    follow_ups.append(ev.RssMeasured(
                        service, tuple((w, self.rss[w]) for w in workers if w in self.rss)))
        for follow_up in follow_ups:
            actions += self.feed(follow_up)
        return actions

    def register(self, name: str, options: SpawnOptions | None = None) -> None:
        options = options or SpawnOptions(name=name)
        validate_registration(self.state, name, options)
        self.feed(ev.Register(name, options))

    def begin(self) -> None:
        self.feed(ev.Begin())

    def advance(self, seconds: float, max_timers: int | None = None) -> int:
        """Move the clock, firing every timer due on the way at its own deadline; with
        ``max_timers``, fail instead of spinning when timers keep firing at one instant (the
        real loop would busy-wait). Returns how many timers fired."""
        end = self.now + seconds
        fired = 0
        while True:
            due = self.timers.next_deadline()
            if due is None or due > end:
                break
            self.now = max(self.now, due)
            for key in self.timers.pop_due(self.now):
                fired += 1
                assert max_timers is None or fired <= max_timers, \
                    f"timer storm at {self.now}: {key}"
                self.feed(ev.TimerDue(key))
        self.now = end
        return fired

    # -- workers ---------------------------------------------------------------------------
    def workers(self, service: str | None = None) -> list[WorkerState]:
        return [w for w in self.state.workers.values()
                if service is None or w.service == service]

    def current(self, service: str, slot: int) -> WorkerState:
        worker = self.state.services[service].slots[slot].current
        assert worker is not None, f"{service}[{slot}] has no current worker"
        return worker

    def ready(self, worker: WorkerState | int) -> None:
        self.feed(ev.WorkerReady(worker if isinstance(worker, int) else worker.id))

    def ready_all(self, service: str | None = None) -> None:
        for worker in self.workers(service):
            if not worker.ready:
                self.ready(worker)

    def exit(self, worker: WorkerState | int, returncode: int) -> None:
        self.feed(ev.WorkerExited(worker if isinstance(worker, int) else worker.id, returncode))

    def exit_signalled(self, returncode_for_term: int = -15) -> None:
        """Every worker that got a signal dies of it (SIGKILL: -9)."""
        for worker_id, sig in list(self.signals):
            if worker_id in self.state.workers:
                self.exit(worker_id, -9 if sig is StopSignal.KILL else returncode_for_term)

    def exit_cancelled(self, returncode: int = 0) -> None:
        """Every worker asked to stop cooperatively does so."""
        for worker_id in list(self.cancelled):
            if worker_id in self.state.workers:
                self.exit(worker_id, returncode)

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self) -> SupervisorSnapshot:
        return supervisor_snapshot(self.state, self.now, 1, {})

    def logs(self) -> list[str]:
        return [a.message for a in self.log if isinstance(a, Log)]

    @property
    def finished(self) -> bool:
        return finished(self.state)


def names(items: Iterable[object]) -> list[str]:
    return [type(i).__name__ for i in items]
