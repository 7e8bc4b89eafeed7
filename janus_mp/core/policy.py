"""The supervision policy: ``handle(state, event, now) -> actions``.

Everything the supervisor decides happens here, and only here: which worker to start, stop,
signal or replace, when, and every lifecycle move on the way. The runtime feeds events in and
performs the actions it gets back, in order; it decides nothing. No OS, clock or randomness is
touched: ``now`` comes with each event and the random source lives in the state.

    event ─► handle ─► one handler per event type ─► after_step (derived phases, removed
                                                      services, shutdown stages, gauges)
                    └─► [actions]  (Spawn, CancelWorker, SignalWorker, ScheduleTimer, Log ...)

A command that makes no sense (unknown service, a scale while stopping) raises a JanusError
before anything changes; the runtime hands it to the caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from janus_mp.core import announce, standby, startup
from janus_mp.core import events as ev
from janus_mp.core.actions import Action, ForgetService, ReleaseListeners
from janus_mp.core.backoff import BreakerState
from janus_mp.core.config import AutoShutdown, SpawnOptions
from janus_mp.core.dumps import on_dump_due, on_dump_read
from janus_mp.core.gates import check_registration, release_waiting, start_service
from janus_mp.core.groups import (
    add_group,
    advance_groups,
    check_significant_members,
    service_ended,
)
from janus_mp.core.health import arm_probe, on_probe_due, on_probe_finished
from janus_mp.core.lifecycle import (
    ServicePhase,
    TerminationKind,
    TerminationReason,
)
from janus_mp.core.pool import ServiceState, SupervisorPhase, SupervisorState, WorkerRole
from janus_mp.core.replacing import on_ready, on_rss_measured, recycle, rolling_restart, scale
from janus_mp.core.restarts import (
    on_exit,
    on_exit_announced,
    on_half_open_due,
    on_restart_due,
    on_spawn_failed,
    on_trial_due,
)
from janus_mp.core.step import Step
from janus_mp.core.stopping import advance_shutdown, begin_shutdown, stop_service
from janus_mp.core.timers import TimerKind
from janus_mp.core.workers import (
    arm_rss_check,
    on_heartbeat,
    on_kill_due,
    on_rss_due,
    on_start_timeout,
    on_started,
    on_term_due,
    on_watchdog_due,
)
from janus_mp.errors import ConfigError, JanusError, UnknownServiceError


def handle(state: SupervisorState, event: ev.Event, now: float, *,
           settle: bool = True,
           urgent: Callable[[Action], None] | None = None) -> list[Action]:
    """Apply one event; return what the runtime must do, in order.

    With ``settle`` off, what follows from the new state as a whole (derived phases, the
    next shutdown stage, gauges: O(workers) work) waits for :func:`settle`, which a runtime
    calls once per batch of events (one loop turn) instead of once per event.
    With ``urgent``, a standby's Promote is handed to it the moment it is decided instead of
    being listed (see :class:`Step`).
    """
    step = Step(state, now, urgent=urgent)
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"no handler for {type(event).__name__}")
    handler(step, event)
    if settle:
        after_step(step)
    return step.actions


def settle(state: SupervisorState, now: float) -> list[Action]:
    """What follows from the state after a batch of unsettled events."""
    step = Step(state, now)
    after_step(step)
    return step.actions


def validate_registration(state: SupervisorState, name: str, options: SpawnOptions) -> None:
    """What a Register would refuse, checked before the runtime binds the service's sockets."""
    state.config.check_pool_size(options.workers)
    if options.standby > state.config.max_workers:
        raise ConfigError("standby", f"{options.standby} is more than max_workers "
                                     f"({state.config.max_workers})")
    if name in state.options:
        raise ConfigError("name", f"a service named {name!r} is already registered")
    if name in state.removed:
        raise JanusError(f"service {name!r} is still stopping; try again when it has stopped")
    check_registration(state, name, options)
    if options.significant and state.phase is not SupervisorPhase.IDLE and \
            state.config.auto_shutdown is AutoShutdown.NEVER:
        raise ConfigError("significant", "a service added while the supervisor runs is in no "
                                         "group, and the supervisor's auto_shutdown is never")


def finished(state: SupervisorState) -> bool:
    """Shutdown is complete as far as workers go (the runtime still reaps strays)."""
    return state.phase is SupervisorPhase.STOPPED or (
        state.phase is SupervisorPhase.STOPPING and not state.workers)


