"""How a worker process is set up before its service code runs: environment, directory, user,
umask, resource limits, priority and CPU affinity — for every kind of service.

Pure data and validation: :mod:`janus_mp.runtime.process_settings` applies it in the worker,
the config file and the Python API fill it (``SpawnOptions(process=ProcessSettings(...))``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from janus_mp.errors import ConfigError

#: rlimits by their lower-case name without RLIMIT_ (``nofile = 4096``); values are the soft
#: and hard limit, or one number for both; -1 or "unlimited" means no limit.
RLIMIT_NAMES = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
UNLIMITED = -1


@dataclass(frozen=True)
class ProcessSettings:
    #: Variables added to (or replacing in) the worker's environment, after ``env_file``'s.
    env: Mapping[str, str] = field(default_factory=dict)
    #: A file of NAME=value lines (# comments, blank lines), read when each worker starts.
    env_file: str | None = None
    cwd: str | None = None
    #: A user name or uid, and a group name or gid (default: the user's primary group; a
    #: group alone changes only the group); only a supervisor running as root can switch.
    user: str | int | None = None
    group: str | int | None = None
    #: 0o027 in TOML, or the string "027".
    umask: int | str | None = None
    #: After validation: name -> (soft, hard), UNLIMITED for none.
    rlimits: Mapping[str, Any] = field(default_factory=dict)
    #: The worker's niceness, -20..19 (below the supervisor's needs root).
    nice: int | None = None
    #: CPU numbers the worker may run on (sched_setaffinity).
    cpus: tuple[int, ...] | list[int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.env, Mapping) or not all(
                isinstance(k, str) and k and "=" not in k for k in self.env):
            raise ConfigError("env", "must be a table of NAME = \"value\"")
        object.__setattr__(self, "env", {k: _env_value(k, v) for k, v in self.env.items()})
        for key in ("env_file", "cwd"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, str) and value):
                raise ConfigError(key, "must be a path")
        for key in ("user", "group"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))
                                      or value == "" or (isinstance(value, int) and value < 0)):
                raise ConfigError(key, "must be a name or a number >= 0")
        if self.umask is not None:
            object.__setattr__(self, "umask", parse_umask(self.umask))
        object.__setattr__(self, "rlimits", _rlimits(self.rlimits))
        if self.nice is not None and (isinstance(self.nice, bool) or not isinstance(self.nice, int)
                                      or not -20 <= self.nice <= 19):
            raise ConfigError("nice", "must be an integer from -20 to 19")
        if self.cpus is not None:
            if isinstance(self.cpus, (str, bytes)) or not all(
                    isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in self.cpus):
                raise ConfigError("cpus", "must be a list of CPU numbers")
            if not self.cpus:
                raise ConfigError("cpus", "must name at least one CPU")
            object.__setattr__(self, "cpus", tuple(sorted(set(self.cpus))))

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) in (None, {}, ()) for f in fields(self))


def parse_umask(value: object) -> int:
    """0o027 (an int) or "027"/"0o027" (octal digits in a string)."""
    if isinstance(value, bool):
        raise ConfigError("umask", "must be like 0o027 or \"027\"")
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if not text or any(c not in "01234567" for c in text):
            raise ConfigError("umask", f"{value!r} is not octal (like \"027\")")
        value = int(text, 8)
    if not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ConfigError("umask", "must be from 0o000 to 0o777")
    return value


def _env_value(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"env.{name}", "must be a string or a number")
    return str(value)


def _rlimits(table: object) -> dict[str, tuple[int, int]]:
    if not isinstance(table, Mapping):
        raise ConfigError("rlimits", "must be a table like { nofile = 4096, core = 0 }")
    limits: dict[str, tuple[int, int]] = {}
    for name, value in table.items():
        if name not in RLIMIT_NAMES:
            raise ConfigError(f"rlimits.{name}", f"unknown (known: {', '.join(RLIMIT_NAMES)})")
        if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int)
                                                               for v in value):
            limits[name] = (value[0], value[1])  # already parsed (a copy of these settings)
            continue
        pair = value if isinstance(value, list) else [value, value]
        if len(pair) != 2:
            raise ConfigError(f"rlimits.{name}", "must be a number or [soft, hard]")
        soft, hard = (_limit(f"rlimits.{name}", v) for v in pair)
        if hard != UNLIMITED and (soft == UNLIMITED or soft > hard):
            raise ConfigError(f"rlimits.{name}", "the soft limit must not exceed the hard one")
        limits[name] = (soft, hard)
    return limits


def _limit(key: str, value: object) -> int:
    if value == "unlimited" or value == UNLIMITED:
        return UNLIMITED
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(key, "must be a number >= 0, or \"unlimited\"")
    return value
