"""What the sync WSGI engine enforces and records, with every default written once.

The limits keep gunicorn's names and defaults, so a deployment's settings carry over:

    limit_request_line        4094   longest request line (method, target, version)  → 414
    limit_request_fields       100   most header field lines                         → 431
    limit_request_field_size  8190   longest field line (name, colon, value)         → 431
    limit_request_body           0   largest request body in bytes, 0 = no limit     → 413
    header_timeout            10 s   deadline for the whole request head             → 408
    body_timeout              60 s   deadline for the whole body, from the first read → 408
    keepalive                  2 s   how long an idle persistent connection is kept
                                     (threads > 1 only; 0 = one request per connection)

The body deadline of a chunked body starts when the engine reads it ahead of the app (its
first MiB, so its framing is checked before the app runs). A deadline bounds the whole head or
body, not each read: a client trickling one byte a second
frees its worker when the deadline passes. ``timeout`` (on the adapter) still bounds each
single read or write in between.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from janus_mp.adapters.http_access_log import check_format
from janus_mp.errors import ConfigError

ACCESS_LOG_FORMATS = ("common", "combined", "json")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class HttpSettings:
    limit_request_line: int = 4094
    limit_request_fields: int = 100
    limit_request_field_size: int = 8190
    limit_request_body: int = 0
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    #: gunicorn's ``keepalive``: seconds an idle persistent connection waits for its next
    #: request, parked off the request threads. Used when a worker has threads > 1; a
    #: single-threaded worker serves one request per connection. 0 turns it off.
    keepalive: float = 2.0
    #: A file path, "-" for stderr, or None (no access log, the default).
    access_log: str | None = None
    access_log_format: str = "common"
    #: Peers whose X-Forwarded-For / X-Forwarded-Proto / Forwarded are honoured: addresses or
    #: networks, comma-separated or a list; "*" trusts every peer. Unix-socket peers are local
    #: processes with access to the socket file and are always trusted.
    forwarded_allow_ips: str | Sequence[str] = "127.0.0.1"
    trusted: tuple[Network, ...] | None = field(default=None, init=False, repr=False,
                                              compare=False)

    def __post_init__(self) -> None:
        for name in ("limit_request_line", "limit_request_fields", "limit_request_field_size"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("limit_request_body", self.limit_request_body, minimum=0)
        for name in ("header_timeout", "body_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(name, "must be a number of seconds > 0")
        if isinstance(self.keepalive, bool) or not isinstance(self.keepalive, (int, float)) \
                or self.keepalive < 0:
            raise ConfigError("keepalive", "must be a number of seconds >= 0 (0: off)")
        if self.access_log is not None and (not isinstance(self.access_log, str)
                                            or not self.access_log):
            raise ConfigError("access_log", 'must be a file path or "-" (stderr)')
        wrong = check_format(self.access_log_format) if isinstance(
            self.access_log_format, str) else "must be a layout name or a format string"
        if wrong is not None:
            raise ConfigError("access_log_format", wrong)
        object.__setattr__(self, "trusted", parse_allowed(self.forwarded_allow_ips))
        if not isinstance(self.forwarded_allow_ips, str):  # hashable, like the rest
            object.__setattr__(self, "forwarded_allow_ips", tuple(self.forwarded_allow_ips))

    @classmethod
    def from_options(cls, **given: Any) -> HttpSettings:
        """Build from keyword arguments where None means "the default"."""
        known = {f.name for f in fields(cls) if f.init}
        return cls(**{k: v for k, v in given.items() if k in known and v is not None})

    def max_head_bytes(self) -> int:
        """The most a complete head can take under these limits (line, fields, blank line)."""
        return (self.limit_request_line + 2 +
                self.limit_request_fields * (self.limit_request_field_size + 2) + 2)

    def trusts(self, peer: str) -> bool:
        """Whether forwarding headers from ``peer`` (an IP, "" for a unix socket) count."""
        if self.trusted is None or not peer:
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)


#: The settings' names: keys of a ``[services.X]`` wsgi table and --flags of ``janus-mp run``.
HTTP_KEYS = frozenset(f.name for f in fields(HttpSettings) if f.init)


def parse_allowed(value: str | Sequence[str]) -> tuple[Network, ...] | None:
    """None means every peer; else the networks (a bare address is a /32 or /128)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    entries = [item.strip() for item in items if isinstance(item, str) and item.strip()]
    if not isinstance(value, str) and len(entries) != len(items):
        raise ConfigError("forwarded_allow_ips", "must be addresses or networks (strings)")
    if "*" in entries:
        return None
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError("forwarded_allow_ips",
                              f"{entry!r} is not an IP address or network") from None
    return tuple(networks)


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(name, f"must be an integer >= {minimum}")
