"""A service's active health probe, as configuration (pure data, validated here).

    health = { http = "/healthz", interval = 5, timeout = 2, failures = 3 }   # the listener
    health = { http = "/healthz", port = 9000 }   # slot i answers on port 9000 + i
    health = { tcp = 9000 }                       # slot i: a TCP connect to 9000 + i
    health = { command = ["check-it", "--quick"] } # exit 0 = healthy; JANUS_PID etc. in its env

What to do with the results (counting, replacing) is :mod:`janus_mp.core.health`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from janus_mp.errors import ConfigError


class ProbeKind(StrEnum):
    HTTP = "http"
    TCP = "tcp"
    COMMAND = "command"


def _port(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 65535:
        raise ConfigError(key, "must be a port number from 1 to 65535")


def _positive(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise ConfigError(key, "must be a number > 0")


@dataclass(frozen=True)
class HealthCheck:
    """One probe per worker every ``interval`` seconds, each given ``timeout`` seconds; a worker
    failing ``failures`` probes in a row is replaced (termination reason ``unhealthy``)."""

    #: HTTP GET of this path; healthy on a 2xx or 3xx answer.
    http: str | None = None
    #: Port of the HTTP probe (slot i: ``port + i``); None = the service's own listener.
    port: int | None = None
    #: A TCP connect to this port (slot i: ``tcp + i``); healthy once it connects.
    tcp: int | None = None
    #: A program and its arguments; healthy when it exits 0 within ``timeout``.
    command: tuple[str, ...] | None = None
    host: str = "127.0.0.1"
    interval: float = 5.0
    timeout: float = 2.0
    failures: int = 3

    def __post_init__(self) -> None:
        given = [kind.value for kind in ProbeKind if getattr(self, kind.value) is not None]
        if len(given) != 1:
            raise ConfigError("", "give exactly one of http, tcp, command ("
                              f"{' and '.join(given) or 'none'} given)")
        if self.http is not None and not (isinstance(self.http, str)
                                          and self.http.startswith("/")):
            raise ConfigError("http", "must be a path starting with '/'")
        if self.port is not None:
            if self.http is None:
                raise ConfigError("port", "only for http probes")
            _port("port", self.port)
        if self.tcp is not None:
            _port("tcp", self.tcp)
        if self.command is not None:
            command = self.command
            if isinstance(command, str) or not all(isinstance(a, str) for a in command) or \
                    not command:
                raise ConfigError("command", "must be a non-empty list of strings")
            object.__setattr__(self, "command", tuple(command))
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("host", "must be a host name or address")
        _positive("interval", self.interval)
        _positive("timeout", self.timeout)
        if isinstance(self.failures, bool) or not isinstance(self.failures, int) or \
                self.failures < 1:
            raise ConfigError("failures", "must be an integer >= 1")

    @property
    def kind(self) -> ProbeKind:
        if self.http is not None:
            return ProbeKind.HTTP
        return ProbeKind.TCP if self.tcp is not None else ProbeKind.COMMAND

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> HealthCheck:
        """From a TOML inline table; errors name the key under ``health``."""
        known = {f.name for f in fields(cls)}
        for key in table:
            if key not in known:
                raise ConfigError(f"health.{key}",
                                  f"unknown key (known: {', '.join(sorted(known))})")
        try:
            return cls(**table)
        except ConfigError as exc:
            raise exc.under("health") from None

    def describe(self) -> str:
        if self.http is not None:
            return f"GET {self.http}" + (f" on port {self.port}+slot" if self.port else "")
        if self.tcp is not None:
            return f"tcp connect to port {self.tcp}+slot"
        return f"command {' '.join(self.command or ())}"