# -- worker events -----------------------------------------------------------------------------
def _worker_event(fn: Callable[..., None]) -> Callable[[Step, Any], None]:
    """Events about a worker the policy no longer tracks (a late message) change nothing."""
    def run(step: Step, event: Any) -> None:
        worker = step.state.workers.get(event.worker)
        if worker is not None:
            fn(step, worker, event)
    return run


def _timer_due(step: Step, event: ev.TimerDue) -> None:
    key = event.key
    state = step.state
    if key.worker >= 0:
        worker = state.workers.get(key.worker)
        if worker is None:
            return
        {TimerKind.START_TIMEOUT: on_start_timeout, TimerKind.WATCHDOG: on_watchdog_due,
         TimerKind.TERM: on_term_due, TimerKind.KILL: on_kill_due,
         TimerKind.LIFETIME: _lifetime_due, TimerKind.PROBE: on_probe_due,
         TimerKind.DUMP: on_dump_due}[key.kind](step, worker)
        return
    if key.kind is TimerKind.FILL:
        startup.on_fill_due(step)
        return
    service = state.services.get(key.service)
    if service is None:
        return
    if key.kind is TimerKind.RESTART:
        slot = service.slots.get(key.slot)
        if slot is not None:
            on_restart_due(step, service, slot)
    elif key.kind is TimerKind.HALF_OPEN:
        on_half_open_due(step, service)
    elif key.kind is TimerKind.TRIAL:
        on_trial_due(step, service)
    elif key.kind is TimerKind.RSS_CHECK:
        on_rss_due(step, service)
    elif key.kind is TimerKind.STANDBY:
        standby.on_timer_due(step, service)


def _ready(step: Step, worker: Any, _event: ev.WorkerReady) -> None:
    first = not worker.ready
    on_ready(step, worker)
    if first:
        announce.ready(step, worker)
        arm_probe(step, worker)


def _lifetime_due(step: Step, worker: Any) -> None:
    worker.timers.discard(TimerKind.LIFETIME)
    service = step.state.services[worker.service]
    why = f"max_lifetime {service.options.max_lifetime:g}s reached"
    if worker.role is WorkerRole.STANDBY:
        standby.retire(step, service, worker, why)  # its successor is forked once it is gone
    else:
        recycle(step, worker, why)


def _rss_measured(step: Step, event: ev.RssMeasured) -> None:
    service = step.state.services.get(event.service)
    if service is not None:
        on_rss_measured(step, service, event.samples)


# -- commands ----------------------------------------------------------------------------------
def _begin(step: Step, _event: ev.Begin) -> None:
    state = step.state
    if state.phase is not SupervisorPhase.IDLE:
        raise JanusError("run_until_shutdown() can run once per supervisor")
    check_significant_members(state, None)
    state.phase = SupervisorPhase.RUNNING
    state.started_at = step.now
    for name in state.start_order():
        if state.options[name].autostart:  # the others wait for a StartService
            _start_service(step, name)


def _register(step: Step, event: ev.Register) -> None:
    state = step.state
    validate_registration(state, event.name, event.options)
    state.options[event.name] = event.options
    state.metrics.register_service(event.name)
    if state.phase is SupervisorPhase.RUNNING and event.options.autostart:
        _start_service(step, event.name)


def _update(step: Step, event: ev.Update) -> None:
    state = step.state
    state.config.check_pool_size(event.options.workers)
    old = state.options.get(event.name)
    if old is None:
        _register(step, ev.Register(event.name, event.options))
        return
    state.options[event.name] = event.options
    service = state.services.get(event.name)
    if service is None or state.phase is not SupervisorPhase.RUNNING or service.stopping:
        return
    new = event.options
    service.options = new
    service.exit_policy = new.exit_policy()
    service.backoff_config = new.backoff_or(state.config.backoff)
    service.breaker.config = service.backoff_config
    if new.workers != old.workers:
        scale(step, service, new.workers)
    if event.code_changed or \
            dataclasses.replace(old, workers=new.workers, standby=new.standby) != new:
        rolling_restart(step, service)
    elif new.standby != old.standby:
        standby.resize(step, service)
    arm_rss_check(step, service)


