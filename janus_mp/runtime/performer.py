"""The performer: hands events to the policy and performs the actions it decides.

    OS happenings                 events                     actions
    ─────────────                 ──────                     ───────
    pidfd readable ─► reap ─────► WorkerExited ─┐
    pipe: b"r"/b"R" ────────────► WorkerReady   │
    deadline due ───────────────► TimerDue      ├─► core.policy.handle ─► Spawn, CancelWorker,
    signal ─────────────────────► SignalReceived│      (decides)          SignalWorker,
    API / control socket ───────► Register, ... ┘                         ScheduleTimer, Log ...
                                                                              │
    fork, send, kill, arm a deadline ◄──────── Performer.act (acts) ◄─────────┘

Events that actions answer with (a Spawn's WorkerStarted, a ReadHeartbeat's HeartbeatRead...)
wait in a queue and are handled before anything else happens; the events of one loop turn are
settled once, at its end (``turn``). Where the OS happenings come from: the supervisor's loop
and ``runtime/worker_plumbing.py`` (a worker's messages and its exit).
"""

from __future__ import annotations

import logging
import signal
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from janus_mp.core import events as ev
from janus_mp.core import policy
from janus_mp.core.actions import (
    Action,
    CancelRoot,
    CancelService,
    CancelTimer,
    CancelWorker,
    ForgetService,
    Log,
    MeasureRss,
    OpenService,
    Promote,
    Publish,
    ReadHeartbeat,
    ReleaseListeners,
    ScheduleTimer,
    ShutdownStarted,
    SignalWorker,
    Spawn,
)
from janus_mp.core.pool import SupervisorState
from janus_mp.runtime.lifelines import Lifelines
from janus_mp.runtime.listeners import ListenerSet
from janus_mp.runtime.loop import Loop
from janus_mp.runtime.memory import measure_workers
from janus_mp.runtime.processes import Processes
from janus_mp.runtime.specs import ServiceSpec
from janus_mp.runtime.tokens import ServiceTokens
from janus_mp.runtime.watchers import Watchers

log = logging.getLogger("janus_mp.supervisor")


