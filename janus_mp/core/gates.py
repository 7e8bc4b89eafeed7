"""The start gate: a service's workers start only once what it starts after is up.

"What it starts after" is every service in its ``depends_on``, and, while a group it belongs to
is starting, the nearest member listed before it in that group that is still to start (OTP
starts a supervisor's children one after the other, skipping those it does not start; our
"init returned" is "every worker ready"). A closed gate holds the
service's slots in ``starting`` without a worker, the reason recorded in ``Tree.waiting`` (shown
by status and ``/readyz``); :func:`release_waiting`, run when the policy settles, starts them
the moment the gate opens. A restart (a RESTART deadline) passes the same gate, so a service
whose dependency is down waits for it instead of crash-looping against it.
"""

from __future__ import annotations

from janus_mp.core import startup
from janus_mp.core.actions import LogLevel, OpenService
from janus_mp.core.backoff import BreakerState
from janus_mp.core.config import SpawnOptions
from janus_mp.core.lifecycle import ServiceLifecycle, ServicePhase, TerminationKind
from janus_mp.core.ordering import find_cycle, order_edges, start_levels
from janus_mp.core.pool import ServiceState, SlotState, SupervisorPhase, SupervisorState
from janus_mp.core.step import Step
from janus_mp.core.workers import arm_rss_check
from janus_mp.errors import ConfigError


def start_service(step: Step, name: str) -> None:
    """A fresh start of a registered service: new state, its slots spawned, or held at the
    gate."""
    state = step.state
    options = state.options[name]
    step.emit(OpenService(name))
    service = ServiceState(name, options, options.backoff_or(state.config.backoff), step.now)
    state.services[name] = service
    reason = start_gate(state, name)
    slots = [SlotState(index, ServiceLifecycle(name, step.now))
             for index in range(service.desired)]
    service.slots = {slot.index: slot for slot in slots}
    if reason is None:
        state.tree.waiting.pop(name, None)
        startup.fill_fresh(step, service, slots)  # a batch per turn, then its standbys
    else:
        _wait(step, name, reason)
    arm_rss_check(step, service)


def hold_restart(step: Step, service: ServiceState, slot: SlotState) -> bool:
    """Before a slot restarts: True (and the slot waits in ``starting``) if the gate is
    closed."""
    reason = start_gate(step.state, service.name)
    if reason is None:
        return False
    if slot.lifecycle.phase is ServicePhase.BACKING_OFF:
        step.move(slot.lifecycle, ServicePhase.STARTING)
    _wait(step, service.name, reason)
    return True


def hold_fresh(step: Step, service: ServiceState) -> bool:
    """Before new slots (a scale-up) start: True (and they wait in ``starting`` with the
    others, released by :func:`release_waiting`) if the gate is closed."""
    reason = start_gate(step.state, service.name)
    if reason is None:
        return False
    _wait(step, service.name, reason)
    return True


def release_waiting(step: Step) -> None:
    """Start the held slots of every service whose gate opened (settling calls this)."""
    state = step.state
    waiting = state.tree.waiting
    for name in list(waiting):
        service = state.services.get(name)
        if service is None or service.stopping or state.phase is not SupervisorPhase.RUNNING:
            del waiting[name]
            continue
        reason = start_gate(state, name)
        if reason is not None:
            _wait(step, name, reason)
            continue
        del waiting[name]
        if not service.breaker.allows_restarts:
            continue
        held = [s for s in sorted(service.active_slots(), key=lambda s: s.index)
                if not s.workers() and s.restart_role is None
                and s.lifecycle.phase is ServicePhase.STARTING]
        if held:
            step.log(LogLevel.INFO, f"{name}: what it starts after is up: starting "
                                    f"{len(held)} worker(s)")
        for slot in held:
            if slot.generation:  # held on its way back from an exit: a restart
                slot.restarts += 1
                state.metrics.record_restart(name)
        startup.fill_fresh(step, service, held)


