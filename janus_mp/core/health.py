"""Active health probes: when to probe a worker, and what consecutive failures mean.

    ready ─► PROBE timer (interval) ─► RunProbe ─► (runtime, off the loop) ─► ProbeFinished
                 ▲                                                             │
                 └──────────────── healthy: count back to 0 ◄──────────────────┤
                                   failed: count + 1; at ``failures`` ─► stop, reason unhealthy

One probe per worker is in flight at a time: the next is scheduled only once the last one's
result came back, so a slow probe never piles up. A worker whose last probe failed does not
count as ready (``WorkerState.serving``): /readyz shows it while it is given its chances. The
replacement is a failure like a watchdog kill: it counts in backoff, the breaker and the
``unhealthy`` termination metric. The stop is cooperative first (its cancellation node, then
SIGTERM after the service's stop_timeout), with the slot kept in its phase.
"""

from __future__ import annotations

from janus_mp.core import announce
from janus_mp.core.actions import LogLevel, RunProbe
from janus_mp.core.exits import KillCause
from janus_mp.core.pool import WorkerRole, WorkerState
from janus_mp.core.step import Step
from janus_mp.core.timers import TimerKind
from janus_mp.core.workers import stop_worker


def arm_probe(step: Step, worker: WorkerState) -> None:
    """Start probing a worker that just became ready (if its service has a probe)."""
    service = step.state.services.get(worker.service)
    if service is None or service.options.health is None or worker.stop_cause is not None or \
            worker.role is WorkerRole.RETIRING or worker.id not in step.state.workers:
        return
    step.schedule_worker(worker, TimerKind.PROBE, step.now + service.options.health.interval)


def on_probe_due(step: Step, worker: WorkerState) -> None:
    worker.timers.discard(TimerKind.PROBE)
    check = step.state.services[worker.service].options.health
    if check is None or worker.stop_cause is not None:
        return
    step.emit(RunProbe(worker.id, worker.slot, worker.pid, check))


def on_probe_finished(step: Step, worker: WorkerState, healthy: bool, detail: str) -> None:
    service = step.state.services[worker.service]
    check = service.options.health
    if check is None or worker.stop_cause is not None:
        return
    if healthy:
        if worker.probe_failures:
            step.log(LogLevel.INFO, f"{worker.label()}: health probe passes again")
        worker.probe_failures = 0
    else:
        worker.probe_failures += 1
        step.log(LogLevel.WARNING, f"{worker.label()}: health probe failed "
                                   f"({worker.probe_failures}/{check.failures}): {detail}")
        if worker.probe_failures >= check.failures:
            step.log(LogLevel.WARNING, f"{worker.label()}: unhealthy: replacing it")
            announce.unhealthy(step, worker, detail)
            stop_worker(step, worker, KillCause.UNHEALTHY,
                        step.now + service.grace(step.config), move_slot=False)
            return
    step.schedule_worker(worker, TimerKind.PROBE, step.now + check.interval)
