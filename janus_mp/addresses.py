"""Listening addresses as users write them: ``HOST:PORT``, ``[::1]:PORT``, ``:PORT`` or ``PORT``
(127.0.0.1 — loopback unless told otherwise), ``unix:/path`` and ``fd://N``.

Parsing only; binding is the runtime's (:mod:`janus_mp.runtime.listeners`). Adapters and the
config file validate addresses here without importing the runtime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from janus_mp.errors import ConfigError

DEFAULT_BACKLOG = 2048
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class BindAddress:
    """One parsed ``--bind`` value; ``text`` is the canonical spelling shown in logs."""

    kind: str  # tcp | unix | fd
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    @property
    def text(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        return host_port(self.host, self.port)


def parse_bind(value: object, key: str = "bind") -> BindAddress:
    """Parse one address; a bad one raises ConfigError naming ``key``."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, "must be HOST:PORT, unix:PATH or fd://N")
    text = value.strip()
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path or "\0" in path:
            raise ConfigError(key, f"{text!r}: unix: needs a socket path")
        return BindAddress("unix", path=os.path.abspath(path))
    if text.startswith("fd://"):
        number = text[len("fd://"):]
        if not number.isdigit():
            raise ConfigError(key, f"{text!r}: fd:// needs a file descriptor number")
        return BindAddress("fd", fd=int(number))
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ConfigError(key, f"{text!r}: an IPv6 address looks like [::1]:8000")
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    else:
        host, port_text = "", text
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(key, f"{text!r}: the port must be a number from 0 to 65535")
    return BindAddress("tcp", host=host or DEFAULT_HOST, port=int(port_text))


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


