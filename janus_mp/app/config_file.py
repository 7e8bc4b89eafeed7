"""The TOML config file: ``[supervisor]`` and ``[services.NAME]`` tables into the same dataclasses
the Python API takes. Every error names its key path and the rule; unknown keys get a
did-you-mean. Nothing here starts anything.

    [supervisor]
    shutdown_timeout = 30
    metrics_port = 9464
    [supervisor.backoff]
    max_retries = 10

    [services.crunch]
    target = "myapp.services:Crunch"
    workers = 4                 # or "auto": the CPUs usable (affinity, cgroup cpu quota)
    restart = "on_failure"
    [services.crunch.backoff]
    initial_delay = 0.2

    [services.web]
    wsgi = "myapp.web:app"      # or asgi = ..., command = [...], module = "pkg.mod"
    bind = "127.0.0.1:8000"
    workers = 4
    max_requests = 1000
    depends_on = ["crunch"]     # starts once every crunch worker is ready; stops before it

    [groups.backend]            # a supervision tree: members are services or groups
    members = ["crunch", "web"]
    strategy = "rest_for_one"   # one_for_one (default), one_for_all, rest_for_one
    max_restarts = 3
    within = 5
    auto_shutdown = "never"     # or any_significant / all_significant (significant members)
    restart = "always"          # its own restart type in its parent group
    health = { http = "/healthz", interval = 5, timeout = 2, failures = 3 }

    [hooks]                     # commands run on lifecycle events (core/hooks_config.py)
    on_exit = ["/usr/local/bin/notify", "--exit"]
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from janus_mp.adapters.http_settings import HTTP_KEYS
from janus_mp.core.backoff import BackoffConfig
from janus_mp.core.config import SpawnOptions, SupervisorConfig, valid_service_name
from janus_mp.core.exits import RestartPolicy
from janus_mp.core.foreign_names import foreign_hint
from janus_mp.core.hooks_config import HooksConfig
from janus_mp.core.ordering import check_auto_shutdown, check_tree
from janus_mp.core.pool_config import PoolConfig
from janus_mp.core.process_settings import ProcessSettings
from janus_mp.core.tree import ServiceGroup
from janus_mp.errors import ConfigError
from janus_mp.osproc import usable_cpus


@dataclass(frozen=True)
class ServiceEntry:
    """One ``[services.NAME]`` table: what to run (``kind`` and ``target``), adapter settings,
    and how to supervise it."""

    name: str
    target: Any  # "module:attr" (target, wsgi, asgi, module) or argv (command)
    options: SpawnOptions
    kind: str = "target"
    settings: Mapping[str, Any] = field(default_factory=dict)


#: What a service table may name to run, and the adapter settings each kind accepts.
KINDS: dict[str, frozenset[str]] = {
    "target": frozenset(),
    "module": frozenset({"exit_codes"}),
    "wsgi": frozenset({"bind", "backlog", "threads"}) | HTTP_KEYS,
    "asgi": frozenset({"bind", "backlog"}),
    "command": frozenset({"env", "cwd", "stop_signal", "ready_after"}),
}


@dataclass(frozen=True)
class ConfigFile:
    path: str
    supervisor: SupervisorConfig
    services: tuple[ServiceEntry, ...]
    groups: tuple[ServiceGroup, ...] = ()
    #: ``[pools.NAME]``: task pools the supervisor hosts (janus_mp.pool("NAME")).
    pools: tuple[PoolEntry, ...] = ()


@dataclass(frozen=True)
class PoolEntry:
    name: str
    config: PoolConfig


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> ConfigFile:
    """Read and validate a config file; ``overrides`` are supervisor keys from CLI flags."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from None
    return parse_config(data, str(path), overrides)


