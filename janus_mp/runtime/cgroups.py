"""Per-service limits through cgroup v2: each service's workers in a cgroup of their own.

Where: the cgroup this supervisor runs in (``/proc/self/cgroup``, under the cgroup2 mount), which
must be delegated to it (systemd ``Delegate=yes``; a container's own root). cgroup v2 lets a
cgroup hand controllers to its children only while it holds no process itself, so the
supervisor first moves itself (and everything it starts that is not a worker) into a leaf
``janus.supervisor``, then enables the controllers the limits need and makes one leaf
``janus.svc.NAME`` per limited service, with ``memory.max``, ``cpu.max`` and ``pids.max``
written from SpawnOptions. A worker moves itself into its service's leaf first thing, before
any service code runs (``join``). The kernel's OOM killer is told from a plain SIGKILL by the
service's ``memory.events`` ``oom_kill`` count, read when one of its workers dies by SIGKILL.

Anything missing — no cgroup2 mount, a controller not offered, no write access, other
processes sharing the cgroup — is a :class:`CgroupError` with one line that says which and
where; the supervisor refuses to start rather than run without the limits it was asked for.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from janus_mp import osproc
from janus_mp.core.config import SpawnOptions
from janus_mp.errors import JanusError

SUPERVISOR_LEAF = "janus.supervisor"
SERVICE_PREFIX = "janus.svc."
CPU_PERIOD_US = 100_000


class CgroupError(JanusError):
    """Limits cannot be applied here; the message names the reason and the path."""


@dataclass(frozen=True)
class Limits:
    memory_max: int | None = None  # bytes
    cpu_max: float | None = None  # CPUs (1.5 = one and a half)
    pids_max: int | None = None

    @property
    def controllers(self) -> set[str]:
        wanted = {"memory": self.memory_max, "cpu": self.cpu_max, "pids": self.pids_max}
        return {name for name, value in wanted.items() if value is not None}

    def files(self) -> dict[str, str]:
        """Interface file → the text written to it."""
        out = {}
        if self.memory_max is not None:
            out["memory.max"] = str(self.memory_max)
        if self.cpu_max is not None:
            out["cpu.max"] = f"{max(1000, round(self.cpu_max * CPU_PERIOD_US))} {CPU_PERIOD_US}"
        if self.pids_max is not None:
            out["pids.max"] = str(self.pids_max)
        return out


def own_cgroup(proc_root: str = "/proc") -> str:
    """The directory of this process's cgroup v2 (raises CgroupError when there is none)."""
    mount = None
    with open(f"{proc_root}/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            dash = fields.index("-")
            if fields[dash + 1] == "cgroup2":
                mount = fields[4]
                break
    if mount is None:
        raise CgroupError("cgroup limits need cgroup v2, and no cgroup2 file system is mounted")
    path = None
    with open(f"{proc_root}/self/cgroup") as f:
        for line in f:
            hierarchy, _controllers, rel = line.rstrip("\n").split(":", 2)
            if hierarchy == "0":
                path = rel
    if path is None:
        raise CgroupError(f"cgroup limits need cgroup v2: this process is in no cgroup of the "
                          f"v2 hierarchy mounted at {mount}")
    return os.path.join(mount, path.strip("/")).rstrip("/") or "/"


class ServiceCgroups:
    """The supervisor's side: check, create, fill in, read back, remove."""

    def __init__(self, base: str) -> None:
        self.base = base
        self._paths: dict[str, str] = {}
        self._oom_seen: dict[str, int] = {}

    def prepare(self, limits: dict[str, Limits]) -> None:
        """Make a leaf per limited service (raises CgroupError, changing nothing it can avoid)."""
        wanted = set().union(*(lim.controllers for lim in limits.values())) if limits else set()
        if not wanted:
            return
        refusal = self.refusal(wanted)
        if refusal is not None:
            raise CgroupError(refusal)
        leaf = os.path.join(self.base, SUPERVISOR_LEAF)
        _mkdir(leaf)
        for pid in _read(os.path.join(self.base, "cgroup.procs")).split():  # only ours
            _write(os.path.join(leaf, "cgroup.procs"), pid, "move a process out of")
        _write(os.path.join(self.base, "cgroup.subtree_control"),
               " ".join(f"+{c}" for c in sorted(wanted)), "enable controllers in")
        for service, lim in limits.items():
            path = os.path.join(self.base, SERVICE_PREFIX + service)
            _mkdir(path)
            for name, text in lim.files().items():
                _write(os.path.join(path, name), text, "set a limit in")
            self._paths[service] = path
            self._oom_seen[service] = self.oom_kills(service)

    def refusal(self, wanted: set[str]) -> str | None:
        """Why limits needing the ``wanted`` controllers cannot be applied here, or None."""
        offered = set(_read(os.path.join(self.base, "cgroup.controllers")).split())
        missing = sorted(wanted - offered)
        if missing:
            return (f"cgroup {self.base} offers {' '.join(sorted(offered)) or 'no'} "
                    f"controller(s); the limits need {' '.join(missing)} (delegate them, e.g. "
                    "systemd Delegate=yes)")
        if not os.access(self.base, os.W_OK):
            return (f"cgroup {self.base} is not writable by this supervisor (delegate it, e.g. "
                    "systemd Delegate=yes)")
        ours = {str(os.getpid())} | {str(p) for p in self._descendants()}
        strangers = sorted(set(_read(os.path.join(self.base, "cgroup.procs")).split()) - ours)
        if strangers and not os.path.isdir(os.path.join(self.base, SUPERVISOR_LEAF)):
            return (f"cgroup {self.base} also holds processes that are not this supervisor's "
                    f"(pids {' '.join(strangers[:5])}): give janus-mp a cgroup of its own "
                    "(systemd Delegate=yes)")
        return None

    @staticmethod
    def _descendants() -> list[int]:
        return osproc.descendants(os.getpid())

    def procs_file(self, service: str) -> str | None:
        """Where a worker of ``service`` writes its pid, or None (no limits for it)."""
        path = self._paths.get(service)
        return None if path is None else os.path.join(path, "cgroup.procs")

    def oom_kills(self, service: str) -> int:
        path = self._paths.get(service)
        if path is None:
            return 0
        with contextlib.suppress(CgroupError, ValueError):  # no memory controller: no OOM
            for line in _read(os.path.join(path, "memory.events")).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def was_oom_killed(self, service: str) -> bool:
        """Did the kernel's OOM killer kill in this service's cgroup since last asked? (Asked
        when a worker of it died by SIGKILL.)"""
        count = self.oom_kills(service)
        seen = self._oom_seen.get(service, count)
        self._oom_seen[service] = count
        return count > seen

    def remove(self) -> None:
        """At close: the service leaves go (each is empty once its workers were reaped)."""
        for path in self._paths.values():
            with contextlib.suppress(OSError):
                os.rmdir(path)
        self._paths.clear()


class ServiceLimits:
    """The services' cgroups, made the first time a service asks for a limit: a supervisor
    whose services ask for none never touches the cgroup tree."""

    def __init__(self) -> None:
        self._cgroups: ServiceCgroups | None = None

    def limit(self, service: str, options: SpawnOptions) -> None:
        """Give ``service`` its cgroup (memory_max, cpu_max, pids_max) now, before any of its
        workers exists; CgroupError in one line naming the service where cgroup v2 cannot."""
        assert options.memory_max is None or isinstance(options.memory_max, int)
        limits = Limits(options.memory_max, options.cpu_max, options.pids_max)
        if not limits.controllers:
            return
        try:
            if self._cgroups is None:
                self._cgroups = ServiceCgroups(own_cgroup())
            self._cgroups.prepare({service: limits})
        except CgroupError as exc:
            raise CgroupError(f"service {service!r}: {exc}") from None

    def procs_file(self, service: str) -> str | None:
        return None if self._cgroups is None else self._cgroups.procs_file(service)

    def was_oom_killed(self, service: str) -> bool:
        return self._cgroups is not None and self._cgroups.was_oom_killed(service)

    def remove(self) -> None:
        if self._cgroups is not None:
            self._cgroups.remove()


def join(procs_file: str) -> None:
    """In a worker, first thing: move this process into its service's cgroup."""
    _write(procs_file, str(os.getpid()), "join")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError as exc:
        raise CgroupError(f"cannot read {path}: {exc.strerror or exc}") from None


def _write(path: str, text: str, what: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:
        hint = " (other processes share this cgroup?)" if "subtree_control" in path else ""
        raise CgroupError(f"cannot {what} {os.path.dirname(path)}: {os.path.basename(path)}: "
                          f"{exc.strerror or exc}{hint}") from None


def _mkdir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise CgroupError(f"cannot create cgroup {path}: {exc.strerror or exc}") from None
