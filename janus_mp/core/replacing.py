"""Replacing workers without losing capacity: rolling restarts, recycling, scaling.

A replacement starts an *incoming* worker beside the slot's current one; once it is ready it is
promoted and the old worker drains (reason ``replaced`` or ``recycled``). One replacement per
service is in flight at a time, so during a rolling restart the pool never drops below N-1
ready workers (usually it keeps N).
"""

from __future__ import annotations

from collections import deque

from janus_mp.core import gates, standby, startup
from janus_mp.core.actions import LogLevel
from janus_mp.core.backoff import BreakerState
from janus_mp.core.exits import KillCause
from janus_mp.core.lifecycle import ServiceLifecycle, ServicePhase
from janus_mp.core.pool import ServiceState, SlotState, SupervisorPhase, WorkerRole, WorkerState
from janus_mp.core.step import Step
from janus_mp.core.timers import TimerKey, TimerKind
from janus_mp.core.workers import arm_rss_check, stop_worker
from janus_mp.errors import JanusError


def promote(step: Step, service: ServiceState, slot: SlotState, incoming: WorkerState) -> None:
    """A replacement is ready: it becomes current; the old worker drains."""
    old = slot.current
    slot.current, slot.incoming = incoming, None
    incoming.role = WorkerRole.CURRENT
    slot.restarts += 1
    if slot.lifecycle.phase is not ServicePhase.RUNNING:
        step.move(slot.lifecycle, ServicePhase.RUNNING)
    if old is not None:
        cause = KillCause.RECYCLE if slot.recycling is old else KillCause.REPLACE
        old.role = WorkerRole.RETIRING
        service.retiring.append(old)
        stop_worker(step, old, cause, step.now + service.grace(step.config))
    slot.recycling = None
    advance_rolling(step, service)


def advance_rolling(step: Step, service: ServiceState) -> None:
    """Replace the next queued slot once no replacement is in flight."""
    if service.stopping or step.state.phase is not SupervisorPhase.RUNNING or \
            not service.breaker.allows_restarts:
        service.rolling.clear()  # nothing new starts while stopping or with the breaker open
        return
    if any(s.incoming is not None for s in service.slots.values()):
        return
    while service.rolling:
        slot = service.slots.get(service.rolling.popleft())
        if slot is None or slot.removed:
            continue
        if slot.current is None:  # nothing to replace (backing off): it restarts anyway
            continue
        if slot.restart_role is not None:  # a failed replacement is already due to retry
            continue
        if slot.recycling is not None and slot.recycling is not slot.current:
            slot.recycling = None  # the worker that asked is gone already
            continue
        standby.fill(step, service, slot, WorkerRole.INCOMING)
        return


def rolling_restart(step: Step, service: ServiceState) -> None:
    if service.stopping or step.state.phase is not SupervisorPhase.RUNNING:
        raise JanusError(f"service {service.name!r} is not running")
    service.rolling = deque(sorted(i for i, s in service.slots.items() if not s.removed))
    step.log(LogLevel.INFO, f"{service.name}: rolling restart of {len(service.rolling)} workers")
    # Standbys booted the old code and options: they are replaced too (and, until their
    # successors park, the rolling restart forks).
    standby.retire_all(step, service, "rolling restart")
    advance_rolling(step, service)


def scale(step: Step, service: ServiceState, workers: int) -> None:
    if service.stopping or step.state.phase is not SupervisorPhase.RUNNING:
        raise JanusError(f"service {service.name!r} is stopping; it cannot be scaled")
    service.desired = workers
    for index in sorted(i for i, s in service.slots.items() if not s.removed):
        if index >= workers:
            remove_slot(step, service, service.slots[index])
    fresh = []
    for index in range(workers):
        slot = service.slots.get(index)
        if slot is not None and not slot.removed:
            continue
        if slot is not None and slot.workers():
            continue  # still draining from an earlier scale-down; its exit revives it
        slot = service.slots[index] = SlotState(index, ServiceLifecycle(service.name, step.now))
        if service.breaker.allows_restarts:
            fresh.append(slot)
        else:
            step.move(slot.lifecycle, ServicePhase.CIRCUIT_OPEN)
    if fresh and gates.hold_fresh(step, service):
        fresh = []  # they wait for what the service starts after, as its other slots do
    startup.fill_fresh(step, service, fresh)
    step.log(LogLevel.INFO, f"{service.name}: scaled to {workers} workers")


