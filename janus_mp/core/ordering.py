"""Start order from ``depends_on`` and group member lists: the static check and the levels.

Both say "this service starts after that one": ``depends_on = ["db"]`` makes a service start
after ``db``; a group makes every service of a member start after every service of the member
listed before it. :func:`check_tree` refuses what could never start (unknown names, a member in
two groups, cycles: spelled out as ``a -> b -> a``) in one line naming the key path;
:func:`start_levels` ranks services so that shutdown stops the later ones first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from janus_mp.core.config import AutoShutdown
from janus_mp.core.tree import ServiceGroup
from janus_mp.errors import ConfigError

#: service -> the services it starts after, each with the key path that asked for it.
Edges = dict[str, list[tuple[str, str]]]


def check_tree(groups: Sequence[ServiceGroup], depends: Mapping[str, Sequence[str]]) -> None:
    """Refuse a tree or dependency graph that cannot start; keys as in the config file
    (``groups.NAME.members``, ``services.NAME.depends_on``)."""
    if not groups and not any(depends.values()):
        return  # nothing orders anything: the common case, checked at every parse
    by_name: dict[str, ServiceGroup] = {}
    group_of: dict[str, str] = {}
    for group in groups:
        key = f"groups.{group.name}"
        if group.name in depends:
            raise ConfigError(key, f"a service is named {group.name!r} too")
        if group.name in by_name:
            raise ConfigError(key, "is defined twice")
        by_name[group.name] = group
    for group in groups:
        for member in group.members:
            if member not in depends and member not in by_name:
                raise ConfigError(f"groups.{group.name}.members",
                                  f"unknown member {member!r} (no service or group of that "
                                  "name)")
            if member in group_of:
                raise ConfigError(f"groups.{group.name}.members",
                                  f"{member!r} is already a member of group "
                                  f"{group_of[member]!r}")
            group_of[member] = group.name
    cycle = find_cycle({g.name: [m for m in g.members if m in by_name] for g in groups})
    if cycle:
        raise ConfigError(f"groups.{cycle[0]}.members", f"cycle {' -> '.join(cycle)}")
    for name, needs in depends.items():
        for need in needs:
            if need not in depends:
                raise ConfigError(f"services.{name}.depends_on", f"unknown service {need!r}")
    cycle = find_cycle(depends)
    if cycle:
        raise ConfigError(f"services.{cycle[0]}.depends_on", f"cycle {' -> '.join(cycle)}")
    edges = order_edges(by_name, depends)
    cycle = find_cycle({s: [p for p, _ in after] for s, after in edges.items()})
    if cycle:
        origin = next(o for p, o in edges[cycle[0]] if p == cycle[1])
        raise ConfigError(origin, f"start order cycle {' -> '.join(cycle)} (depends_on "
                                  "against a group's member order)")


def check_auto_shutdown(groups: Sequence[ServiceGroup], significant: Sequence[str],
                        supervisor: AutoShutdown) -> None:
    """OTP refuses a significant member whose parent never shuts itself down: each group's
    significant members need its auto_shutdown, the top-level ones the supervisor's."""
    by_name = {g.name: g for g in groups}
    marked = set(significant) | {g.name for g in groups if g.significant}
    members = {m for g in groups for m in g.members}
    for group in groups:
        if group.auto_shutdown is AutoShutdown.NEVER:
            for member in group.members:
                if member in marked:
                    raise ConfigError(f"groups.{group.name}.auto_shutdown",
                                      f'is "never" but member {member!r} is significant (use '
                                      "any_significant or all_significant)")
    if supervisor is AutoShutdown.NEVER:
        for name in [*significant, *by_name]:
            if name in marked and name not in members:
                raise ConfigError("supervisor.auto_shutdown",
                                  f'is "never" but {name!r} (in no group) is significant (use '
                                  "any_significant or all_significant)")


def order_edges(groups: Mapping[str, ServiceGroup],
                depends: Mapping[str, Sequence[str]]) -> Edges:
    """Who starts after whom, from dependencies and from every group's member order."""
    edges: Edges = {name: [(need, f"services.{name}.depends_on") for need in needs]
                    for name, needs in depends.items()}

    def services_under(member: str) -> list[str]:
        group = groups.get(member)
        if group is None:
            return [member]
        return [s for m in group.members for s in services_under(m)]

    for group in groups.values():
        origin = f"groups.{group.name}.members"
        for before, after in zip(group.members, group.members[1:], strict=False):
            firsts = services_under(before)
            for service in services_under(after):
                edges.setdefault(service, []).extend((first, origin) for first in firsts)
    return edges


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as a path that ends where it starts (``[a, b, a]``), or None."""
    done: set[str] = set()
    for root in graph:
        if root in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                path.append(node)
                on_path.add(node)
            nexts = [n for n in graph.get(node, ()) if n in graph]
            if index < len(nexts):
                stack.append((node, index + 1))
                child = nexts[index]
                if child in on_path:
                    return path[path.index(child):] + [child]
                if child not in done:
                    stack.append((child, 0))
                continue
            done.add(node)
            on_path.discard(node)
            path.pop()
    return None


def start_levels(edges: Edges) -> dict[str, int]:
    """0 for a service that starts after nobody, else one more than the highest it waits
    for (an edge that would close a cycle is ignored: the Python API can be handed one)."""
    levels: dict[str, int] = {}
    visiting: set[str] = set()

    def level(name: str) -> int:
        if name in levels:
            return levels[name]
        visiting.add(name)
        below = [level(p) for p, _ in edges.get(name, ()) if p not in visiting]
        visiting.discard(name)
        levels[name] = 1 + max(below) if below else 0
        return levels[name]

    for name in edges:
        level(name)
    return levels


def creation_order(groups: Sequence[ServiceGroup]) -> list[ServiceGroup]:
    """Groups with their child groups first (the order ``spawn_group`` accepts them in)."""
    by_name = {g.name: g for g in groups}
    ordered: list[ServiceGroup] = []
    seen: set[str] = set()

    def visit(group: ServiceGroup) -> None:
        if group.name in seen:
            return
        seen.add(group.name)
        for member in group.members:
            if member in by_name:
                visit(by_name[member])
        ordered.append(group)

    for group in groups:
        visit(group)
    return ordered