def _remove(step: Step, event: ev.Remove) -> None:
    state = step.state
    if event.name not in state.options:
        raise UnknownServiceError(event.name, list(state.options))
    group = state.tree.group_of.get(event.name)
    if group is not None:
        raise JanusError(f"service {event.name!r} is a member of group {group!r}; groups are "
                         "fixed while the supervisor runs")
    del state.options[event.name]
    step.emit(ReleaseListeners(event.name))  # draining workers keep their own copies
    service = state.services.get(event.name)
    if service is None:
        step.emit(ForgetService(event.name))
        return
    state.removed.add(event.name)
    stop_service(step, service, TerminationReason.stopped(), by_request=True)


def _start(step: Step, event: ev.StartService) -> None:
    state = step.state
    if event.name not in state.options:
        raise UnknownServiceError(event.name, list(state.options))
    current = state.services.get(event.name)
    if current is not None and current.stopping and current.has_live_workers():
        raise JanusError(f"service {event.name!r} is still stopping; try again when it has "
                         "stopped")
    if current is not None and current.lifecycle.phase is not ServicePhase.TERMINATED:
        return  # already running: start is idempotent
    if state.phase is not SupervisorPhase.RUNNING:
        raise JanusError("the supervisor is shutting down")
    _start_service(step, event.name)


def _start_service(step: Step, name: str) -> None:
    start_service(step, name)  # held at its start gate while what it starts after is down


def _register_group(step: Step, event: ev.RegisterGroup) -> None:
    add_group(step.state, event.group)


def _stop(step: Step, event: ev.StopService) -> None:
    stop_service(step, _service(step.state, event.name), TerminationReason.stopped(),
                 by_request=True)


def _restart(step: Step, event: ev.RestartService) -> None:
    rolling_restart(step, _service(step.state, event.name))


def _scale(step: Step, event: ev.Scale) -> None:
    service = _service(step.state, event.name)
    if event.workers is not None:
        target = event.workers
    else:
        target = max(0, service.desired + (event.delta or 0))
    step.state.config.check_pool_size(target)
    scale(step, service, target)


def _shutdown(step: Step, event: ev.Shutdown) -> None:
    state = step.state
    if state.phase is SupervisorPhase.IDLE:
        state.phase = SupervisorPhase.STOPPED
        state.exit_status = event.status
        return
    begin_shutdown(step, event.status, fast=event.fast)


def _signal(step: Step, event: ev.SignalReceived) -> None:
    state = step.state
    if event.name in ("SIGTERM", "SIGINT"):  # a second one means: now
        begin_shutdown(step, 0, fast=state.phase is SupervisorPhase.STOPPING)
    elif event.name == "SIGQUIT":
        begin_shutdown(step, 0, fast=True)
    elif event.name in ("SIGTTIN", "SIGTTOU") and state.phase is SupervisorPhase.RUNNING:
        delta = 1 if event.name == "SIGTTIN" else -1
        for service in state.services.values():
            if not service.stopping:
                scale(step, service, min(state.config.max_workers,
                                         max(0, service.desired + delta)))


def _service(state: SupervisorState, name: str) -> ServiceState:
    service = state.services.get(name)
    if service is None or name in state.removed:
        raise UnknownServiceError(name, list(state.options))
    return service


# -- after every step: what follows from the new state -----------------------------------------
def after_step(step: Step) -> None:
    state = step.state
    _settle(step)
    if state.phase is SupervisorPhase.RUNNING and _all_ended_by_themselves(state):
        failed = any(s.end_reason is not None and
                     s.end_reason.kind is not TerminationKind.COMPLETED
                     for s in state.services.values())
        begin_shutdown(step, 1 if failed else 0)
        _settle(step)
    _publish_gauges(state)


def _settle(step: Step) -> None:
    """Half-open trials that waited for a drain, the next shutdown stage, then every
    service's phase (derived last: the steps before may stop services)."""
    state = step.state
    for service in list(state.services.values()):
        if service.half_open_pending and not any(s.workers() for s in service.slots.values()):
            service.half_open_pending = False
            on_half_open_due(step, service)
    if state.phase is SupervisorPhase.STOPPING:
        advance_shutdown(step)
    for service in list(state.services.values()):
        ended_before = service.lifecycle.phase is ServicePhase.TERMINATED
        _sync_service_phase(step, service)
        if not ended_before and service.lifecycle.phase is ServicePhase.TERMINATED:
            announce.service_terminated(step, service)
            service_ended(step, service)  # a significant member's end: auto_shutdown
        if service.name in state.removed and not service.has_live_workers() and \
                service.lifecycle.phase is ServicePhase.TERMINATED:
            del state.services[service.name]  # removed by a reload, now fully stopped
            state.removed.discard(service.name)
            step.emit(ForgetService(service.name))
    advance_groups(step)  # restart plans move on; then held slots whose gate opened start
    release_waiting(step)


