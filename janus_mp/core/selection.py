"""Which services a control command names: a service, a group (its member services, nested
groups included, in member order), or ``all`` — supervisorctl's ``start GROUP:*`` and
``restart all``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from janus_mp.errors import UnknownServiceError

ALL = "all"


def select_services(name: str, services: Sequence[str],
                    groups: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The services ``name`` stands for; UnknownServiceError when it names none. A service
    named ``all`` or named like a group is that service (names are checked in that order)."""
    if name in services:
        return (name,)
    if name == ALL:
        return tuple(services)
    if name not in groups:
        raise UnknownServiceError(name, [*services, *groups, ALL])
    chosen: list[str] = []
    pending = [name]
    seen: set[str] = set()
    while pending:  # groups nest (a member may be a group); a tree has no cycles, seen guards
        group = pending.pop(0)
        if group in seen:
            continue
        seen.add(group)
        for member in groups[group]:
            if member in groups and member not in services:
                pending.append(member)
            elif member in services and member not in chosen:
                chosen.append(member)
    return tuple(chosen)
