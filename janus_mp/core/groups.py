"""Group decisions: a member's failure → the group's strategy → a restart plan, or escalation.

OTP's supervisor, with services as children:

- A member *fails* when one of its workers exits in a way its restart policy would restart
  (the exits a stop, a shutdown or a replacement cause are not failures of the group).
- ``one_for_one``: the service restarts on its own, with its own backoff and breaker, as a
  service in no group does; the restart counts toward the group's intensity.
  ``one_for_all`` / ``rest_for_one``: the failed member and every other member (or the ones
  listed after it) are stopped, last first, each once the next has drained, and then started
  again in list order, each once the previous one is up. No backoff between: the intensity is
  the brake, as in OTP.
- Intensity: more than ``max_restarts`` restarts within ``within`` seconds terminate the group,
  which counts as a failure of the group in its parent (whose strategy then applies, the child
  group being the failed member); a top-level group takes the supervisor down with status 1,
  as a critical service's breaker does.

A plan of an outer group supersedes the plans of the groups inside the members it restarts;
a member being restarted by a plan that has not stopped it yet only waits (its failed slot
parks in ``backing_off``).

Ending (OTP 24's significant children): a member *ends by itself* when it ends for good with
nobody asking — a service whose every worker ended and that restarts nothing, a group that
ended. If it is ``significant``, its group's ``auto_shutdown`` (at the top: the supervisor's)
decides: ``any_significant`` ends the group at once, ``all_significant`` once no significant
member is left running. An ending group stops every member, last first (the stop half of a
plan that starts nothing), then has *completed*; a group past its intensity whose restart is
``never`` ends the same way as *terminated*. Its parent then looks at the group's own restart
type: ``always`` restarts it (a failure of that member), ``on_failure`` and ``never`` leave it
ended, which is an end of that member in turn.
"""

from __future__ import annotations

from janus_mp.core import announce
from janus_mp.core.actions import LogLevel
from janus_mp.core.config import AutoShutdown
from janus_mp.core.exits import ExitDecision, RestartPolicy
from janus_mp.core.gates import member_settled, start_service
from janus_mp.core.lifecycle import ServicePhase, TerminationKind, TerminationReason
from janus_mp.core.ordering import find_cycle, order_edges
from janus_mp.core.pool import ServiceState, SlotState, SupervisorPhase, SupervisorState
from janus_mp.core.step import Step
from janus_mp.core.stopping import begin_shutdown, stop_service
from janus_mp.core.tree import GroupState, GroupStrategy, ServiceGroup, Tree
from janus_mp.errors import ConfigError, JanusError


def add_group(state: SupervisorState, spec: ServiceGroup) -> None:
    """``spawn_group``: members must be registered services or groups added already."""
    if state.phase is not SupervisorPhase.IDLE:
        raise JanusError("groups are added before run_until_shutdown()")
    depends = {n: [d for d in o.depends_on if d in state.options]
               for n, o in state.options.items()}
    specs = {g.name: g.spec for g in state.tree.groups.values()} | {spec.name: spec}
    edges = order_edges(specs, depends)
    cycle = find_cycle({s: [p for p, _ in after] for s, after in edges.items()})
    if cycle:
        raise ConfigError("members", f"start order cycle {' -> '.join(cycle)} (depends_on "
                                     "against the member order)")
    check_significant_members(state, spec)
    state.tree.add(spec, state.options)


def member_failed(step: Step, service: ServiceState, slot: SlotState,
                  decision: ExitDecision) -> bool:
    """A worker of ``service`` exited and would restart: True when its group takes over
    (restarting by strategy, or escalating); False: the service restarts it as usual."""
    tree = step.state.tree
    group_name = tree.group_of.get(service.name)
    if group_name is None:
        return False
    group = tree.groups[group_name]
    if _restart_covers(tree, service.name):
        _park(step, slot, decision)
        return True
    if any(g.ended for g in tree.ancestors(service.name)):
        return False  # started by hand after its group ended: it restarts on its own
    if group.spec.strategy is GroupStrategy.ONE_FOR_ONE and group.count_restart(step.now):
        return False
    _park(step, slot, decision)
    if group.spec.strategy is GroupStrategy.ONE_FOR_ONE:
        _terminate(step, group)
    else:
        _member_failed(step, group, service.name, str(decision.reason))
    return True


def member_broke(step: Step, service: ServiceState, why: str) -> None:
    """The breaker ended ``service`` for good. For its group that is a failure of the member
    (OTP: the child exited abnormally): the group's strategy restarts it — a fresh service,
    with a fresh breaker —, and the restart counts toward the group's intensity, so a member
    that keeps tripping its breaker ends in escalation, never in a group running without it."""
    tree = step.state.tree
    group_name = tree.group_of.get(service.name)
    if group_name is None or _restart_covers(tree, service.name):
        return
    _member_failed(step, tree.groups[group_name], service.name, why)


