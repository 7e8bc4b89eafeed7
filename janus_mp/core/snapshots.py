"""Frozen views of the state: what ``status``, ``/readyz``, ``/metrics`` and tests read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from janus_mp.core.lifecycle import ServiceLifecycleSnapshot, ServicePhase
from janus_mp.core.pool import ServiceState, SlotState, SupervisorState, WorkerRole
from janus_mp.core.tree import Tree


@dataclass(frozen=True)
class ServiceSnapshot:
    name: str
    service: ServiceLifecycleSnapshot
    workers: tuple[ServiceLifecycleSnapshot, ...]
    critical: bool = False
    #: Where the service's listeners are bound (ApiModuleAdapter), real ports included.
    listening: tuple[str, ...] = ()
    #: Standby workers: how many are asked for, and the pids of those parked (ready to be
    #: promoted) and still booting. Never part of ``ready``.
    standby_wanted: int = 0
    standby_parked: tuple[int, ...] = ()
    standby_booting: tuple[int, ...] = ()
    #: Why its slots wait in ``starting`` without a worker (depends_on, group order).
    waiting: str | None = None
    #: False for a service registered with ``autostart = false`` and not started since: it
    #: shows as terminated with no workers, and no readiness check waits for it.
    started: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "critical": self.critical, "started": self.started,
                **self.service.to_dict(),
                "listening": list(self.listening), "waiting": self.waiting,
                "standby": {"wanted": self.standby_wanted, "parked": list(self.standby_parked),
                            "booting": list(self.standby_booting)},
                "workers": [w.to_dict() for w in self.workers]}


@dataclass(frozen=True)
class GroupSnapshot:
    name: str
    strategy: str
    phase: str
    members: tuple[str, ...]
    restarts: int
    max_restarts: int
    within: float
    parent: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "strategy": self.strategy, "phase": self.phase,
                "members": list(self.members), "restarts": self.restarts,
                "max_restarts": self.max_restarts, "within": self.within,
                "parent": self.parent}


def group_snapshots(tree: Tree) -> tuple[GroupSnapshot, ...]:
    return tuple(
        GroupSnapshot(name=g.name, strategy=g.spec.strategy.value, phase=g.phase.value,
                      members=g.spec.members, restarts=g.restarts,
                      max_restarts=g.spec.max_restarts, within=g.spec.within,
                      parent=tree.group_of.get(g.name))
        for g in tree.groups.values())


@dataclass(frozen=True)
class SupervisorSnapshot:
    """Everything ``status``, ``/readyz`` and tests read, as plain data."""

    state: str
    pid: int
    uptime_secs: float
    exit_status: int
    services: tuple[ServiceSnapshot, ...]
    groups: tuple[GroupSnapshot, ...] = ()

    def service(self, name: str) -> ServiceSnapshot:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "pid": self.pid, "uptime_secs": self.uptime_secs,
                "exit_status": self.exit_status,
                "services": [s.to_dict() for s in self.services],
                "groups": [g.to_dict() for g in self.groups]}

    def group(self, name: str) -> GroupSnapshot:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)


def service_snapshot(service: ServiceState, now: float,
                     listening: tuple[str, ...] = (), waiting: str | None = None
                     ) -> ServiceSnapshot:
    breaker = service.breaker.state.value
    workers = tuple(
        slot.lifecycle.snapshot(
            now,
            worker=slot.index,
            generation=slot.generation,
            pids=tuple(w.pid for w in slot.workers() if w.pid is not None),
            last_exit_code=slot.last_exit_code,
            ready=int(slot.current is not None and slot.current.ready),
            desired=1,
            restarts=slot.restarts,
            breaker=breaker,  # the breaker is the service's: every slot row shows it
            backoff_delay=slot.backoff.last_delay,
        )
        for slot in sorted(service.slots.values(), key=lambda s: s.index)
        if not slot.removed
    )
    summary = service.lifecycle.snapshot(
        now,
        pids=tuple(w.pid for w in service.live_workers()
                   if w.pid is not None and w.role is not WorkerRole.STANDBY),
        generation=max((s.generation for s in service.slots.values()), default=0),
        ready=service.ready_count(),
        desired=service.desired,
        restarts=service.restarts(),
        breaker=breaker,
        backoff_delay=service.backoff_delay(),
        last_exit_code=_last_exit(service.slots.values()),
    )
    parked = tuple(w.pid for w in service.standby
                   if w.pid is not None and w.parked_at is not None and w.stop_cause is None)
    booting = tuple(w.pid for w in service.standby
                    if w.pid is not None and w.parked_at is None and w.stop_cause is None)
    return ServiceSnapshot(name=service.name, service=summary, workers=workers,
                           critical=service.options.critical, listening=listening,
                           standby_wanted=service.options.standby, standby_parked=parked,
                           standby_booting=booting, waiting=waiting)


def supervisor_snapshot(state: SupervisorState, now: float, pid: int,
                        listening: Mapping[str, tuple[str, ...]]) -> SupervisorSnapshot:
    return SupervisorSnapshot(
        state=state.phase.value,
        pid=pid,
        uptime_secs=(now - state.started_at) if state.started_at else 0.0,
        exit_status=state.exit_status,
        services=(*(service_snapshot(s, now, listening.get(s.name, ()),
                                     state.tree.waiting.get(s.name))
                    for s in state.services.values()),
                  *(_not_started(name) for name in state.options
                    if name not in state.services and name not in state.removed)),
        groups=group_snapshots(state.tree),
    )


def _not_started(name: str) -> ServiceSnapshot:
    """A service with ``autostart = false`` that `janus-mp start` has not started yet."""
    summary = ServiceLifecycleSnapshot(
        service_name=name, phase=ServicePhase.TERMINATED, start_count=0, total_failures=0,
        last_error="not started (autostart = false): `janus-mp start` starts it",
        cumulative_running_secs=0.0, age_secs=0.0, time_in_phase_secs=0.0,
        termination_reason=None)
    return ServiceSnapshot(name=name, service=summary, workers=(), started=False)


def _last_exit(slots: Iterable[SlotState]) -> int | None:
    codes = [s.last_exit_code for s in slots if s.last_exit_code is not None]
    return codes[-1] if codes else None
