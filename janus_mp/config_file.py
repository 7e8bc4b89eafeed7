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
    workers = 4
    restart = "on_failure"
    [services.crunch.backoff]
    initial_delay = 0.2
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from janus_mp.backoff import BackoffConfig
from janus_mp.config import SpawnOptions, SupervisorConfig, valid_service_name
from janus_mp.errors import ConfigError
from janus_mp.exits import RestartPolicy


@dataclass(frozen=True)
class ServiceEntry:
    """One ``[services.NAME]`` table: what to import, and how to run it."""

    name: str
    target: str
    options: SpawnOptions


@dataclass(frozen=True)
class ConfigFile:
    path: str
    supervisor: SupervisorConfig
    services: tuple[ServiceEntry, ...]


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
    _check_keys(data, {"supervisor", "services"}, "")
    supervisor_table = dict(_table(data.get("supervisor", {}), "supervisor"))
    supervisor_table.update(overrides or {})
    supervisor = _build_supervisor(supervisor_table)
    services_table = _table(data.get("services", {}), "services")
    services = tuple(_build_service(name, _table(table, _key("services", name)))
                     for name, table in services_table.items())
    return ConfigFile(path=path, supervisor=supervisor, services=services)


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


_SERVICE_ONLY = {"target"}
_CODE_KEYS = ("success_codes", "no_restart_codes", "force_restart_codes", "halt_codes")


def _build_service(name: str, table: Mapping[str, Any]) -> ServiceEntry:
    prefix = _key("services", name)
    if not valid_service_name(name):
        raise ConfigError(prefix, "service names are letters, digits, '-', '_' or '.'")
    names = {f.name for f in fields(SpawnOptions)} - {"name"} | _SERVICE_ONLY
    _check_keys(table, names, prefix)
    target = table.get("target")
    if not isinstance(target, str) or ":" not in target:
        raise ConfigError(f"{prefix}.target", "must be \"module:attribute\"")
    kwargs = {k: v for k, v in table.items() if k not in _SERVICE_ONLY}
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
    try:
        options = SpawnOptions(name=name, **kwargs)
    except ConfigError as exc:
        raise exc.under(prefix) from None
    return ServiceEntry(name=name, target=target, options=options)


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
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else \
                f" (known: {', '.join(sorted(known))})"
            raise ConfigError(path, f"unknown key{hint}")