def remove_slot(step: Step, service: ServiceState, slot: SlotState) -> None:
    slot.removed = True
    cancel_restart(step, service, slot)
    if slot.index in service.rolling:
        service.rolling.remove(slot.index)
    workers = slot.workers()
    if not workers:
        del service.slots[slot.index]
        return
    for worker in workers:
        stop_worker(step, worker, KillCause.STOP_REQUESTED,
                    step.now + service.grace(step.config))


def cancel_restart(step: Step, service: ServiceState, slot: SlotState) -> None:
    if slot.restart_role is not None:
        slot.restart_role = None
        step.cancel(TimerKey(TimerKind.RESTART, service.name, slot.index))


def on_ready(step: Step, worker: WorkerState) -> None:
    if worker.ready or worker.role is WorkerRole.STANDBY:
        return  # a standby is ready once promoted and running, never before
    state = step.state
    worker.ready_at = step.now
    service = state.services[worker.service]
    slot = service.slots.get(worker.slot)
    if slot is None or worker.role is WorkerRole.RETIRING:
        return  # a late "ready" from a worker already draining: nothing follows from it
    step.cancel_worker_timer(worker, TimerKind.START_TIMEOUT)
    if worker.promoted:
        standby.on_promoted_ready(step, service)
    options = service.options
    if options.watchdog_timeout is not None:
        step.schedule_worker(worker, TimerKind.WATCHDOG, step.now + options.watchdog_timeout)
    if options.max_lifetime is not None:
        jitter = state.rng.uniform(0, options.max_lifetime_jitter)
        step.schedule_worker(worker, TimerKind.LIFETIME, step.now + options.max_lifetime + jitter)
    if worker.role is WorkerRole.INCOMING:
        if not service.stopping and worker.stop_cause is None and slot.lifecycle.phase.is_alive:
            promote(step, service, slot, worker)
        return
    if worker.role is WorkerRole.CURRENT and slot.lifecycle.phase is ServicePhase.STARTING:
        step.move(slot.lifecycle, ServicePhase.RUNNING)
    if service.breaker.state is BreakerState.HALF_OPEN and service.trial is None:
        service.trial = worker
        step.schedule(TimerKey(TimerKind.TRIAL, service.name),
                      step.now + service.backoff_config.trial_period)


def on_rss_measured(step: Step, service: ServiceState,
                    samples: tuple[tuple[int, int], ...]) -> None:
    limit = service.options.memory_limit
    if limit is None or service.stopping:
        return
    measure = service.options.memory_measure
    for worker_id, used in samples:
        worker = step.state.workers.get(worker_id)
        if worker is not None and used > limit:
            recycle(step, worker, f"{measure} {used / 2**20:.0f} MiB > max_memory "
                                  f"{limit / 2**20:.0f} MiB")
    arm_rss_check(step, service)


def recycle(step: Step, worker: WorkerState, why: str) -> None:
    """Queue ``worker`` for replacement: a successor starts, and once it is ready the old
    worker drains (reason "recycled"). One replacement per service is in flight at a time, so
    the pool never has fewer than N-1 ready workers; usually it keeps N."""
    state = step.state
    service = state.services.get(worker.service)
    if service is None or service.stopping or state.phase is not SupervisorPhase.RUNNING:
        return
    slot = service.slots.get(worker.slot)
    if slot is None or slot.removed or slot.current is not worker or \
            worker.stop_cause is not None or slot.recycling is worker:
        return
    step.log(LogLevel.INFO, f"{worker.service}[{slot.index}] (pid {worker.pid}): "
                            f"recycling: {why}")
    slot.recycling = worker
    if slot.index not in service.rolling:
        service.rolling.append(slot.index)
    advance_rolling(step, service)
