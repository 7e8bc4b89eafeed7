"""What a config table or a flag names, built into a service: ``kind`` (target, wsgi, asgi,
command, module) and a target become a JanusService (or, for a TARGET, a configured
JanusSupervisor). Importing and calling user code happens here; whatever it does — raise,
``sys.exit()``, a KeyboardInterrupt — comes out as one :class:`ServiceLoadError` line.
"""

from __future__ import annotations

import inspect
from typing import Any

from janus_mp.adapters import ApiModuleAdapter, CommandAdapter, ModuleAdapter
from janus_mp.errors import ConfigError, JanusError, ServiceLoadError
from janus_mp.runtime.supervisor import JanusSupervisor
from janus_mp.service import JanusService, as_service
from janus_mp.targets import import_target, what_it_did

#: The adapter each kind of config table builds; ``target`` is whatever the target names.
ADAPTERS: dict[str, type[JanusService]] = {
    "wsgi": ApiModuleAdapter, "asgi": ApiModuleAdapter, "command": CommandAdapter,
    "module": ModuleAdapter,
}


def build_service(kind: str, target: Any, *, name: str | None = None,
                  settings: dict[str, Any] | None = None, key: str = "") -> Any:
    """The service a config table or CLI flags describe: ``kind`` is target, wsgi, asgi,
    command or module; errors name ``key`` (``services.web``)."""
    settings = dict(settings or {})
    try:
        if kind == "target":
            resolved = resolve_target(target)
            if len(resolved) != 1 or isinstance(resolved[0], JanusSupervisor):
                raise ServiceLoadError(f"target {target!r} must name one service")
            return resolved[0]
        if kind in ("wsgi", "asgi"):
            return ApiModuleAdapter(target, interface=kind, name=name, **settings)
        if kind == "command":
            return CommandAdapter(target, name=name, **settings)
        if kind == "module":
            codes = settings.pop("exit_codes", {})
            if not isinstance(codes, dict):
                raise ConfigError("exit_codes", 'must be a table of "module:Exception" = code')
            exit_codes = {_exception_class(k): v for k, v in codes.items()}
            return ModuleAdapter(target, name=name, exit_codes=exit_codes)
    except ConfigError as exc:
        raise exc.under(key) from None
    except JanusError as exc:
        raise JanusError(f"{key}.{kind}: {exc}" if key else str(exc)) from None
    raise ServiceLoadError(f"{key}: unknown kind of service {kind!r}")


def instantiate(service: Any, name: str | None, where: str) -> JanusService:
    """A JanusService instance: a class is instantiated here, once, as the runtime would;
    whatever its ``__init__`` does becomes one line starting with ``where``."""
    if isinstance(service, type) and issubclass(service, JanusService):
        try:
            service = service()
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: user code did it
            raise ServiceLoadError(f"{where}: {service.__name__}() "
                                   f"{what_it_did(exc)}") from None
    return as_service(service, name)




def _exception_class(target: str) -> type[BaseException]:
    cls = import_target(target)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        raise ConfigError("exit_codes", f"{target!r} is not an exception class")
    return cls


def resolve_target(target: str) -> list[Any]:
    """What a target names, as a list of services, or ``[supervisor]`` for a JanusSupervisor.

    Accepted: a JanusService (instance or class), a callable ``fn(ctx)``, a list or tuple of
    those, a configured JanusSupervisor, or a factory (a callable taking no arguments) that
    returns any of these.
    """
    obj = import_target(target)
    for _ in range(3):  # a factory may return another accepted thing, not forever
        if isinstance(obj, JanusSupervisor):
            return [obj]
        if isinstance(obj, (list, tuple)):
            if not obj:
                raise ServiceLoadError(f"target {target!r} is an empty list")
            for item in obj:
                _check_service(item, target)
            return list(obj)
        if isinstance(obj, JanusService) or (isinstance(obj, type) and
                                             issubclass(obj, JanusService)):
            return [obj]
        if callable(obj):
            if _is_factory(obj):
                try:
                    obj = obj()
                except BaseException as exc:  # SystemExit, KeyboardInterrupt: user code
                    raise ServiceLoadError(f"target {target!r}: factory "
                                           f"{what_it_did(exc)}") from None
                continue
            return [obj]
        break
    raise ServiceLoadError(
        f"target {target!r} is a {type(obj).__name__}: expected a JanusService, a function "
        "taking ctx, a list of those, a JanusSupervisor, or a factory returning one")


def _check_service(item: Any, target: str) -> None:
    if isinstance(item, JanusService) or (isinstance(item, type) and
                                          issubclass(item, JanusService)):
        return
    if callable(item) and not _is_factory(item):
        return
    raise ServiceLoadError(f"target {target!r} lists {item!r}, which is not a service")


def _is_factory(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.default is p.empty and
                p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return not required