def _sync_service_phase(step: Step, service: ServiceState) -> None:
    """Derive the service phase from its slots and move the service lifecycle there."""
    lifecycle = service.lifecycle
    if lifecycle.phase is ServicePhase.TERMINATED:
        return
    live = service.has_live_workers()
    if service.stopping:
        if live:
            step.move(lifecycle, ServicePhase.STOPPING)
        else:
            step.move(lifecycle, ServicePhase.TERMINATED,
                      service.end_reason or service.stop_reason or TerminationReason.stopped())
        return
    if service.breaker.state is not BreakerState.CLOSED:
        step.move(lifecycle, ServicePhase.CIRCUIT_OPEN)
        return
    slots = [s for s in service.slots.values() if not s.removed]
    if slots and not service.has_serving_workers() and \
            all(s.lifecycle.phase is ServicePhase.TERMINATED for s in slots):
        service.end_reason = service.end_reason or TerminationReason.completed()
        service.stopping = True
        if service.standby:  # nothing left to stand by for: it ends once they are gone
            standby.retire_all(step, service, "every worker of the service ended")
            step.move(lifecycle, ServicePhase.STOPPING)
            return
        step.move(lifecycle, ServicePhase.TERMINATED, service.end_reason)
        return
    phases = {s.lifecycle.phase for s in slots}
    if ServicePhase.BACKING_OFF in phases:
        target = ServicePhase.BACKING_OFF
    elif service.is_ready() or not slots:
        target = ServicePhase.RUNNING
    else:
        target = ServicePhase.STARTING
    if target is ServicePhase.STARTING and lifecycle.phase is ServicePhase.RUNNING:
        return  # scale-up or replacement under way: the service stays up
    if target is ServicePhase.RUNNING and lifecycle.phase in (ServicePhase.BACKING_OFF,
                                                               ServicePhase.CIRCUIT_OPEN):
        step.move(lifecycle, ServicePhase.STARTING)
    step.move(lifecycle, target)


def _all_ended_by_themselves(state: SupervisorState) -> bool:
    services = list(state.services.values())
    return bool(services) and not state.workers and all(
        s.lifecycle.phase is ServicePhase.TERMINATED and not s.stopped_by_request
        for s in services)


def _publish_gauges(state: SupervisorState) -> None:
    active = 0
    for service in state.services.values():
        if service.lifecycle.phase.is_alive:
            active += 1
        state.metrics.set_service_state(service.name, service.workers_by_phase(),
                                        service.backoff_delay())
    state.metrics.set_active_services(active)


_HANDLERS: dict[type[ev.Event], Callable[[Step, Any], None]] = {
    ev.WorkerStarted: _worker_event(lambda s, w, e: on_started(s, w, e.pid)),
    ev.SpawnFailed: _worker_event(lambda s, w, e: on_spawn_failed(s, w, e.error)),
    ev.WorkerReady: _worker_event(_ready),
    ev.WorkerParked: _worker_event(lambda s, w, e: standby.on_parked(s, w)),
    ev.RecycleAsked: _worker_event(lambda s, w, e: recycle(s, w, e.why)),
    ev.WorkerExited: _worker_event(lambda s, w, e: on_exit(s, w, e.returncode,
                                                         oom_killed=e.oom_killed)),
    ev.WorkerExiting: _worker_event(lambda s, w, e: on_exit_announced(s, w, e.returncode)),
    ev.HeartbeatRead: _worker_event(lambda s, w, e: on_heartbeat(s, w, e.last)),
    ev.TimerDue: _timer_due,
    ev.RssMeasured: _rss_measured,
    ev.ProbeFinished: _worker_event(lambda s, w, e: on_probe_finished(s, w, e.healthy,
                                                                      e.detail)),
    ev.StackDumpRead: _worker_event(lambda s, w, e: on_dump_read(s, w, e.text)),
    ev.Begin: _begin,
    ev.Register: _register,
    ev.RegisterGroup: _register_group,
    ev.Update: _update,
    ev.Remove: _remove,
    ev.StartService: _start,
    ev.StopService: _stop,
    ev.RestartService: _restart,
    ev.Scale: _scale,
    ev.Shutdown: _shutdown,
    ev.SignalReceived: _signal,
}