class Performer:
    """Owns the feeding of the policy: its queue of answered events, the turn's settling and
    the batch's deferred log lines and notices. Acts through the parts it is handed."""

    def __init__(self, state: SupervisorState, clock: Callable[[], float], *, loop: Loop,
                 processes: Processes, specs: dict[str, ServiceSpec], tokens: ServiceTokens,
                 lifelines: Lifelines, listeners: ListenerSet, watchers: Watchers,
                 spawn: Callable[[Spawn], ev.Event],
                 shutdown_started: Callable[[], None]) -> None:
        """``spawn`` forks a worker and returns the event that answers it (WorkerStarted or
        SpawnFailed); ``shutdown_started`` runs the supervisor's shutdown hooks."""
        self._state = state
        self._clock = clock
        self._loop = loop
        self._processes = processes
        self._specs = specs
        self._tokens = tokens
        self._lifelines = lifelines
        self._listeners = listeners
        self._watchers = watchers
        self._spawn = spawn
        self._shutdown_started = shutdown_started
        self._queue: deque[ev.Event] = deque()
        self._feeding = False
        self._in_turn = False  # events of one loop turn are settled once, at its end
        self._unsettled = False
        self._deferred: list[Action] = []  # a batch's Log and Publish actions (see _flush)

    def feed(self, event: ev.Event) -> None:
        """Hand ``event`` to the policy and perform its actions; events that actions answer
        with (WorkerStarted, SpawnFailed...) are handled before anything else happens."""
        if self._feeding:
            self._queue.append(event)
            return
        settle_now = not self._in_turn  # in a turn, the turn's end settles (once)
        self._run(lambda: policy.handle(self._state, event, self._clock(), settle=settle_now,
                                        urgent=self.act), settle_now)
        self._unsettled = self._unsettled or not settle_now

    @contextmanager
    def turn(self) -> Iterator[None]:
        """One loop turn: the events fed inside it are settled once, when it ends."""
        self._in_turn = True
        try:
            yield
            self._settle()
        finally:
            self._in_turn = False

    def _settle(self) -> None:
        """After a turn's events: derived phases, shutdown stages, gauges, once (again only
        if what settling did was answered by events, a Spawn's WorkerStarted...)."""
        while self._unsettled:
            self._unsettled = self._run(lambda: policy.settle(self._state, self._clock()),
                                        settle=False)

    def _run(self, decide: Callable[[], list[Action]], settle: bool) -> bool:
        """Perform what ``decide`` returns, then the events its actions answered with; True
        if there were such events."""
        self._feeding = True
        try:
            for action in decide():
                self._perform(action)
            answered = bool(self._queue)
            while self._queue:
                for action in policy.handle(self._state, self._queue.popleft(), self._clock(),
                                            settle=settle, urgent=self.act):
                    self._perform(action)
            return answered
        finally:
            self._feeding = False
            self._queue.clear()
            self._flush()

    def _flush(self) -> None:
        """Write the batch's log lines and publish its notices. They wait only for the forks,
        promotions and timers that follow them (a synchronous log handler, a woken hook
        thread never delays a replacement) and go before anything else is seen to happen:
        "killing it" is in the log before the kill."""
        deferred, self._deferred = self._deferred, []
        for action in deferred:
            self.act(action)

    def _perform(self, action: Action) -> None:
        if isinstance(action, (Log, Publish)):
            self._deferred.append(action)  # after the forks and promotions: see _flush
            return
        if self._deferred and not isinstance(action, (Spawn, Promote, ScheduleTimer,
                                                      CancelTimer)):
            self._flush()  # a log line says why before anything else is seen to happen
        self.act(action)

    def act(self, action: Action) -> None:
        """Perform one action now (loop thread only)."""
        match action:
            case Spawn():
                self._queue.append(self._spawn(action))
            case Promote():
                process = self._processes.by_id.get(action.worker)
                if process is not None:
                    process.promote(action.slot, action.generation, action.max_requests,
                                    self._clock())
            case ScheduleTimer(key=key, at=at):
                self._loop.deadlines.schedule(key, at)
            case CancelTimer(key=key):
                self._loop.deadlines.cancel(key)
            case CancelWorker(worker=worker, reason=reason):
                process = self._processes.by_id.get(worker)
                if process is not None:
                    process.token.cancel(reason)
            case SignalWorker(worker=worker, signal=sig):
                process = self._processes.by_id.get(worker)
                if process is not None:
                    self._processes.signal(process, signal.Signals[sig.value])
            case Log(level=level, message=message):
                log.log(int(level), message)
            case ReadHeartbeat(worker=worker):
                process = self._processes.by_id.get(worker)
                if process is not None:
                    self._queue.append(ev.HeartbeatRead(worker, process.heartbeat.value))
            case MeasureRss():
                self._queue.append(ev.RssMeasured(action.service, measure_workers(
                    self._processes.by_id, action.workers,
                    self._specs[action.service].options.memory_measure)))
            case OpenService(service=name):
                self._tokens.open(name)
                self._lifelines.open(name)
            case CancelService(service=name, reason=reason):
                self._lifelines.cut(name)  # first: then no worker of it needs a message
                self._tokens.cancel(name, reason)
            case CancelRoot(reason=reason):
                self._lifelines.cut_all()
                self._tokens.cancel_root(reason)
            case ReleaseListeners(service=name):
                self._listeners.release(name)
            case ForgetService(service=name):
                self._specs.pop(name, None)
                self._tokens.forget(name)
                self._lifelines.forget(name)
            case ShutdownStarted():
                self._shutdown_started()
            case _:
                process = self._processes.by_id.get(getattr(action, "worker", -1))
                answer = self._watchers.perform(action, process, self._listeners.addresses)
                if answer is False:
                    raise TypeError(f"no way to perform {action!r}")
                if isinstance(answer, ev.Event):
                    self._queue.append(answer)