def parse_config(data: Mapping[str, Any], path: str = "<config>",
                 overrides: Mapping[str, Any] | None = None) -> ConfigFile:
    _check_keys(data, {"supervisor", "services", "groups", "hooks", "pools"}, "")
    supervisor_table = dict(_table(data.get("supervisor", {}), "supervisor"))
    supervisor_table.update(overrides or {})
    if "hooks" in data:
        supervisor_table["hooks"] = _build_hooks(_table(data["hooks"], "hooks"))
    supervisor = _build_supervisor(supervisor_table)
    services_table = _table(data.get("services", {}), "services")
    services = tuple(_build_service(name, _table(table, _key("services", name)))
                     for name, table in services_table.items())
    groups_table = _table(data.get("groups", {}), "groups")
    groups = tuple(_build_group(name, _table(table, _key("groups", name)))
                   for name, table in groups_table.items())
    check_tree(groups, {s.name: s.options.depends_on for s in services})
    check_auto_shutdown(groups, [s.name for s in services if s.options.significant],
                        supervisor.auto_shutdown)
    pools_table = _table(data.get("pools", {}), "pools")
    pools = tuple(_build_pool(name, _table(table, _key("pools", name)))
                  for name, table in pools_table.items())
    names = {s.name for s in services}
    for entry in pools:
        if entry.name in names:
            raise ConfigError(_key("pools", entry.name), "a service has this name: a pool's "
                                                         "workers are a service of that name")
    return ConfigFile(path=path, supervisor=supervisor, services=services, groups=groups,
                      pools=pools)


def _build_pool(name: str, table: Mapping[str, Any]) -> PoolEntry:
    prefix = _key("pools", name)
    if not valid_service_name(name):
        raise ConfigError(prefix, "pool names are letters, digits, '-', '_' or '.'")
    if "start_method" in table:
        raise ConfigError(f"{prefix}.start_method", "set it in [supervisor]: a hosted pool's "
                                                    "workers start like every service's")
    _check_keys(table, {f.name for f in fields(PoolConfig)} - {"process"} | PROCESS_KEYS,
                prefix)
    kwargs: dict[str, Any] = {k: v for k, v in table.items() if k not in PROCESS_KEYS}
    if kwargs.get("workers") == "auto":
        kwargs["workers"] = usable_cpus()
    if "backoff" in kwargs:
        kwargs["backoff"] = _build_backoff(kwargs["backoff"], f"{prefix}.backoff")
    if "initializer" in kwargs and not isinstance(kwargs["initializer"], str):
        raise ConfigError(f"{prefix}.initializer", "must be \"module:attribute\"")
    try:
        process = ProcessSettings(**{k: v for k, v in table.items() if k in PROCESS_KEYS})
        return PoolEntry(name, PoolConfig(process=process, **kwargs))
    except ConfigError as exc:
        raise exc.under(prefix) from None


def _build_group(name: str, table: Mapping[str, Any]) -> ServiceGroup:
    prefix = _key("groups", name)
    _check_keys(table, {f.name for f in fields(ServiceGroup)} - {"name"}, prefix)
    if "members" not in table:
        raise ConfigError(f"{prefix}.members", "is required (a list of service or group names)")
    if not isinstance(table["members"], list):
        raise ConfigError(f"{prefix}.members", "must be a list of service or group names")
    try:
        return ServiceGroup(name=name, **table)
    except ConfigError as exc:
        raise exc.under(prefix) if exc.key != "name" else ConfigError(
            prefix, "group names are letters, digits, '-', '_' or '.'") from None


def _build_supervisor(table: Mapping[str, Any]) -> SupervisorConfig:
    names = {f.name for f in fields(SupervisorConfig)}
    _check_keys(table, names, "supervisor")
    kwargs = dict(table)
    if "backoff" in kwargs:
        kwargs["backoff"] = _build_backoff(kwargs["backoff"], "supervisor.backoff")
    try:
        return SupervisorConfig(**kwargs)
    except ConfigError as exc:
        raise exc.under("supervisor") from None


PROCESS_KEYS = frozenset(f.name for f in fields(ProcessSettings))
_ADAPTER_KEYS = set(KINDS) | set().union(*KINDS.values())
_CODE_KEYS = ("success_codes", "no_restart_codes", "force_restart_codes", "halt_codes")


