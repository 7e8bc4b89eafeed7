"""Supervision trees as data: a group's spec, its running state, and the tree that holds them.

A *group* supervises *members* — services or other groups — with an OTP strategy and its own
restart intensity. Membership is a tree: a member has at most one group, and following the
``group_of`` links from any member ends at a top-level group (no cycles; the policy refuses a
group that would break that). Decisions live in :mod:`janus_mp.core.groups` and
:mod:`janus_mp.core.gates`; this module is bookkeeping only.

Invariants: ``GroupState.affected`` is non-empty only while its members are being stopped for
a restart (the stop half of a plan); ``Tree.waiting`` names the running services held at their
start gate (slots in ``starting`` without a worker), with the reason shown in status and
``/readyz``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from janus_mp.core.config import AutoShutdown, check_significant, valid_service_name
from janus_mp.core.exits import RestartPolicy
from janus_mp.errors import ConfigError


class GroupStrategy(StrEnum):
    """What a member's failure restarts (OTP's names and meanings)."""

    ONE_FOR_ONE = "one_for_one"    # the failed member alone (today's behaviour)
    ONE_FOR_ALL = "one_for_all"    # every member
    REST_FOR_ONE = "rest_for_one"  # the failed member and the members listed after it

    @classmethod
    def parse(cls, value: object) -> GroupStrategy:
        key = str(value).strip().lower().replace("-", "_")
        for strategy in cls:
            if key == strategy.value:
                return strategy
        raise ConfigError("strategy", "must be one of one_for_one, one_for_all, rest_for_one")


@dataclass(frozen=True)
class ServiceGroup:
    """A group of services (or other groups), started in list order and stopped in reverse.

    More than ``max_restarts`` restarts of its members within ``within`` seconds terminate the
    group and count as a failure of the group in its parent; at the top, the supervisor exits
    with status 1.
    """

    name: str
    members: tuple[str, ...]
    strategy: GroupStrategy = GroupStrategy.ONE_FOR_ONE
    max_restarts: int = 3
    within: float = 5.0
    #: The group's own restart type in its parent (OTP's restart of a supervisor child):
    #: "always" — its parent restarts it whenever it ends; "on_failure" — only when it gave
    #: up (intensity), not when it shut itself down; "never" — its parent never restarts it.
    restart: RestartPolicy = RestartPolicy.ALWAYS
    #: Ends itself once its significant members ended by themselves: "any_significant" or
    #: "all_significant" (OTP 24's auto_shutdown); "never" keeps it running.
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER
    #: This group, ending by itself, counts for its parent's auto_shutdown.
    significant: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not valid_service_name(self.name):
            raise ConfigError("name", "must be letters, digits, '-', '_' or '.' (1-64 "
                                      "characters)")
        members = self.members
        if isinstance(members, (str, bytes)) or not isinstance(members, Iterable):
            raise ConfigError("members", "must be a list of service or group names")
        members = tuple(members)
        if not members:
            raise ConfigError("members", "must name at least one service or group")
        for member in members:
            if not isinstance(member, str) or not valid_service_name(member):
                raise ConfigError("members", f"{member!r} is not a service or group name")
        twice = sorted({m for m in members if members.count(m) > 1})
        if twice:
            raise ConfigError("members", f"{twice[0]!r} is listed twice")
        if self.name in members:
            raise ConfigError("members", f"group {self.name!r} cannot be its own member")
        object.__setattr__(self, "members", members)
        if not isinstance(self.strategy, GroupStrategy):
            object.__setattr__(self, "strategy", GroupStrategy.parse(self.strategy))
        if isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int) or \
                self.max_restarts < 0:
            raise ConfigError("max_restarts", "must be an integer >= 0")
        if isinstance(self.within, bool) or not isinstance(self.within, (int, float)) or \
                not math.isfinite(self.within) or self.within <= 0:
            raise ConfigError("within", "must be a number of seconds > 0")
        if not isinstance(self.restart, RestartPolicy):
            object.__setattr__(self, "restart", RestartPolicy.parse(str(self.restart)))
        if not isinstance(self.auto_shutdown, AutoShutdown):
            object.__setattr__(self, "auto_shutdown", AutoShutdown.parse(self.auto_shutdown))
        check_significant(self.significant, self.restart)


class GroupPhase(StrEnum):
    STARTING = "starting"      # members start one after the other, each once the previous is up
    RUNNING = "running"
    RESTARTING = "restarting"  # affected members are being stopped, last first
    STOPPING = "stopping"      # ending: every member is being stopped, last first
    COMPLETED = "completed"    # ended by itself (auto_shutdown); nothing restarts it
    TERMINATED = "terminated"  # gave up (intensity) and nothing restarts it


@dataclass(eq=False)
class GroupState:
    spec: ServiceGroup
    #: When the restarts inside the intensity window happened (oldest first).
    recent_restarts: deque[float] = field(default_factory=deque)
    restarts: int = 0
    #: Members being stopped for a restart (the stop half of a plan), in member order.
    affected: list[str] = field(default_factory=list)
    starting: bool = True
    terminated: bool = False
    #: The plan in ``affected`` ends the group instead of restarting its members;
    #: ``end_failed``: because it gave up (not because it shut itself down).
    ending: bool = False
    end_failed: bool = False
    #: Ended for good (completed or terminated): stays down until its parent restarts it.
    ended: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def phase(self) -> GroupPhase:
        if self.terminated or (self.ended and self.end_failed):
            return GroupPhase.TERMINATED
        if self.ended:
            return GroupPhase.COMPLETED
        if self.affected:
            return GroupPhase.STOPPING if self.ending else GroupPhase.RESTARTING
        return GroupPhase.STARTING if self.starting else GroupPhase.RUNNING

    def count_restart(self, now: float) -> bool:
        """Record one restart; False (recording nothing) when it would be one too many
        within the window: the group must terminate instead."""
        while self.recent_restarts and self.recent_restarts[0] <= now - self.spec.within:
            self.recent_restarts.popleft()
        if len(self.recent_restarts) >= self.spec.max_restarts:
            return False
        self.recent_restarts.append(now)
        self.restarts += 1
        return True

    def fresh_start(self) -> None:
        """Restarted by its parent: like a new OTP supervisor, it forgets its history."""
        self.recent_restarts.clear()
        self.affected = []
        self.starting = True
        self.terminated = self.ending = self.end_failed = self.ended = False


class Tree:
    """The groups of one supervisor, who belongs where, and which services wait and why."""

    def __init__(self) -> None:
        self.groups: dict[str, GroupState] = {}
        self.group_of: dict[str, str] = {}  # member (service or group) -> its group
        self.waiting: dict[str, str] = {}   # service -> why its slots wait in "starting"

    def add(self, spec: ServiceGroup, services: Iterable[str]) -> None:
        """Add a group whose members exist already (services registered, groups added)."""
        known = set(services)
        if spec.name in self.groups:
            raise ConfigError("name", f"a group named {spec.name!r} is already added")
        if spec.name in known:
            raise ConfigError("name", f"a service is named {spec.name!r} too")
        for member in spec.members:
            if member not in known and member not in self.groups:
                raise ConfigError("members", f"unknown member {member!r} (no service or "
                                             "group of that name)")
            if member in self.group_of:
                raise ConfigError("members", f"{member!r} is already a member of group "
                                             f"{self.group_of[member]!r}")
        self.groups[spec.name] = GroupState(spec)
        for member in spec.members:
            self.group_of[member] = spec.name

    def services_under(self, member: str) -> list[str]:
        """The services of a member in start order: itself, or a group's, depth first."""
        group = self.groups.get(member)
        if group is None:
            return [member]
        return [s for m in group.spec.members for s in self.services_under(m)]

    def groups_under(self, member: str) -> Iterator[GroupState]:
        group = self.groups.get(member)
        if group is None:
            return
        yield group
        for m in group.spec.members:
            yield from self.groups_under(m)

    def ancestors(self, member: str) -> Iterator[GroupState]:
        """The groups above ``member``, nearest first."""
        name = self.group_of.get(member)
        while name is not None:
            yield self.groups[name]
            name = self.group_of.get(name)

    def top_level(self) -> list[GroupState]:
        return [g for g in self.groups.values() if g.name not in self.group_of]
