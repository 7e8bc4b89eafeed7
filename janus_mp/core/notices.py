"""Lifecycle notices: what the supervisor tells the outside, one frozen record per happening.

:mod:`janus_mp.core.events` names the policy's *inputs*; these are part of its *output*: the
policy decides a worker was spawned, became ready, exited (with its reason and code), that a
slot backs off, a breaker opened or closed, a group restarted, a service terminated, and says
so with a ``Publish(notice)`` action (:mod:`janus_mp.core.announce` builds them). The runtime
fans them out to subscribers (the Python API, ``janus-mp events``, ``[hooks]``). ``at`` is on
the policy's clock; :meth:`LifecycleNotice.to_dict` turns it into wall-clock time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class NoticeKind(StrEnum):
    SPAWNED = "spawned"                        # a worker process started (pid known)
    READY = "ready"                            # ... and said it can serve
    EXITED = "exited"                          # ... and ended: reason and exit code
    UNHEALTHY = "unhealthy"                    # failed its health probe too often: replaced
    BACKING_OFF = "backing_off"                # a slot starts again after ``delay`` seconds
    BREAKER_OPENED = "breaker_opened"          # a service's circuit breaker tripped
    BREAKER_CLOSED = "breaker_closed"          # its half-open trial held: the pool comes back
    GROUP_RESTARTED = "group_restarted"        # a supervision group restarted members
    SERVICE_TERMINATED = "service_terminated"  # a service ended (stopped, completed, failed)
    TASK_FAILED = "task_failed"                # a pool's task: its worker died, timed out, poison


@dataclass(frozen=True)
class LifecycleNotice:
    kind: NoticeKind
    at: float
    service: str = ""
    slot: int | None = None
    generation: int | None = None
    pid: int | None = None
    exit_code: int | None = None
    #: The termination kind (``failed``, ``unhealthy``, ``watchdog_timeout``...) and its text.
    reason: str | None = None
    reason_text: str | None = None
    delay: float | None = None
    group: str | None = None
    members: tuple[str, ...] = ()
    message: str | None = None

    def to_dict(self, wall_offset: float = 0.0) -> dict[str, Any]:
        """JSON-safe, only the fields set; ``at`` moved to the wall clock (+ ``wall_offset``)."""
        data: dict[str, Any] = {"event": self.kind.value, "at": self.at + wall_offset}
        for key in ("service", "slot", "generation", "pid", "exit_code", "reason",
                    "reason_text", "delay", "group", "message"):
            value = getattr(self, key)
            if value is not None and value != "":
                data[key] = value
        if self.members:
            data["members"] = list(self.members)
        return data

    def environment(self, wall_offset: float = 0.0) -> dict[str, str]:
        """The notice as environment variables for a hook: JANUS_EVENT, JANUS_SERVICE, ..."""
        return {f"JANUS_{key.upper()}": _env_value(value)
                for key, value in self.to_dict(wall_offset).items()}


def _env_value(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)

