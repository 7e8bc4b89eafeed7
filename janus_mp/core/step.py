"""One step of the policy: the state, the time of the event, and the actions decided so far.

Every lifecycle move goes through :meth:`Step.move`, which lets an illegal move raise: the
transition table is a guarantee, and a policy bug fails loudly (in tests first) instead of
becoming a log line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from janus_mp.core.actions import Action, CancelTimer, Log, LogLevel, Promote, ScheduleTimer
from janus_mp.core.config import SupervisorConfig
from janus_mp.core.lifecycle import ServiceLifecycle, ServicePhase, TerminationReason
from janus_mp.core.pool import SupervisorState, WorkerState
from janus_mp.core.timers import TimerKey, TimerKind


class Step:
    def __init__(self, state: SupervisorState, now: float, *,
                 urgent: Callable[[Action], None] | None = None) -> None:
        self.state = state
        self.now = now
        self.actions: list[Action] = []
        #: Performs a Promote the moment it is decided, while the step goes on (the record,
        #: notices and timers of the exit that caused it): a parked standby takes over a
        #: dead worker's slot without waiting for the rest of the decision. None: a Promote
        #: is listed in order with the other actions.
        self._urgent = urgent

    @property
    def config(self) -> SupervisorConfig:
        return self.state.config

    def emit(self, action: Action) -> None:
        if self._urgent is not None and isinstance(action, Promote):
            self._urgent(action)
            return
        self.actions.append(action)

    @contextmanager
    def inserting_at(self, mark: int) -> Iterator[None]:
        """Actions emitted inside go at position ``mark`` of the list, as if emitted then:
        bookkeeping done after a decision keeps its place before the decision's actions."""
        later, self.actions = self.actions, []
        try:
            yield
        finally:
            inserted, self.actions = self.actions, later
            self.actions[mark:mark] = inserted

    def log(self, level: LogLevel, message: str) -> None:
        self.actions.append(Log(level, message))

    # -- timers ----------------------------------------------------------------------------
    def schedule(self, key: TimerKey, at: float) -> None:
        self.actions.append(ScheduleTimer(key, at))

    def cancel(self, key: TimerKey) -> None:
        self.actions.append(CancelTimer(key))

    def schedule_worker(self, worker: WorkerState, kind: TimerKind, at: float) -> None:
        worker.timers.add(kind)
        self.schedule(TimerKey(kind, worker.service, worker.slot, worker.id), at)

    def cancel_worker_timer(self, worker: WorkerState, kind: TimerKind) -> None:
        if kind in worker.timers:
            worker.timers.discard(kind)
            self.cancel(TimerKey(kind, worker.service, worker.slot, worker.id))

    def cancel_worker_timers(self, worker: WorkerState) -> None:
        for kind in sorted(worker.timers):
            self.cancel(TimerKey(kind, worker.service, worker.slot, worker.id))
        worker.timers.clear()

    # -- lifecycles ------------------------------------------------------------------------
    def move(self, lifecycle: ServiceLifecycle, phase: ServicePhase,
             reason: TerminationReason | None = None) -> None:
        """Move ``lifecycle`` to ``phase`` unless it is there; an illegal move raises."""
        if lifecycle.phase is phase:
            return
        if phase is ServicePhase.TERMINATED:
            lifecycle.mark_terminated(self.now, reason or TerminationReason.stopped())
        elif phase is ServicePhase.STARTING and lifecycle.phase in (ServicePhase.BACKING_OFF,
                                                                    ServicePhase.CIRCUIT_OPEN):
            lifecycle.mark_starting(self.now)
        else:
            lifecycle.transition(phase, self.now)