def service_ended(step: Step, service: ServiceState) -> None:
    """``service`` just terminated: if it ended by itself (not stopped by hand, not stopped by
    a plan), that is an end of a member for its group's (or the supervisor's) auto_shutdown."""
    state = step.state
    tree = state.tree
    if state.phase is not SupervisorPhase.RUNNING or service.stopped_by_request or \
            service.end_reason is None or service.name in state.removed or \
            _restart_covers(tree, service.name):
        return
    group_name = tree.group_of.get(service.name)
    _member_ended(step, tree.groups[group_name] if group_name else None, service.name)


def check_significant_members(state: SupervisorState, group: ServiceGroup | None) -> None:
    """OTP refuses a significant child under a supervisor whose auto_shutdown is never: for
    ``group``'s members, or (None) for the supervisor's own (services in no group, top-level
    groups)."""
    mode = group.auto_shutdown if group is not None else state.config.auto_shutdown
    if mode is not AutoShutdown.NEVER:
        return
    for member in group.members if group is not None else _top_level(state):
        if _significant(state, member):
            where = "member" if group is not None else "the top-level member"
            raise ConfigError("auto_shutdown", f'is "never" but {where} {member!r} is '
                                               "significant (use any_significant or "
                                               "all_significant)")


def advance_groups(step: Step) -> None:
    """Settling: move every restart plan on, and see which starting groups are all up."""
    state = step.state
    tree = state.tree
    if not tree.groups or state.phase is not SupervisorPhase.RUNNING:
        return
    # Groups are kept in the order they were added, every child group before its parent, so
    # a plan that a child's end puts on its parent is moved on in this same pass.
    for group in list(tree.groups.values()):
        if group.affected:
            _advance_restart(step, group)
    for group in tree.groups.values():
        if group.starting and not group.affected and not group.ended and \
                member_settled(state, group.name):
            group.starting = False
            step.log(LogLevel.INFO, f"group {group.name}: every member is up")


# -- the decisions ---------------------------------------------------------------------------
def _member_failed(step: Step, group: GroupState, member: str, why: str) -> None:
    if group.ending or group.ended:
        return  # every member stops anyway: nothing restarts
    if not group.count_restart(step.now):
        _terminate(step, group)
        return
    members = group.spec.members
    strategy = group.spec.strategy
    if strategy is GroupStrategy.ONE_FOR_ALL:
        affected = list(members)
    elif strategy is GroupStrategy.REST_FOR_ONE:
        affected = list(members[members.index(member):])
    else:  # one_for_one: a child group escalated; it alone restarts
        affected = [member]
    merged = set(group.affected) | set(affected)
    group.affected = [m for m in members if m in merged]
    tree = step.state.tree
    for restarted in affected:  # an outer plan supersedes the plans inside it
        for inner in tree.groups_under(restarted):
            inner.affected = []
    step.log(LogLevel.WARNING, f"group {group.name} ({strategy.value}): {member} failed: "
                               f"{why}: restarting {', '.join(group.affected)}")
    announce.group_restarted(step, group.name, group.affected, f"{member} failed: {why}")


def _terminate(step: Step, group: GroupState) -> None:
    """Intensity exceeded: the group ends, and its parent sees a failed member."""
    tree = step.state.tree
    spec = group.spec
    step.log(LogLevel.ERROR, f"group {group.name}: more than {spec.max_restarts} restarts "
                             f"within {spec.within:g}s: terminating it")
    parent = tree.group_of.get(group.name)
    if spec.restart is RestartPolicy.NEVER:  # nobody restarts it: it ends, members stopped
        _end_group(step, group, failed=True)
        return
    if parent is not None:
        _member_failed(step, tree.groups[parent], group.name, "restart intensity exceeded")
        return
    group.terminated = True
    group.affected = []
    step.log(LogLevel.ERROR, f"group {group.name} is a top-level group: shutting the "
                             "supervisor down")
    begin_shutdown(step, 1)


def _advance_restart(step: Step, group: GroupState) -> None:
    """Stop the affected services last first, one after the other; then start them all
    (the gate starts them in order)."""
    state = step.state
    tree = state.tree
    services = [s for m in group.affected for s in tree.services_under(m)]
    for name in reversed(services):
        service = state.services.get(name)
        if service is None or _stopped(service):
            continue
        if not service.stopping:
            stop_service(step, service, TerminationReason.stopped())
        if service.has_live_workers():
            return  # draining: the next one stops once this one is gone
    affected, group.affected = group.affected, []
    if group.ending:
        _group_ended(step, group)
        return
    for member in affected:
        for inner in tree.groups_under(member):
            inner.fresh_start()
    group.starting = True
    step.log(LogLevel.INFO, f"group {group.name}: starting {', '.join(affected)} again")
    for name in services:
        why_not = _left_down(state, name, direct=name in affected)
        if why_not is not None:
            step.log(LogLevel.INFO, f"group {group.name}: {name} is not started again: "
                                    f"{why_not}")
            continue
        state.metrics.record_restart(name)
        start_service(step, name)


