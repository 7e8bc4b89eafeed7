"""The exit path: one worker exit → classify → lifecycle → backoff / breaker → restart.

:func:`on_exit` reads top-down as a list of clauses, each one decision (as OTP's restart path
does); the first that applies ends it. A restart with a delay waits for a RESTART timer; one
without happens in the same step (both end in :func:`on_restart_due`). The circuit breaker is
per service: too many failures in its window open it (its workers stop); with
``half_open_after`` one trial worker starts later, and the pool comes back once that trial
stayed up for ``trial_period``.
"""

from __future__ import annotations

from janus_mp.core import announce, standby
from janus_mp.core.actions import LogLevel
from janus_mp.core.backoff import BreakerState, CircuitOpen, RetryAfter, decide_restart
from janus_mp.core.exits import ExitDecision, ExitKind, KillCause, classify_exit
from janus_mp.core.gates import hold_restart
from janus_mp.core.groups import member_broke, member_failed
from janus_mp.core.lifecycle import ServiceLifecycle, ServicePhase, TerminationReason
from janus_mp.core.pool import (
    ExitRecord,
    ServiceState,
    SlotState,
    SupervisorPhase,
    WorkerRole,
    WorkerState,
)
from janus_mp.core.replacing import advance_rolling, cancel_restart, promote
from janus_mp.core.step import Step
from janus_mp.core.stopping import begin_shutdown, stop_service
from janus_mp.core.timers import TimerKey, TimerKind
from janus_mp.core.workers import spawn, stop_worker


def on_exit(step: Step, worker: WorkerState, returncode: int, *,
            oom_killed: bool = False) -> None:
    state = step.state
    service = state.services[worker.service]
    del state.workers[worker.id]
    step.cancel_worker_timers(worker)
    if worker.exit_announced:  # decided when it announced its exit: now it is only gone
        service.retiring.remove(worker)
        return
    cause = worker.stop_cause
    if oom_killed and cause is None:  # the kernel killed it, not we: its own reason
        cause = KillCause.OOM_KILLED
    decision = classify_exit(returncode, service.exit_policy, cause)
    if worker.role is WorkerRole.STANDBY:  # it never served: no backoff, no breaker
        _record(step, worker, returncode, decision)
        standby.on_exit(step, service, worker)
        return
    # Decided first (a standby's promotion goes out at once, see Step), recorded after: the
    # record's log line, counters and notice keep their place before the decision's actions.
    mark = len(step.actions)
    _decide(step, service, worker, returncode, decision)
    with step.inserting_at(mark):
        _record(step, worker, returncode, decision)


def _decide(step: Step, service: ServiceState, worker: WorkerState, returncode: int,
            decision: ExitDecision) -> None:
    """What a worker's exit means for its slot: nothing, a restart, a successor, an end."""
    state = step.state
    if service.trial is worker:
        service.trial = None
        step.cancel(TimerKey(TimerKind.TRIAL, service.name))
    if worker in service.retiring:  # replaced or recycled: its successor serves already
        service.retiring.remove(worker)
        return
    slot = service.slots.get(worker.slot)
    if slot is None:
        return
    slot.last_exit_code = returncode
    if worker is slot.incoming:
        _incoming_exited(step, service, slot, decision)
        return
    if worker is not slot.current:
        return
    slot.current = None
    if slot.removed:
        _removed_slot_drained(step, service, slot)
    elif _ended_on_purpose(service, decision, state.phase):
        _end_on_purpose(step, service, slot, decision)
    elif decision.halt:
        _halt(step, service, slot, returncode, decision)
    elif slot.incoming is not None:
        _incoming_takes_over(step, service, slot, decision)
    elif not decision.restart:
        _end_slot(step, service, slot, decision)
    elif member_failed(step, service, slot, decision):
        pass  # its group restarts it (and others, by its strategy), or escalates
    elif decision.fixed_delay or not decision.failure:
        step.move(slot.lifecycle, ServicePhase.BACKING_OFF)
        slot.backoff.last_delay = service.backoff_config.clean_restart_delay
        schedule_restart(step, service, slot, slot.backoff.last_delay)
    else:
        slot_failed(step, service, slot, decision.reason)


