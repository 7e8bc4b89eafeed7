"""The policy's announcements: one function per lifecycle happening, each emitting a
``Publish(LifecycleNotice)`` action at the point where the policy decided it.

Called from the decision points themselves (a worker started, became ready, exited; a restart
scheduled; a breaker tripped or closed; a service ended), so every notice carries what the
decision knew. Supervision groups announce their restarts with :func:`group_restarted`.
"""

from __future__ import annotations

from collections.abc import Iterable

from janus_mp.core.actions import Publish
from janus_mp.core.lifecycle import TerminationReason
from janus_mp.core.notices import LifecycleNotice, NoticeKind
from janus_mp.core.pool import ServiceState, SlotState, WorkerState
from janus_mp.core.step import Step


def _worker_notice(step: Step, kind: NoticeKind, worker: WorkerState, *,
                   exit_code: int | None = None, reason: TerminationReason | None = None,
                   message: str | None = None) -> None:
    step.emit(Publish(LifecycleNotice(
        kind, step.now, service=worker.service, slot=worker.slot, generation=worker.generation,
        pid=worker.pid, exit_code=exit_code,
        reason=reason.label if reason is not None else None,
        reason_text=str(reason) if reason is not None else None, message=message)))


def spawned(step: Step, worker: WorkerState) -> None:
    _worker_notice(step, NoticeKind.SPAWNED, worker)


def ready(step: Step, worker: WorkerState) -> None:
    _worker_notice(step, NoticeKind.READY, worker)


def exited(step: Step, worker: WorkerState, returncode: int, reason: TerminationReason) -> None:
    _worker_notice(step, NoticeKind.EXITED, worker, exit_code=returncode, reason=reason)


def unhealthy(step: Step, worker: WorkerState, detail: str) -> None:
    _worker_notice(step, NoticeKind.UNHEALTHY, worker, message=detail)


def backing_off(step: Step, service: ServiceState, slot: SlotState, delay: float) -> None:
    step.emit(Publish(LifecycleNotice(
        NoticeKind.BACKING_OFF, step.now, service=service.name, slot=slot.index,
        exit_code=slot.last_exit_code, delay=round(delay, 6),
        message=slot.lifecycle.last_error)))


def breaker_opened(step: Step, service: ServiceState, reason: TerminationReason) -> None:
    step.emit(Publish(LifecycleNotice(
        NoticeKind.BREAKER_OPENED, step.now, service=service.name, reason=reason.label,
        reason_text=str(reason))))


def breaker_closed(step: Step, service: ServiceState) -> None:
    step.emit(Publish(LifecycleNotice(NoticeKind.BREAKER_CLOSED, step.now,
                                      service=service.name)))


def service_terminated(step: Step, service: ServiceState) -> None:
    reason = service.lifecycle.termination_reason
    step.emit(Publish(LifecycleNotice(
        NoticeKind.SERVICE_TERMINATED, step.now, service=service.name,
        reason=reason.label if reason is not None else None,
        reason_text=str(reason) if reason is not None else None)))


def group_restarted(step: Step, group: str, members: Iterable[str], why: str) -> None:
    """The hook point for supervision groups: call it once per group restart decision, with
    the members it restarts (in start order) and why (the member that failed...)."""
    step.emit(Publish(LifecycleNotice(NoticeKind.GROUP_RESTARTED, step.now, group=group,
                                      members=tuple(members), message=why)))
