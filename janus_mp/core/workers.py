"""Decisions about one worker: start it, see it ready, watch it, recycle it, stop it.

Stopping escalates in loop time: cooperative (its cancellation node) → SIGTERM at ``term_at``
→ SIGKILL ``kill_timeout`` after the SIGTERM was actually sent, so no pause of the supervisor
can make the two signals arrive together.
"""

from __future__ import annotations

import math

from janus_mp.core import announce
from janus_mp.core.actions import (
    CancelWorker,
    LogLevel,
    MeasureRss,
    ReadHeartbeat,
    SignalWorker,
    Spawn,
    StopSignal,
)
from janus_mp.core.dumps import kill_after_dump
from janus_mp.core.exits import KillCause
from janus_mp.core.lifecycle import ServicePhase
from janus_mp.core.pool import ServiceState, SlotState, WorkerRole, WorkerState
from janus_mp.core.step import Step
from janus_mp.core.timers import TimerKey, TimerKind


def spawn(step: Step, service: ServiceState, slot: SlotState,
          role: WorkerRole = WorkerRole.CURRENT) -> WorkerState:
    state = step.state
    slot.generation += 1
    worker = WorkerState(id=state.new_worker_id(), service=service.name, slot=slot.index,
                         generation=slot.generation, role=role, spawned_at=step.now)
    state.workers[worker.id] = worker
    slot.backoff.record_start(step.now)
    if role is WorkerRole.INCOMING:
        slot.incoming = worker
    else:
        slot.current = worker
    step.emit(Spawn(worker.id, service.name, slot.index, slot.generation,
                    draw_max_requests(step, service), service.grace(step.config)))
    arm_start_timeout(step, service, worker)
    return worker


def draw_max_requests(step: Step, service: ServiceState) -> int | None:
    """This worker's recycle threshold: max_requests plus its own random jitter."""
    options = service.options
    if options.max_requests is None:
        return None
    return options.max_requests + step.state.rng.randint(0, options.max_requests_jitter)


def arm_start_timeout(step: Step, service: ServiceState, worker: WorkerState) -> None:
    if service.options.start_timeout is not None:
        step.schedule_worker(worker, TimerKind.START_TIMEOUT,
                             step.now + service.options.start_timeout)


def on_started(step: Step, worker: WorkerState, pid: int) -> None:
    worker.pid = pid
    step.state.metrics.record_spawn(worker.service)
    step.log(LogLevel.DEBUG, f"{worker.service}[{worker.slot}]: started pid {pid} "
                             f"(gen {worker.generation})")
    announce.spawned(step, worker)


def on_watchdog_due(step: Step, worker: WorkerState) -> None:
    worker.timers.discard(TimerKind.WATCHDOG)
    if worker.stop_cause is None:
        step.emit(ReadHeartbeat(worker.id))


def on_heartbeat(step: Step, worker: WorkerState, last: float) -> None:
    timeout = step.state.services[worker.service].options.watchdog_timeout
    if worker.stop_cause is not None or timeout is None:
        return
    last = max(last, worker.ready_at or last)
    due = last + timeout  # compared as computed: rescheduled at ``due``, it must fire there
    if step.now >= due:
        step.log(LogLevel.WARNING, f"{worker.label()}: no heartbeat for "
                                   f"{step.now - last:.1f}s: killing it")
        kill_after_dump(step, worker, KillCause.WATCHDOG)
    else:
        step.schedule_worker(worker, TimerKind.WATCHDOG, due)


def on_start_timeout(step: Step, worker: WorkerState) -> None:
    worker.timers.discard(TimerKind.START_TIMEOUT)
    if worker.ready or worker.stop_cause is not None:
        return
    step.log(LogLevel.WARNING, f"{worker.label()}: not ready after its start timeout: "
                               "killing it")
    kill_after_dump(step, worker, KillCause.START_TIMEOUT)


def on_rss_due(step: Step, service: ServiceState) -> None:
    if service.stopping or service.options.memory_limit is None:
        return
    watched = tuple(slot.current.id for slot in service.slots.values()
                    if slot.current is not None and slot.current.ready
                    and slot.current.stop_cause is None)
    step.emit(MeasureRss(service.name, watched))


def arm_rss_check(step: Step, service: ServiceState) -> None:
    key = TimerKey(TimerKind.RSS_CHECK, service.name)
    if service.options.memory_limit is None or service.stopping:
        step.cancel(key)
        return
    step.schedule(key, step.now + service.options.rss_check_interval)


def stop_worker(step: Step, worker: WorkerState, cause: KillCause, term_at: float, *,
                move_slot: bool = True) -> None:
    """Cooperative stop through the cancellation tree; SIGTERM at ``term_at`` (never, when it
    is infinite: the service's stop_timeout is "infinity"), or SIGKILL at once for a
    brutal_kill service. The slot of a current worker shows ``stopping`` unless
    ``move_slot`` is off (a tripped breaker keeps its slots ``circuit_open`` while their
    workers drain)."""
    if worker.stop_cause is None or worker.stop_cause in (KillCause.WATCHDOG,
                                                          KillCause.START_TIMEOUT):
        worker.stop_cause = worker.stop_cause or cause
    step.emit(CancelWorker(worker.id, "stop requested by the supervisor"))
    service = step.state.services.get(worker.service)
    if worker.role is WorkerRole.CURRENT and move_slot and service is not None:
        slot = service.slots.get(worker.slot)
        if slot is not None and slot.current is worker and slot.lifecycle.phase.is_alive:
            step.move(slot.lifecycle, ServicePhase.STOPPING)
    if service is not None and service.brutal_kill and not worker.exit_announced:
        kill_now(step, worker, worker.stop_cause or cause)  # OTP's brutal_kill: no grace
        return
    if worker.term_at is None or term_at < worker.term_at:
        worker.term_at = term_at
        if TimerKind.KILL not in worker.timers and not math.isinf(term_at):
            step.schedule_worker(worker, TimerKind.TERM, term_at)  # (KILL: SIGTERM went)


def on_term_due(step: Step, worker: WorkerState) -> None:
    worker.timers.discard(TimerKind.TERM)
    step.log(LogLevel.WARNING, f"{worker.label()}: still running: sending SIGTERM")
    step.emit(SignalWorker(worker.id, StopSignal.TERM))
    step.schedule_worker(worker, TimerKind.KILL, step.now + step.config.kill_timeout)


def on_kill_due(step: Step, worker: WorkerState) -> None:
    worker.timers.discard(TimerKind.KILL)
    step.log(LogLevel.WARNING, f"{worker.label()}: still running: sending SIGKILL")
    kill_after_dump(step, worker, None)


def kill_now(step: Step, worker: WorkerState, cause: KillCause) -> None:
    worker.stop_cause = cause
    step.cancel_worker_timer(worker, TimerKind.TERM)
    step.emit(SignalWorker(worker.id, StopSignal.KILL))