def on_exit_announced(step: Step, worker: WorkerState, returncode: int) -> None:
    """The worker returned from its service with ``returncode`` and is tearing its process
    down: everything an exit decides is decided now (its replacement need not wait for the
    teardown), and the process drains as a retiring worker, stopped if its teardown hangs.
    Of the deaths by signal only fatal faults (SIGSEGV, SIGBUS, SIGABRT...) are announced,
    from the worker's fault handler; SIGKILL takes the exit path above."""
    if worker.exit_announced or worker.stop_cause is not None or \
            worker.role not in (WorkerRole.CURRENT, WorkerRole.INCOMING):
        return  # being stopped: the real exit decides, as for any stop
    service = step.state.services[worker.service]
    on_exit(step, worker, returncode)
    worker.exit_announced = True
    worker.role = WorkerRole.RETIRING
    step.state.workers[worker.id] = worker
    service.retiring.append(worker)
    # Its teardown is no stop: a brutal_kill service's worker gets the default grace for it.
    grace = step.config.shutdown_timeout if service.brutal_kill else service.grace(step.config)
    stop_worker(step, worker, KillCause.STOP_REQUESTED, step.now + grace)


def _record(step: Step, worker: WorkerState, returncode: int, decision: ExitDecision) -> None:
    uptime = step.now - worker.spawned_at
    step.state.metrics.record_termination(worker.service, decision.reason.label, uptime)
    level = LogLevel.WARNING if decision.failure else LogLevel.INFO
    generation = "" if worker.role is WorkerRole.STANDBY else f", gen {worker.generation}"
    step.log(level, f"{worker.place} (pid {worker.pid}{generation}) exited: {decision.reason}")
    step.state.recent_exits.append(ExitRecord(
        at=step.now, service=worker.service, worker=worker.slot, generation=worker.generation,
        pid=worker.pid, exit_code=returncode, reason=str(decision.reason),
        uptime_secs=round(uptime, 3), stack_dump=worker.stack_dump))
    announce.exited(step, worker, returncode, decision.reason)


def _ended_on_purpose(service: ServiceState, decision: ExitDecision,
                      phase: SupervisorPhase) -> bool:
    return service.stopping or phase is SupervisorPhase.STOPPING or \
        decision.kind in (ExitKind.STOPPED, ExitKind.REPLACED, ExitKind.RECYCLED)


def _end_on_purpose(step: Step, service: ServiceState, slot: SlotState,
                    decision: ExitDecision) -> None:
    incoming = slot.incoming
    if incoming is not None and not service.stopping and incoming.stop_cause is None and \
            slot.lifecycle.phase is not ServicePhase.CIRCUIT_OPEN:
        promote(step, service, slot, incoming)
    elif slot.lifecycle.phase is ServicePhase.CIRCUIT_OPEN and not service.stopping and \
            step.state.phase is SupervisorPhase.RUNNING:
        return  # stopped by its breaker: the slot waits for the half-open trial
    else:
        step.move(slot.lifecycle, ServicePhase.TERMINATED, decision.reason)


def _incoming_exited(step: Step, service: ServiceState, slot: SlotState,
                     decision: ExitDecision) -> None:
    slot.incoming = None
    if service.stopping or slot.removed:
        return
    if decision.failure:
        slot_failed(step, service, slot, decision.reason, WorkerRole.INCOMING)
    else:
        advance_rolling(step, service)  # it ended cleanly before taking over: move on


def _removed_slot_drained(step: Step, service: ServiceState, slot: SlotState) -> None:
    if slot.incoming is not None:
        return
    del service.slots[slot.index]
    if slot.index < service.desired and not service.stopping and \
            step.state.phase is SupervisorPhase.RUNNING:  # scaled back up meanwhile
        revived = service.slots[slot.index] = SlotState(
            slot.index, ServiceLifecycle(service.name, step.now))
        standby.fill(step, service, revived)


def _halt(step: Step, service: ServiceState, slot: SlotState, returncode: int,
          decision: ExitDecision) -> None:
    step.move(slot.lifecycle, ServicePhase.TERMINATED, decision.reason)
    step.log(LogLevel.ERROR, f"{service.name}[{slot.index}] exited with halt code "
                             f"{returncode}: shutting the supervisor down")
    begin_shutdown(step, returncode if 0 < returncode < 256 else 1)


def _incoming_takes_over(step: Step, service: ServiceState, slot: SlotState,
                         decision: ExitDecision) -> None:
    """The current worker died while its replacement was starting: that one takes over."""
    if decision.failure:
        slot.lifecycle.record_failure(str(decision.reason))
    incoming = slot.incoming
    assert incoming is not None
    if incoming.stop_cause is not None:  # being stopped too (a trip): let both drain
        _end_slot(step, service, slot, decision)
        return
    slot.current, slot.incoming = incoming, None
    incoming.role = WorkerRole.CURRENT
    slot.restarts += 1
    if slot.lifecycle.phase is ServicePhase.RUNNING and not incoming.ready:
        step.move(slot.lifecycle, ServicePhase.BACKING_OFF)
        step.move(slot.lifecycle, ServicePhase.STARTING)
    advance_rolling(step, service)


