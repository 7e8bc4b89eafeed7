"""Stack dumps of stuck workers: ask before the SIGKILL, wait a bounded time, keep the answer.

    watchdog / start timeout / stop deadline ─► RequestStackDump + DUMP timer
        (the worker's faulthandler writes every thread's stack to its dump file)
    DUMP due ─► ReadStackDump ─► StackDumpRead(text) ─► log it under the worker's name, keep it
        on the worker (its ExitRecord shows it in status) ─► SIGKILL

The wait is a timer, never a sleep: the loop keeps serving everything else meanwhile. A worker
already being dumped is not asked twice; a fast shutdown kills at once (``workers.kill_now``).
"""

from __future__ import annotations

from janus_mp.core.actions import (
    LogLevel,
    ReadStackDump,
    RequestStackDump,
    SignalWorker,
    StopSignal,
)
from janus_mp.core.exits import KillCause
from janus_mp.core.pool import WorkerState
from janus_mp.core.step import Step
from janus_mp.core.timers import TimerKind


def kill_after_dump(step: Step, worker: WorkerState, cause: KillCause | None) -> None:
    """SIGKILL ``worker``, after asking for its stack dump if its service wants one.
    ``cause`` (when given) becomes why the supervisor ended it, as with ``kill_now``."""
    if cause is not None:
        worker.stop_cause = cause
    step.cancel_worker_timer(worker, TimerKind.TERM)
    if TimerKind.DUMP in worker.timers:
        return  # a dump is being waited for: the SIGKILL follows it
    service = step.state.services.get(worker.service)
    wait = service.options.stack_dump_timeout if service is not None else None
    if wait is None or worker.pid is None:
        step.emit(SignalWorker(worker.id, StopSignal.KILL))
        return
    step.emit(RequestStackDump(worker.id))
    step.schedule_worker(worker, TimerKind.DUMP, step.now + wait)


def on_dump_due(step: Step, worker: WorkerState) -> None:
    worker.timers.discard(TimerKind.DUMP)
    step.emit(ReadStackDump(worker.id))


def on_dump_read(step: Step, worker: WorkerState, text: str) -> None:
    text = text.strip()
    if text:
        worker.stack_dump = text
        step.log(LogLevel.WARNING, f"{worker.label()}: stack dump before SIGKILL "
                                   f"({worker.stop_cause or 'stop deadline'}):\n{text}")
    else:
        step.log(LogLevel.WARNING, f"{worker.label()}: wrote no stack dump in time")
    step.emit(SignalWorker(worker.id, StopSignal.KILL))
