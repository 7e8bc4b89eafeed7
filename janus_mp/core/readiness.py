"""Is the supervisor serving? The one answer that ``/readyz``, ``status --check`` and (with
``healthz_fails_on_given_up``) ``/healthz`` give, computed from a status reply (plain data).

A service serves when it is ``running`` with all its desired workers ready. Everything else —
starting, waiting for a dependency, backing off, breaker open or half-open, stopped by
``janus-mp stop``, ended by a failure — is named in ``not_ready``; the exceptions are a
service that ended on purpose (a one-shot whose worker completed: reason ``completed``), and
one not started on purpose (``started: false``: ``autostart = false`` and no start yet). A
service that ended by a failure and will not come back by itself is also *given up*: only a
restart of the supervisor (or ``janus-mp start``) brings it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Termination reasons that end a service on purpose: it is done, not missing.
_DONE = frozenset({"completed"})
#: Ended on an operator's or the supervisor's word: not serving, but nobody gave up on it.
_ASKED = frozenset({"stopped", "cancelled", "replaced"})


@dataclass(frozen=True)
class Readiness:
    """The verdict and its reasons, JSON-able through :meth:`to_dict`."""

    ready: bool
    state: str
    #: service name -> why it is not serving (phase, ready/desired, waiting, reason).
    not_ready: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Services ended by a failure that nothing will restart.
    given_up: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"ready": self.ready, "state": self.state,
                "not_ready": {name: dict(why) for name, why in self.not_ready.items()},
                "given_up": list(self.given_up)}

    def line(self, services: int, workers: int) -> str:
        """``status --check``'s one line."""
        if self.ready:
            return f"ready: {services} services, {workers} workers"
        parts = [] if self.state == "running" else [f"supervisor {self.state}"]
        parts += [f"{name} {_why(why)}" for name, why in self.not_ready.items()]
        return "not ready: " + ", ".join(parts)


def readiness(status: Mapping[str, Any]) -> Readiness:
    """The verdict on a status reply (``SupervisorSnapshot.to_dict()`` or the control
    socket's ``status``)."""
    not_ready: dict[str, dict[str, Any]] = {}
    given_up: list[str] = []
    for svc in _services(status):
        why = _not_serving(svc)
        if why is None:
            continue
        not_ready[svc["name"]] = why
        if why.get("reason") not in (None, *_ASKED) and svc["phase"] == "terminated":
            given_up.append(svc["name"])
    state = str(status.get("state"))
    return Readiness(ready=state == "running" and not not_ready, state=state,
                     not_ready=not_ready, given_up=tuple(given_up))


def _services(status: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    services = status.get("services") or ()
    return services if isinstance(services, Sequence) else ()


def _not_serving(svc: Mapping[str, Any]) -> dict[str, Any] | None:
    if not svc.get("started", True):  # autostart = false, not started yet: nobody waits for it
        return None
    phase, ready, desired = svc["phase"], svc["ready"], svc["desired"]
    reason = (svc.get("termination_reason") or {}).get("kind")
    if phase == "running" and ready >= desired and svc.get("breaker", "closed") == "closed":
        return None
    if phase == "terminated" and reason in _DONE:
        return None
    why: dict[str, Any] = {"phase": phase, "ready": ready, "desired": desired}
    if svc.get("breaker", "closed") != "closed":
        why["breaker"] = svc["breaker"]
    if svc.get("waiting"):
        why["waiting"] = svc["waiting"]
    if phase == "terminated":
        why["reason"] = reason
    return why


def _why(why: Mapping[str, Any]) -> str:
    text = f"{why['phase']} {why['ready']}/{why['desired']}"
    if why.get("breaker"):
        text += f" breaker {why['breaker']}"
    if why.get("reason"):
        text += f" ({why['reason']})"
    if why.get("waiting"):
        text += f" ({why['waiting']})"
    return text