def _end_slot(step: Step, service: ServiceState, slot: SlotState,
              decision: ExitDecision) -> None:
    if decision.failure:
        slot.lifecycle.record_failure(str(decision.reason))
        service.end_reason = decision.reason
    step.move(slot.lifecycle, ServicePhase.TERMINATED, decision.reason)


def slot_failed(step: Step, service: ServiceState, slot: SlotState, reason: TerminationReason,
                role: WorkerRole = WorkerRole.CURRENT, *, at_once: bool = True) -> None:
    """A failure counts toward the slot's backoff and the service's breaker."""
    action = decide_restart(slot.backoff, service.breaker, service.backoff_config, step.now,
                            step.state.rng, slot.index)
    # A failed replacement leaves the slot's current worker serving: the slot keeps its phase.
    if role is WorkerRole.CURRENT and slot.lifecycle.phase in (ServicePhase.STARTING,
                                                               ServicePhase.RUNNING):
        step.move(slot.lifecycle, ServicePhase.BACKING_OFF)
    slot.lifecycle.record_failure(str(reason))
    match action:
        case CircuitOpen():
            trip(step, service, action)
        case RetryAfter(delay=delay):
            schedule_restart(step, service, slot, delay, role, at_once=at_once)


def on_spawn_failed(step: Step, worker: WorkerState, error: str) -> None:
    state = step.state
    del state.workers[worker.id]
    step.cancel_worker_timers(worker)
    service = state.services[worker.service]
    step.log(LogLevel.ERROR, f"{worker.place}: cannot start a worker: {error}")
    if worker.role is WorkerRole.STANDBY:
        standby.on_spawn_failed(step, service, worker)
        return
    slot = service.slots[worker.slot]
    if slot.current is worker:
        slot.current = None
    if slot.incoming is worker:
        slot.incoming = None
    if worker.stop_cause is not None or service.stopping or \
            step.state.phase is not SupervisorPhase.RUNNING:
        # Asked to stop before it could start (a trip or a stop came while its Spawn was
        # in flight): it ends like a stopped worker, and counts no failure.
        waiting = slot.lifecycle.phase is ServicePhase.CIRCUIT_OPEN and not service.stopping \
            and step.state.phase is SupervisorPhase.RUNNING
        if not slot.workers() and slot.lifecycle.phase.is_alive and not waiting:
            step.move(slot.lifecycle, ServicePhase.TERMINATED,
                      service.end_reason or service.stop_reason or TerminationReason.stopped())
        return
    if service.breaker.state is BreakerState.OPEN:  # tripped meanwhile: wait for half-open
        slot.lifecycle.record_failure(f"fork failed: {error}")
        if slot.lifecycle.phase in (ServicePhase.STARTING, ServicePhase.RUNNING,
                                    ServicePhase.BACKING_OFF):
            step.move(slot.lifecycle, ServicePhase.CIRCUIT_OPEN)
        return
    if slot.lifecycle.phase is ServicePhase.BACKING_OFF:
        step.move(slot.lifecycle, ServicePhase.STARTING)
    slot_failed(step, service, slot, TerminationReason.unrecoverable(f"fork failed: {error}"),
                worker.role, at_once=False)


def schedule_restart(step: Step, service: ServiceState, slot: SlotState, delay: float,
                     role: WorkerRole = WorkerRole.CURRENT, *, at_once: bool = True) -> None:
    """Restart ``slot`` after ``delay``; with no delay, in this very step (unless not
    ``at_once``): a turn in between would put the work done after a turn (the metrics fold,
    the orphan sweep) between an exit and its replacement. A failed fork is retried through
    the timer even so: retried in its own step, a fork the system keeps refusing would spin
    without the loop ever turning."""
    cancel_restart(step, service, slot)
    slot.restart_role = role
    if delay <= 0 and at_once:
        on_restart_due(step, service, slot)
        return
    step.schedule(TimerKey(TimerKind.RESTART, service.name, slot.index), step.now + delay)
    announce.backing_off(step, service, slot, delay)


