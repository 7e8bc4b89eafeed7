"""Standby workers: started ahead of need, parked, and promoted into a slot instead of a fork.

A service with ``standby = K`` keeps K extra workers that have booted (service code loaded,
metrics initialised) and then wait, *parked*, without running ``run()``. When a slot needs a
worker — a restart that is due, a replacement for recycling or a rolling restart, a scale-up — a
parked standby is promoted with one message and runs at once; a new standby is forked once the
promoted one runs, off the critical path. Without a parked standby the slot forks, as it always
does.

Invariants: a standby belongs to no slot (``slot == -1``) until it is promoted, is never counted
as ready capacity, and its death touches no slot's backoff and no breaker. A standby that dies
while booting is replaced after a delay that doubles with each such death in a row (a service
whose code cannot even load must not fork-loop); one that dies parked is replaced at once.
Standbys are kept only while the service runs with its breaker closed.
"""

from __future__ import annotations

from janus_mp.core.actions import LogLevel, Promote, Spawn
from janus_mp.core.backoff import BreakerState
from janus_mp.core.exits import KillCause
from janus_mp.core.pool import ServiceState, SlotState, SupervisorPhase, WorkerRole, WorkerState
from janus_mp.core.step import Step
from janus_mp.core.timers import TimerKey, TimerKind
from janus_mp.core.workers import arm_start_timeout, draw_max_requests, spawn, stop_worker

#: The first wait before replacing a standby that died while booting, and the most it grows to.
BOOT_RETRY_FIRST = 1.0
BOOT_RETRY_MAX = 60.0
#: The longest a promoted standby's replacement waits for the promoted worker to be ready.
REFILL_AFTER = 1.0


def fill(step: Step, service: ServiceState, slot: SlotState,
         role: WorkerRole = WorkerRole.CURRENT) -> WorkerState:
    """Give ``slot`` a new worker in ``role``: a parked standby if there is one, else a fork."""
    standby = _parked(service)
    if standby is None:
        return spawn(step, service, slot, role)
    _promote(step, service, slot, standby, role)
    # Its successor is forked once the promoted worker runs (its READY), not now: a fork
    # costs the supervisor milliseconds of CPU that the promoted worker's first lines would
    # compete with. REFILL_AFTER bounds the wait for a service slow to say it is ready.
    if not service.standby_retry_pending:
        step.schedule(TimerKey(TimerKind.STANDBY, service.name), step.now + REFILL_AFTER)
    return standby


def on_promoted_ready(step: Step, service: ServiceState) -> None:
    """A promoted standby runs its service: now replace it."""
    if not service.standby_retry_pending:
        step.cancel(TimerKey(TimerKind.STANDBY, service.name))
    replenish(step, service)


def replenish(step: Step, service: ServiceState) -> None:
    """Start standbys until the service has as many as it asks for (parked or booting)."""
    if not _keeps_standbys(step, service) or service.standby_retry_pending:
        return
    while len(service.standby) < service.options.standby:
        _spawn_standby(step, service)


def on_parked(step: Step, worker: WorkerState) -> None:
    if worker.role is not WorkerRole.STANDBY or worker.parked_at is not None:
        return
    worker.parked_at = step.now
    service = step.state.services[worker.service]
    service.standby_boot_failures = 0
    lifetime = service.options.max_lifetime
    if lifetime is not None and worker.stop_cause is None:
        jitter = step.state.rng.uniform(0, service.options.max_lifetime_jitter)
        step.schedule_worker(worker, TimerKind.LIFETIME, step.now + lifetime + jitter)


def on_exit(step: Step, service: ServiceState, worker: WorkerState) -> None:
    """A standby ended: replace it (no backoff, no breaker: it never served)."""
    service.standby.remove(worker)
    if worker.stop_cause is not None or not _keeps_standbys(step, service):
        replenish(step, service)  # a retired one is replaced; a stopped service replaces none
        return
    if worker.parked_at is not None:
        step.log(LogLevel.WARNING, f"{service.name}: standby (pid {worker.pid}) died while "
                                   "parked: replacing it")
        replenish(step, service)
        return
    service.standby_boot_failures += 1
    delay = min(BOOT_RETRY_MAX, BOOT_RETRY_FIRST * 2 ** (service.standby_boot_failures - 1))
    step.log(LogLevel.WARNING, f"{service.name}: standby (pid {worker.pid}) died while "
                               f"booting: next standby in {delay:g}s")
    service.standby_retry_pending = True
    step.schedule(TimerKey(TimerKind.STANDBY, service.name), step.now + delay)


