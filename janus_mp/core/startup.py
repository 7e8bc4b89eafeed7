"""Filling many slots at once, a batch per loop turn.

Starting a pool (or scaling it up) forks one worker per slot, and a fork costs the supervisor
milliseconds. Forked all in one step, a pool of 1,000 would keep the loop from signals, control
requests and exits for seconds. Fresh slots are queued instead; each step fills at most
``FILL_BATCH`` of them and asks for a ``FILL`` timer due at once, so the loop serves whatever
arrived (a SIGTERM included) between batches. A queued slot waits in phase ``starting`` with no
worker, so stopping its service (or the supervisor) simply ends it; restarts of single slots
never queue.
"""

from __future__ import annotations

from janus_mp.core import standby
from janus_mp.core.lifecycle import ServicePhase
from janus_mp.core.pool import ServiceState, SlotState, SupervisorPhase
from janus_mp.core.step import Step
from janus_mp.core.timers import TimerKey, TimerKind

#: Slots filled per loop turn: 16 forks keep a turn well under a tenth of a second.
FILL_BATCH = 16
FILL_KEY = TimerKey(TimerKind.FILL)


def fill_fresh(step: Step, service: ServiceState, slots: list[SlotState]) -> None:
    """Give every slot of ``slots`` (new, empty, ``starting``) a worker, batch by batch; the
    first batch in this step."""
    queue = step.state.fill_queue
    for slot in slots:
        queue.append((service, slot.index))
    service.queued_fills += len(slots)
    on_fill_due(step)


def on_fill_due(step: Step) -> None:
    state = step.state
    queue = state.fill_queue
    filled = 0
    while queue and filled < FILL_BATCH:
        service, index = queue.popleft()
        if state.services.get(service.name) is not service:
            continue  # removed, or stopped and started again (a new pool, queued anew)
        service.queued_fills = max(0, service.queued_fills - 1)
        slot = service.slots.get(index)
        if slot is not None and _still_wanted(step, service, slot):
            standby.fill(step, service, slot)
            filled += 1
        if service.queued_fills == 0:
            standby.replenish(step, service)  # standbys come after the pool
    if queue:
        step.schedule(FILL_KEY, step.now)


def _still_wanted(step: Step, service: ServiceState, slot: SlotState) -> bool:
    """Nothing changed the slot while it waited (a stop, a scale-down, a trip, a fill)."""
    return not service.stopping and step.state.phase is SupervisorPhase.RUNNING and \
        not slot.removed and slot.current is None and slot.incoming is None and \
        slot.restart_role is None and slot.lifecycle.phase is ServicePhase.STARTING and \
        service.breaker.allows_restarts
