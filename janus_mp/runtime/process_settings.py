"""Applying :class:`~janus_mp.core.process_settings.ProcessSettings` in a new worker, before its
service code runs (called from the worker bootstrap, after the supervisor's plumbing is set up).

Order matters: what needs privileges (rlimits above the hard limit, a lower niceness) comes
before the user switch, which comes last but one: groups, then gid, then uid (the other way
round, the process could no longer change its groups). The working directory is entered after
the switch, so it is checked with the user's own permissions.
"""

from __future__ import annotations

import grp
import math
import os
import pwd
import resource

from janus_mp.core.process_settings import UNLIMITED, ProcessSettings
from janus_mp.errors import ConfigError


class SettingsError(Exception):
    """A setting cannot be applied in this worker (one line, naming the setting)."""


def apply(settings: ProcessSettings) -> None:
    try:
        _apply(settings)
    except OSError as exc:
        raise SettingsError(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename
                                                         else "")) from None


def _apply(settings: ProcessSettings) -> None:
    if settings.env_file is not None:
        os.environ.update(read_env_file(settings.env_file))
    os.environ.update(settings.env)
    for name, limit in settings.rlimits.items():
        soft, hard = limit
        which = getattr(resource, f"RLIMIT_{name.upper()}")
        try:
            resource.setrlimit(which, (_rlim(soft), _rlim(hard)))
        except (ValueError, OSError) as exc:
            raise SettingsError(f"rlimits.{name}: {exc}") from None
    if settings.nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, settings.nice)
        except OSError as exc:
            raise SettingsError(f"nice {settings.nice}: {exc.strerror}") from None
    if settings.cpus is not None:
        try:
            os.sched_setaffinity(0, settings.cpus)
        except OSError as exc:
            raise SettingsError(f"cpus {list(settings.cpus)}: {exc.strerror}") from None
    if isinstance(settings.umask, int):
        os.umask(settings.umask)
    if settings.user is not None:
        switch_user(settings.user, settings.group)
    elif settings.group is not None:
        switch_group(settings.group)
    if settings.cwd is not None:
        try:
            os.chdir(settings.cwd)
        except OSError as exc:
            raise SettingsError(f"cwd {settings.cwd}: {exc.strerror}") from None


def check(settings: ProcessSettings) -> None:
    """What can be known before any worker starts: refused with a ConfigError naming the key
    (a user switch without root, an unknown user, a missing env_file or cwd)."""
    if settings.user is not None:
        if os.geteuid() != 0:
            raise ConfigError("user", f"switching to {settings.user!r} needs a supervisor "
                                      "running as root")
        try:
            resolve_user(settings.user, settings.group)
        except KeyError:
            raise ConfigError("user", f"no user {settings.user!r}" + (
                f" or no group {settings.group!r}" if settings.group is not None else "")
            ) from None
    elif settings.group is not None:
        if os.geteuid() != 0:
            raise ConfigError("group", f"switching to {settings.group!r} needs a supervisor "
                                       "running as root")
        try:
            resolve_group(settings.group)
        except KeyError:
            raise ConfigError("group", f"no group {settings.group!r}") from None
    if settings.env_file is not None:
        try:
            read_env_file(settings.env_file)
        except OSError as exc:
            raise ConfigError("env_file", f"{settings.env_file}: {exc.strerror}") from None
        except SettingsError as exc:
            raise ConfigError("env_file", str(exc)) from None
    for name, (soft, hard) in settings.rlimits.items():
        _check_rlimit(name, max(_rlim(soft), _rlim(hard), key=_ceiling))
    if settings.cwd is not None and not os.path.isdir(settings.cwd):
        raise ConfigError("cwd", f"{settings.cwd!r} is not a directory")
    if settings.cpus is not None:
        allowed = os.sched_getaffinity(0)
        if not set(settings.cpus) <= allowed:
            raise ConfigError("cpus", f"this supervisor may only use CPUs {sorted(allowed)}")


def _ceiling(value: int) -> float:
    return math.inf if value == resource.RLIM_INFINITY else value


def _check_rlimit(name: str, wanted: int) -> None:
    """Refuse a limit no worker could set: above the supervisor's hard limit without root
    (only root may raise it), or a nofile above the kernel's fs.nr_open (not even root)."""
    which = getattr(resource, f"RLIMIT_{name.upper()}")
    _soft, hard = resource.getrlimit(which)
    shown = "unlimited" if wanted == resource.RLIM_INFINITY else str(wanted)
    if os.geteuid() != 0 and _ceiling(wanted) > _ceiling(hard):
        raise ConfigError(f"rlimits.{name}", f"{shown} is above the hard limit ({hard}); "
                                             "only root may raise it")
    if name == "nofile":
        try:
            with open("/proc/sys/fs/nr_open") as f:
                most = int(f.read())
        except (OSError, ValueError):
            return
        if _ceiling(wanted) > most:
            raise ConfigError("rlimits.nofile", f"{shown} is above the kernel's most open "
                                                f"files per process (fs.nr_open = {most})")


def resolve_user(user: str | int, group: str | int | None) -> tuple[int, int, str]:
    """(uid, gid, name) of a user and group given by name or number; KeyError if unknown."""
    entry = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
    gid = entry.pw_gid if group is None else resolve_group(group)
    return entry.pw_uid, gid, entry.pw_name


def resolve_group(group: str | int) -> int:
    """The gid of a group given by name or number; KeyError if unknown."""
    return grp.getgrgid(group).gr_gid if isinstance(group, int) else grp.getgrnam(group).gr_gid


def switch_group(group: str | int) -> None:
    """Only the group (gunicorn's --group without --user): the worker keeps its user, its
    supplementary groups become just this one, so it gains nothing it did not name."""
    try:
        gid = resolve_group(group)
    except KeyError:
        raise SettingsError(f"group {group!r}: not found") from None
    try:
        os.setgroups([gid])
        os.setgid(gid)
    except OSError as exc:
        raise SettingsError(f"group {group!r}: {exc.strerror}") from None


def switch_user(user: str | int, group: str | int | None) -> None:
    try:
        uid, gid, name = resolve_user(user, group)
    except KeyError:
        raise SettingsError(f"user {user!r} or group {group!r}: not found") from None
    try:
        os.initgroups(name, gid)
        os.setgid(gid)
        os.setuid(uid)
    except OSError as exc:
        raise SettingsError(f"user {user!r}: {exc.strerror}") from None
    os.environ.update(USER=name, LOGNAME=name, HOME=pwd.getpwuid(uid).pw_dir)


def read_env_file(path: str) -> dict[str, str]:
    """NAME=value lines; blank lines and # comments skipped; one pair of quotes around a value
    is removed. A line without "=" is an error naming the line."""
    values: dict[str, str] = {}
    with open(path, "rb") as f:
        data = f.read()
    for number, raw_bytes in enumerate(data.splitlines(), 1):
        try:
            raw = raw_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise SettingsError(f"env_file {path}, line {number}: not UTF-8 text") from None
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name = name.strip()
        if not sep or not name:
            raise SettingsError(f"env_file {path}, line {number}: expected NAME=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def _rlim(value: int) -> int:
    return resource.RLIM_INFINITY if value == UNLIMITED else value