def on_spawn_failed(step: Step, service: ServiceState, worker: WorkerState) -> None:
    """The system refused a standby's fork: like a death while booting, retried later."""
    on_exit(step, service, worker)


def resize(step: Step, service: ServiceState) -> None:
    """``standby`` changed (a reload): retire the newest extras, or start the missing ones."""
    extra = len(service.standby) - service.options.standby
    for worker in reversed(service.standby):
        if extra <= 0:
            break
        if worker.stop_cause is None:
            retire(step, service, worker, "fewer standbys asked for")
            extra -= 1
    replenish(step, service)


def on_timer_due(step: Step, service: ServiceState) -> None:
    """A boot-death retry or a refill after a promotion is due."""
    service.standby_retry_pending = False
    replenish(step, service)


def retire(step: Step, service: ServiceState, worker: WorkerState, why: str) -> None:
    """Stop one standby (it is replaced once it is gone, if the service still keeps any)."""
    if worker.stop_cause is not None:
        return
    step.log(LogLevel.INFO, f"{service.name}: retiring standby (pid {worker.pid}): {why}")
    stop_worker(step, worker, KillCause.STOP_REQUESTED, step.now + service.grace(step.config))


def retire_all(step: Step, service: ServiceState, why: str) -> None:
    """Stop every standby: the service stops, its breaker opened, or its code changed."""
    for worker in list(service.standby):
        retire(step, service, worker, why)
    if service.standby_retry_pending:
        service.standby_retry_pending = False
        step.cancel(TimerKey(TimerKind.STANDBY, service.name))


# -- helpers -----------------------------------------------------------------------------------
def _keeps_standbys(step: Step, service: ServiceState) -> bool:
    return service.options.standby > 0 and not service.stopping and \
        step.state.phase is SupervisorPhase.RUNNING and \
        service.breaker.state is BreakerState.CLOSED


def _parked(service: ServiceState) -> WorkerState | None:
    for worker in service.standby:
        if worker.parked_at is not None and worker.stop_cause is None:
            return worker
    return None


def _spawn_standby(step: Step, service: ServiceState) -> None:
    state = step.state
    worker = WorkerState(id=state.new_worker_id(), service=service.name, slot=-1,
                         generation=0, role=WorkerRole.STANDBY, spawned_at=step.now)
    state.workers[worker.id] = worker
    service.standby.append(worker)
    step.emit(Spawn(worker.id, service.name, -1, 0, None, service.grace(step.config),
                    standby=True))


def _promote(step: Step, service: ServiceState, slot: SlotState, worker: WorkerState,
             role: WorkerRole) -> None:
    """The parked standby becomes ``slot``'s worker: from here it is that slot's new
    incarnation exactly as a fork would have been (start timeout, readiness, generation)."""
    service.standby.remove(worker)
    step.cancel_worker_timers(worker)  # keyed by slot -1: cancel before the slot changes
    slot.generation += 1
    worker.slot, worker.generation, worker.role = slot.index, slot.generation, role
    worker.promoted = True
    worker.spawned_at, worker.ready_at = step.now, None
    slot.backoff.record_start(step.now)
    if role is WorkerRole.INCOMING:
        slot.incoming = worker
    else:
        slot.current = worker
    step.state.metrics.record_promotion(service.name)
    step.emit(Promote(worker.id, service.name, slot.index, slot.generation,
                      draw_max_requests(step, service)))
    step.log(LogLevel.DEBUG, f"{service.name}[{slot.index}]: standby pid {worker.pid} "
                             f"promoted (gen {slot.generation})")
    arm_start_timeout(step, service, worker)
