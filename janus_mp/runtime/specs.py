"""What the user asked for, checked and ready to start: a service object, its options, and
the payload a worker receives (the object itself under fork, dill bytes under spawn and
forkserver, pickled once here so that a service that cannot travel is refused at once)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from janus_mp.core.config import SpawnOptions, valid_service_name
from janus_mp.core.process_settings import ProcessSettings
from janus_mp.errors import ConfigError, ServiceLoadError
from janus_mp.service import JanusService, as_service


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    service: JanusService
    options: SpawnOptions
    payload: JanusService | bytes  # bytes: pickled once for spawn/forkserver workers

    @functools.cached_property
    def process(self) -> ProcessSettings | None:
        """The workers' process settings, None when there are none to apply (decided once
        here, not by every worker at its start)."""
        settings = self.options.process
        return None if settings is None or settings.empty else settings


def make_spec(service: JanusService | Callable[..., Any] | type, options: SpawnOptions,
              start_method: str) -> ServiceSpec:
    """Check a service as registration would (name, watchdog, picklability); raise the one-line
    error that would refuse it."""
    svc = as_service(service, options.name)
    check_heartbeat(type(svc), options)
    if not valid_service_name(svc.name):
        raise ConfigError("name", f"service name {svc.name!r} must be letters, digits, "
                                  "'-', '_' or '.' (1-64 characters)")
    payload: JanusService | bytes = svc
    if start_method != "fork":
        payload = _pickle_for_spawn(svc, start_method)
        for key in ("post_fork", "worker_exit"):
            _check_picklable(key, getattr(options, key), start_method)
    return ServiceSpec(svc.name, svc, options, payload)


def check_heartbeat(kind: type[JanusService], options: SpawnOptions) -> None:
    """A watchdog on a kind of service that cannot call ``ctx.heartbeat()`` would kill its
    workers while they work: refuse it."""
    if options.watchdog_timeout is not None and not kind.can_heartbeat:
        raise ConfigError("watchdog_timeout", f"{kind.__name__} workers cannot call "
                          "ctx.heartbeat(): a watchdog would kill them while they work")


def _pickle_for_spawn(service: JanusService, method: str) -> bytes:
    try:
        import dill

        blob: bytes = dill.dumps(service)
        dill.loads(blob)
    except Exception as exc:
        raise ServiceLoadError(
            f"service {service.name!r} cannot be sent to a {method} worker: "
            f"{type(exc).__name__}: {exc}; use the fork start method or make it picklable"
        ) from None
    return blob


def _check_picklable(key: str, fn: object, method: str) -> None:
    """post_fork / worker_exit travel to spawn and forkserver workers pickled: refuse one
    that cannot, at registration (a failed pickle at spawn time would take the loop down)."""
    if fn is None:
        return
    try:
        import dill

        dill.loads(dill.dumps(fn))
    except Exception as exc:
        raise ConfigError(key, f"cannot be sent to a {method} worker: {type(exc).__name__}: "
                               f"{exc}; use a module-level function or the fork start "
                               "method") from None
