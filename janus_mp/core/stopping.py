"""Stopping: a service on request, and the whole supervisor stage by stage.

Shutdown stops services in reverse ``start_order`` (and, within one, dependents and later group
members before what they start after: ``gates.shutdown_stages``), one stage after the previous
one drained. Each service's stop_timeout counts from the moment its own stop begins (its stage's
start), as OTP's shutdown time counts from the shutdown signal sent to that child: a database
stopped after its clients gets its whole budget however long they took. The overall bound is
the sum, over the stages, of each stage's longest stop_timeout + kill_timeout. The root of the
cancellation tree is cancelled with the last stage.
"""

from __future__ import annotations

from janus_mp.core import standby
from janus_mp.core.actions import CancelRoot, CancelService, LogLevel, ShutdownStarted
from janus_mp.core.exits import KillCause
from janus_mp.core.gates import shutdown_stages
from janus_mp.core.lifecycle import ServicePhase, TerminationReason
from janus_mp.core.pool import ServiceState, SupervisorPhase
from janus_mp.core.replacing import cancel_restart
from janus_mp.core.step import Step
from janus_mp.core.timers import TimerKey, TimerKind
from janus_mp.core.workers import kill_now, stop_worker


def stop_service(step: Step, service: ServiceState, reason: TerminationReason, *,
                 by_request: bool = False, term_at: float | None = None) -> None:
    if service.stopping:
        return
    service.stopping = True
    service.stop_reason = reason
    service.stopped_by_request = by_request
    service.rolling.clear()
    for kind in (TimerKind.HALF_OPEN, TimerKind.TRIAL, TimerKind.RSS_CHECK):
        step.cancel(TimerKey(kind, service.name))
    service.half_open_pending = False
    if term_at is None:
        term_at = step.now + service.grace(step.config)
    for slot in service.slots.values():
        cancel_restart(step, service, slot)
        if not slot.workers() and slot.lifecycle.phase.is_alive:
            # Nothing to wait for: the slot ends now (a "stopping" row with no process in
            # it would never leave that phase).
            step.move(slot.lifecycle, ServicePhase.TERMINATED,
                      service.end_reason or reason)
    # The service's node first: the runtime tells all its workers at once (one lifeline cut),
    # so the per-worker cancels that follow find them cancelled already.
    step.emit(CancelService(service.name, "service stopped"))
    for worker in service.live_workers():
        stop_worker(step, worker, KillCause.STOP_REQUESTED, term_at)


def begin_shutdown(step: Step, status: int, *, fast: bool = False) -> None:
    state = step.state
    if status and not state.exit_status:
        state.exit_status = status
    if state.phase is SupervisorPhase.STOPPING:
        if fast:
            kill_everything(step)
        return
    if state.phase is not SupervisorPhase.RUNNING:
        return
    state.phase = SupervisorPhase.STOPPING
    step.emit(ShutdownStarted(fast))
    step.log(LogLevel.INFO, f"{step.config.name}: shutting down" + (" (fast)" if fast else ""))
    state.shutdown_stages = shutdown_stages(state)
    for service in state.services.values():
        standby.retire_all(step, service, "shutdown")  # first: they serve nobody
        for slot in service.slots.values():
            cancel_restart(step, service, slot)
        for kind in (TimerKind.HALF_OPEN, TimerKind.TRIAL):
            step.cancel(TimerKey(kind, service.name))
        service.half_open_pending = False
    if fast:
        for service in state.services.values():
            stop_service(step, service, TerminationReason.cancelled())
        state.root_cancelled = True
        step.emit(CancelRoot("fast shutdown"))
        kill_everything(step)
    advance_shutdown(step)


def advance_shutdown(step: Step) -> None:
    """Stop every service of the current stage; move on once all of them have drained."""
    state = step.state
    while state.shutdown_stages:
        stage = state.shutdown_stages[0]
        services = [state.services[name] for name in stage if name in state.services]
        for service in services:
            if not service.stopping:  # one already stopping (stop, breaker) holds none back
                stop_service(step, service, TerminationReason.cancelled())
        if len(state.shutdown_stages) == 1 and not state.root_cancelled:
            state.root_cancelled = True
            step.emit(CancelRoot("supervisor shutdown"))
        if any(s.has_live_workers() for s in services):
            return  # the current stage is still draining
        state.shutdown_stages.pop(0)


def kill_everything(step: Step) -> None:
    for worker in step.state.workers.values():
        kill_now(step, worker, worker.stop_cause or KillCause.STOP_REQUESTED)