def start_gate(state: SupervisorState, name: str) -> str | None:
    """Why ``name`` may not start workers now, or None when it may."""
    options = state.options.get(name)
    if options is None:
        return None
    for need in options.depends_on:
        if not is_up(state.services.get(need)):
            return f"waiting for {need} ({_describe(state, need)})"
    tree = state.tree
    member = name
    for group in tree.ancestors(name):
        if group.starting:
            before = _started_before(state, group.spec.members, member)
            if before is not None and not member_settled(state, before):
                return f"waiting for {before} (group {group.name} starts its members in " \
                       "order)"
        member = group.name
    return None


def member_settled(state: SupervisorState, member: str) -> bool:
    """Every service of ``member`` is up, or will not start (so nothing waits for it)."""
    return all(is_up(state.services.get(s)) or will_not_start(state, s)
               for s in state.tree.services_under(member))


def will_not_start(state: SupervisorState, name: str) -> bool:
    """OTP's "child not to be started": stopped by hand, removed, or ended for good (a
    ``never`` member a group restart dropped, one whose start failed, one that ended with a
    no-restart code). Nothing will bring it up, so a later member must not wait for it."""
    if name not in state.options or name in state.removed:
        return True
    service = state.services.get(name)
    if service is None:
        return False  # not started yet: the supervisor's own start reaches it
    return service.stopped_by_request or service.lifecycle.phase is ServicePhase.TERMINATED


def _started_before(state: SupervisorState, members: tuple[str, ...],
                    member: str) -> str | None:
    """The nearest member listed before ``member`` that is still to be started (members
    that will not start are skipped, as OTP skips children it does not start)."""
    tree = state.tree
    for before in reversed(members[:members.index(member)]):
        if not all(will_not_start(state, s) for s in tree.services_under(before)):
            return before
    return None


def is_up(service: ServiceState | None) -> bool:
    """Every worker ready (a one-shot service that completed counts as up for good)."""
    if service is None:
        return False
    if service.end_reason is not None:
        return service.end_reason.kind is TerminationKind.COMPLETED
    if service.stopping or service.breaker.state is not BreakerState.CLOSED:
        return False
    return all(s.current is not None and s.current.ready for s in service.active_slots())


def check_registration(state: SupervisorState, name: str, options: SpawnOptions) -> None:
    """What the tree adds to a registration's checks: no clash with a group's name, no
    dependency cycle among the registered services."""
    if name in state.tree.groups:
        raise ConfigError("name", f"a group is named {name!r} too")
    if options.depends_on:
        graph = {name: list(options.depends_on)}  # first: the cycle is spelled from it
        graph |= {n: list(o.depends_on) for n, o in state.options.items() if n != name}
        cycle = find_cycle(graph)
        if cycle:
            raise ConfigError("depends_on", f"cycle {' -> '.join(cycle)}")


def shutdown_stages(state: SupervisorState) -> list[list[str]]:
    """Services to stop, stage by stage: highest ``start_order`` first, and within one
    ``start_order`` the services that start later (dependents, later group members) first."""
    levels: dict[str, int] = {}
    if state.tree.groups or any(o.depends_on for o in state.options.values()):
        depends = {n: [d for d in o.depends_on if d in state.options]
                   for n, o in state.options.items()}
        levels = start_levels(order_edges(
            {g.name: g.spec for g in state.tree.groups.values()}, depends))
    keys = {name: (service.options.start_order, levels.get(name, 0))
            for name, service in state.services.items()}
    return [[name for name, key in keys.items() if key == stage]
            for stage in sorted(set(keys.values()), reverse=True)]


def _wait(step: Step, name: str, reason: str) -> None:
    waiting = step.state.tree.waiting
    if waiting.get(name) != reason:
        waiting[name] = reason
        step.log(LogLevel.INFO, f"{name}: {reason}")


def _describe(state: SupervisorState, name: str) -> str:
    if name not in state.options:
        return "not registered"
    service = state.services.get(name)
    if service is None:
        return "not started"
    if name in state.tree.waiting:
        return "waiting itself"
    return service.lifecycle.phase.value