def _build_service(name: str, table: Mapping[str, Any]) -> ServiceEntry:
    prefix = _key("services", name)
    if not valid_service_name(name):
        raise ConfigError(prefix, "service names are letters, digits, '-', '_' or '.'")
    names = {f.name for f in fields(SpawnOptions)} - {"name", "process"} | _ADAPTER_KEYS | \
        PROCESS_KEYS
    _check_keys(table, names, prefix)
    kinds = [kind for kind in KINDS if kind in table]
    if len(kinds) != 1:
        raise ConfigError(prefix, f"give exactly one of {', '.join(KINDS)} "
                                  f"({'none' if not kinds else ' and '.join(kinds)} given)")
    kind = kinds[0]
    target = table[kind]
    if kind == "command":
        if not (isinstance(target, str) and target.strip()) and not (
                isinstance(target, list) and target and all(isinstance(a, str) for a in target)):
            raise ConfigError(f"{prefix}.command", "must be a command line or a list of "
                                                   "arguments")
    elif not isinstance(target, str) or not target or (kind != "module" and ":" not in target):
        raise ConfigError(f"{prefix}.{kind}",
                          "must be \"module\" or \"module:attribute\"" if kind == "module"
                          else "must be \"module:attribute\"")
    # env and cwd set up every kind's workers; a command's adapter gets them too (it finds
    # its program from there)
    settings = {k: v for k, v in table.items() if k in _ADAPTER_KEYS and k not in KINDS
                and (k not in PROCESS_KEYS or k in KINDS[kind])}
    for key in settings:
        if key not in KINDS[kind]:
            users = [k for k, allowed in KINDS.items() if key in allowed]
            raise ConfigError(f"{prefix}.{key}", f"only for {' and '.join(users)} services")
    kwargs: dict[str, Any] = {k: v for k, v in table.items()
                              if k not in _ADAPTER_KEYS and k not in PROCESS_KEYS}
    try:
        kwargs["process"] = ProcessSettings(**{k: v for k, v in table.items()
                                               if k in PROCESS_KEYS})
    except ConfigError as exc:
        raise exc.under(prefix) from None
    if "backoff" in kwargs:
        kwargs["backoff"] = _build_backoff(kwargs["backoff"], f"{prefix}.backoff")
    if "restart" in kwargs:
        try:
            kwargs["restart"] = RestartPolicy.parse(str(kwargs["restart"]))
        except ConfigError as exc:
            raise exc.under(prefix) from None
    for key in _CODE_KEYS:
        if key in kwargs and not isinstance(kwargs[key], list):
            raise ConfigError(f"{prefix}.{key}", "must be a list of exit codes")
    if kwargs.get("workers") == "auto":  # as many as the CPUs this supervisor may use
        kwargs["workers"] = usable_cpus()
    try:
        options = SpawnOptions(name=name, **kwargs)
    except ConfigError as exc:
        raise exc.under(prefix) from None
    return ServiceEntry(name=name, target=target, options=options, kind=kind, settings=settings)


def _build_hooks(table: Mapping[str, Any]) -> HooksConfig:
    _check_keys(table, {f.name for f in fields(HooksConfig)}, "hooks")
    try:
        return HooksConfig(**table)
    except ConfigError as exc:
        raise exc.under("hooks") from None


def _build_backoff(value: Any, prefix: str) -> BackoffConfig:
    table = _table(value, prefix)
    _check_keys(table, {f.name for f in fields(BackoffConfig)}, prefix)
    try:
        return BackoffConfig(**table)
    except ConfigError as exc:
        raise exc.under(prefix) from None
    except TypeError as exc:  # pragma: no cover - _check_keys catches unknown names first
        raise ConfigError(prefix, str(exc)) from None


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]+")


def _key(prefix: str, key: object) -> str:
    """A key path for an error line: odd keys are quoted, so a message stays one line."""
    text = str(key) if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else json.dumps(str(key))
    return f"{prefix}.{text}" if prefix else text


def _table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, "must be a table")
    return value


def _check_keys(table: Mapping[str, Any], known: set[str], prefix: str) -> None:
    for key in table:
        if key not in known:
            path = _key(prefix, key)
            foreign = foreign_hint(str(key))
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = (f" ({foreign})" if foreign else f" (did you mean {close[0]!r}?)" if close
                    else f" (known: {_listing(known)})")
            raise ConfigError(path, f"unknown key{hint}")


def _listing(names: set[str], limit: int = 160) -> str:
    """Known keys for an error line, cut short so the line stays readable."""
    text = ""
    for count, name in enumerate(sorted(names)):
        if len(text) + len(name) > limit:
            return f"{text}, ... {len(names) - count} more"
        text = f"{text}, {name}" if text else name
    return text
