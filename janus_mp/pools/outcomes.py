"""A task's outcome as the exception its future gets (and as the JSON a hosted pool sends a
submitting worker instead of a pickle: the supervisor never pickles or unpickles task data)."""

from __future__ import annotations

import concurrent.futures
import json
from typing import Any

from janus_mp.core.task_messages import Outcome, WorkerExit
from janus_mp.errors import JanusError, PoisonTask, QueueFull, TaskTimeout, WorkerDied
from janus_mp.pools import payloads
from janus_mp.pools.frames import Kind


def settle_answer(future: concurrent.futures.Future[Any], kind: Kind, body: bytes) -> None:
    """Settle ``future`` from what its worker answered: the pickled RESULT, or the pickled
    exception it RAISED (a result that cannot be unpickled fails that future only)."""
    if kind is Kind.RAISED:
        future.set_exception(payloads.load_raised(body))
        return
    try:
        value = payloads.loads(body)
    except Exception as exc:
        future.set_exception(payloads.UnpicklableResult(
            f"the result could not be unpickled: {type(exc).__name__}: {exc}"))
        return
    future.set_result(value)


def error_for(outcome: Outcome | str, exit_: WorkerExit | None = None,
              deaths: int = 0) -> BaseException:
    """The exception for an outcome without a result (not DONE, not RAISED)."""
    if outcome in (Outcome.DIED, Outcome.POISON):
        how = "" if exit_ is None else (
            f" (killed by signal {exit_.signal}" if exit_.signal is not None
            else f" (exit code {exit_.code}") + \
            (", by the OOM killer)" if exit_.oom_killed else ")")
        if outcome == Outcome.POISON:
            cls: type[WorkerDied] = PoisonTask
            message = f"the task has killed {deaths} workers: it is not run again{how}"
        else:
            cls, message = WorkerDied, f"the worker running the task died{how}"
        return cls(message, exitcode=None if exit_ is None else exit_.code,
                   signal=None if exit_ is None else exit_.signal,
                   oom_killed=bool(exit_ and exit_.oom_killed), deaths=deaths)
    if outcome == Outcome.BROKEN:
        how = "" if exit_ is None else (f" (killed by signal {exit_.signal})"
                                        if exit_.signal is not None
                                        else f" (exit code {exit_.code})")
        return WorkerDied(f"the pool's workers die before they can take a task{how}: see "
                          f"the pool's log (a failing initializer?)",
                          exitcode=None if exit_ is None else exit_.code,
                          signal=None if exit_ is None else exit_.signal, deaths=0)
    if outcome == Outcome.TIMEOUT:
        return TaskTimeout("the task ran past its timeout: its worker was killed and replaced")
    if outcome == Outcome.CANCELLED:
        return concurrent.futures.CancelledError()
    if outcome == "queue_full":
        return QueueFull("the pool's queue is full (max_queued)")
    return JanusError(str(outcome))


def encode(outcome: Outcome | str, exit_: WorkerExit | None = None, deaths: int = 0) -> bytes:
    record: dict[str, Any] = {"outcome": str(outcome), "deaths": deaths}
    if exit_ is not None:
        record["returncode"] = exit_.returncode
        record["oom_killed"] = exit_.oom_killed
    return json.dumps(record).encode()


def decode(body: bytes) -> BaseException:
    try:
        record = json.loads(body)
        exit_ = None if record.get("returncode") is None else \
            WorkerExit(int(record["returncode"]), bool(record.get("oom_killed")))
        outcome = str(record["outcome"])
        known = {o.value for o in Outcome}
        return error_for(Outcome(outcome) if outcome in known else outcome, exit_,
                         int(record.get("deaths", 0)))
    except (ValueError, KeyError, TypeError) as exc:
        return JanusError(f"unreadable outcome from the supervisor: {exc}")