def _end_group(step: Step, group: GroupState, *, failed: bool) -> None:
    """Stop every member, last first (the stop half of a plan), then the group has ended."""
    group.ending, group.end_failed = True, failed
    group.affected = list(group.spec.members)
    for member in group.spec.members:  # this plan supersedes the plans inside it
        for inner in step.state.tree.groups_under(member):
            inner.affected = []
    step.log(LogLevel.WARNING if failed else LogLevel.INFO,
             f"group {group.name}: ending: stopping {', '.join(group.spec.members)}")


def _group_ended(step: Step, group: GroupState) -> None:
    """Its members have stopped: the group has ended, and its parent decides by the group's
    restart type (a group in no group stays ended: the supervisor restarts no group)."""
    tree = step.state.tree
    for inner in tree.groups_under(group.name):
        inner.ending, inner.ended, inner.end_failed = False, True, group.end_failed
    outcome = "terminated" if group.end_failed else "completed"
    step.log(LogLevel.INFO, f"group {group.name}: every member stopped: {outcome}")
    parent_name = tree.group_of.get(group.name)
    parent = tree.groups[parent_name] if parent_name else None
    if parent is not None and group.spec.restart is RestartPolicy.ALWAYS:
        _member_failed(step, parent, group.name, f"{outcome} (its restart is always)")
        return
    _member_ended(step, parent, group.name)


def _member_ended(step: Step, group: GroupState | None, member: str) -> None:
    """``member`` ended by itself for good: its parent's auto_shutdown may end the parent."""
    state = step.state
    if not _significant(state, member):
        return
    mode = group.spec.auto_shutdown if group is not None else state.config.auto_shutdown
    members = group.spec.members if group is not None else _top_level(state)
    if mode is AutoShutdown.NEVER or (group is not None and (group.ending or group.ended)):
        return
    if mode is AutoShutdown.ALL_SIGNIFICANT and not all(
            _ended(state, m) for m in members if _significant(state, m)):
        return
    why = f"{member} ended ({mode.value})"
    if group is not None:
        step.log(LogLevel.INFO, f"group {group.name}: {why}: shutting the group down")
        _end_group(step, group, failed=False)
        return
    failed = any(s.end_reason is not None and s.end_reason.kind is not TerminationKind.COMPLETED
                 for s in state.services.values())
    step.log(LogLevel.INFO, f"auto_shutdown: {why}: shutting the supervisor down")
    begin_shutdown(step, 1 if failed else 0)


def _ended(state: SupervisorState, member: str) -> bool:
    """No longer running and nothing will start it again (a plan under way will)."""
    group = state.tree.groups.get(member)
    if group is not None:
        return group.ended
    service = state.services.get(member)
    return service is None or (service.lifecycle.phase is ServicePhase.TERMINATED
                               and not _restart_covers(state.tree, member))


def _significant(state: SupervisorState, member: str) -> bool:
    group = state.tree.groups.get(member)
    if group is not None:
        return group.spec.significant
    options = state.options.get(member)
    return options is not None and options.significant


def _top_level(state: SupervisorState) -> list[str]:
    """The supervisor's own children: services in no group, and groups in no group."""
    tree = state.tree
    return [n for n in state.options if n not in tree.group_of and n not in state.removed] + \
        [g.name for g in tree.top_level()]


def _left_down(state: SupervisorState, name: str, *, direct: bool) -> str | None:
    """Why a group restart does not start ``name`` again (None: it starts). A ``direct``
    member's restart policy holds, as OTP's restart types do: a ``never`` (temporary) member
    is dropped, an ``on_failure`` (transient) one that had completed stays completed. A
    service inside a member group starts as in a new group (OTP: a restarted supervisor
    starts all its children)."""
    options = state.options.get(name)
    old = state.services.get(name)
    if options is None or name in state.removed:
        return "removed"
    if old is not None and old.stopped_by_request:
        return "stopped by hand"
    if not direct:
        return None
    if options.restart is RestartPolicy.NEVER:
        return "its restart policy is never"
    if options.restart is RestartPolicy.ON_FAILURE and old is not None and \
            old.end_reason is not None and old.end_reason.kind is TerminationKind.COMPLETED:
        return "it had completed (restart policy on_failure)"
    return None


def _restart_covers(tree: Tree, service: str) -> bool:
    """A plan of one of its groups will stop (and restart, or end) this service anyway."""
    return any(group.affected and service in
               [s for m in group.affected for s in tree.services_under(m)]
               for group in tree.ancestors(service))


def _park(step: Step, slot: SlotState, decision: ExitDecision) -> None:
    """The slot's worker is gone and its group decides what happens: it waits, backing off."""
    if decision.failure:
        slot.lifecycle.record_failure(str(decision.reason))
    if slot.lifecycle.phase in (ServicePhase.STARTING, ServicePhase.RUNNING):
        step.move(slot.lifecycle, ServicePhase.BACKING_OFF)


def _stopped(service: ServiceState) -> bool:
    return service.lifecycle.phase is ServicePhase.TERMINATED or (
        service.stopping and not service.has_live_workers())