def on_restart_due(step: Step, service: ServiceState, slot: SlotState) -> None:
    role, slot.restart_role = slot.restart_role, None
    if role is None or service.stopping or step.state.phase is not SupervisorPhase.RUNNING \
            or slot.removed or not service.breaker.allows_restarts:
        return
    if role is WorkerRole.INCOMING and slot.current is None:
        role = WorkerRole.CURRENT
    if role is WorkerRole.CURRENT and slot.current is not None:
        return
    if role is WorkerRole.INCOMING and slot.incoming is not None:
        return  # a newer replacement is already starting
    if role is WorkerRole.CURRENT and hold_restart(step, service, slot):
        return  # what it starts after is down: it waits in "starting" (see core.gates)
    if slot.lifecycle.phase is ServicePhase.BACKING_OFF:
        step.move(slot.lifecycle, ServicePhase.STARTING)
    if role is WorkerRole.CURRENT:
        slot.restarts += 1
        step.state.metrics.record_restart(service.name)
    standby.fill(step, service, slot, role)


# -- the circuit breaker -----------------------------------------------------------------------
def trip(step: Step, service: ServiceState, action: CircuitOpen) -> None:
    step.state.metrics.record_circuit_breaker_trip(service.name)
    reason = TerminationReason.circuit_breaker_open(action.failures, action.max_retries)
    step.log(LogLevel.ERROR, f"{service.name}: {reason}; stopping its workers")
    announce.breaker_opened(step, service, reason)
    step.cancel(TimerKey(TimerKind.TRIAL, service.name))
    service.trial = None
    service.rolling.clear()
    standby.retire_all(step, service, "circuit breaker open")
    grace_end = step.now + service.grace(step.config)
    for slot in service.slots.values():
        cancel_restart(step, service, slot)
        if slot.lifecycle.phase in (ServicePhase.STARTING, ServicePhase.RUNNING,
                                    ServicePhase.BACKING_OFF):
            step.move(slot.lifecycle, ServicePhase.CIRCUIT_OPEN)
        for worker in slot.workers():
            stop_worker(step, worker, KillCause.STOP_REQUESTED, grace_end, move_slot=False)
    due = service.breaker.half_open_due()
    # A critical service escalates at its first trip, half-open or not: the supervisor cannot
    # serve without it, and the orchestrator above restarts the whole (OTP's escalation).
    if due is None or service.options.critical:
        service.end_reason = reason
        stop_service(step, service, reason)
        if service.options.critical:
            step.log(LogLevel.ERROR, f"{service.name} is critical: shutting the supervisor "
                                     "down")
            begin_shutdown(step, 1)
        else:
            member_broke(step, service, str(reason))  # its group decides, as for a crash
        return
    step.log(LogLevel.WARNING, f"{service.name}: half-open trial in {due - step.now:.1f}s")
    step.schedule(TimerKey(TimerKind.HALF_OPEN, service.name), due)


def on_half_open_due(step: Step, service: ServiceState) -> None:
    if service.stopping or step.state.phase is not SupervisorPhase.RUNNING:
        return
    if any(s.workers() for s in service.slots.values()):
        # The tripped generation is still draining (it has its stop deadlines); the trial
        # starts the moment the last of it is gone (see policy.after_step).
        service.half_open_pending = True
        return
    trial = min((s for s in service.slots.values() if not s.removed),
                key=lambda s: s.index, default=None)
    if trial is None:
        return
    service.breaker.begin_half_open(step.now)
    step.log(LogLevel.INFO, f"{service.name}: circuit half-open: starting one trial worker")
    start_slot_again(step, service, trial)


def on_trial_due(step: Step, service: ServiceState) -> None:
    trial, service.trial = service.trial, None
    if trial is None or trial.id not in step.state.workers or service.stopping or \
            service.breaker.state is not BreakerState.HALF_OPEN:
        return
    service.breaker.close(step.now)
    announce.breaker_closed(step, service)
    step.log(LogLevel.INFO, f"{service.name}: trial worker stable: circuit closed, starting "
                            "the pool")
    for slot in service.slots.values():
        if not slot.removed and not slot.workers():
            start_slot_again(step, service, slot)
    standby.replenish(step, service)


def start_slot_again(step: Step, service: ServiceState, slot: SlotState) -> None:
    if slot.lifecycle.phase is ServicePhase.TERMINATED:
        slot.lifecycle = ServiceLifecycle(service.name, step.now)
    elif slot.lifecycle.phase in (ServicePhase.CIRCUIT_OPEN, ServicePhase.BACKING_OFF):
        step.move(slot.lifecycle, ServicePhase.STARTING)
    slot.restarts += 1
    step.state.metrics.record_restart(service.name)
    spawn(step, service, slot)
