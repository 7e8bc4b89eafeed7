"""Composition: a config file plus command-line flags, built into a supervisor.

    RunFlags (cli.py parsed them) ─┐
                                   ├─► plan(): read the file, import and build every service,
    the config file ───────────────┘   validate all of it ─► Plan (nothing started or bound)
        run     Plan ─► JanusSupervisor + spawn_service ─► Deployment (control socket, reload)
        check   plan() alone: "ok", or the very line `run` would print
        reload  the file's services again, validated whole, then applied to the live supervisor

`run`, `check` and `reload` all come through :func:`plan_services` and :func:`validate`, so
`check` refuses exactly what `run` refuses, in the same words; only what needs the machine
(binding a port, the control socket, the metrics endpoint) is left to `run`. Every error is one
:class:`JanusError` line naming where the bad value came from: a config key path
(``services.web.workers``), a flag (``--workers``) or a target. Building one service from a
table or a flag (importing user code) is :mod:`janus_mp.app.services`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from janus_mp.app.code_changes import CodeFingerprints
from janus_mp.app.config_file import ConfigFile, PoolEntry, load_config
from janus_mp.app.deploy import Deployment, Reloader
from janus_mp.app.logs import SupervisorLog
from janus_mp.app.service_logs import ServiceLogs
from janus_mp.app.services import ADAPTERS, build_service, instantiate, resolve_target
from janus_mp.app.upgrade import Handover
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from janus_mp.core.ordering import creation_order
from janus_mp.core.pool_config import PoolConfig
from janus_mp.core.tree import ServiceGroup
from janus_mp.errors import ConfigError, JanusError
from janus_mp.pools.hosted import HostedPools
from janus_mp.runtime.process_settings import check as check_process_settings
from janus_mp.runtime.specs import check_heartbeat, make_spec
from janus_mp.runtime.supervisor import JanusSupervisor
from janus_mp.service import JanusService

#: Where /metrics is served when neither a flag nor a config file says.
DEFAULT_METRICS: dict[str, Any] = {"metrics_host": "127.0.0.1", "metrics_port": 9464}


@dataclass(frozen=True)
class RunFlags:
    """What the command line asked for; ``None`` or empty means "not given"."""

    config_path: str | None = None
    #: The service named on the command line: its kind (target, wsgi, asgi, command, module)
    #: and what it names (``module:attr``, a command line...).
    kind: str | None = None
    target: str | None = None
    #: Adapter settings of that service (bind, backlog, threads).
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: SpawnOptions fields every service gets (-w, --restart, recycling flags).
    service_overrides: Mapping[str, Any] = field(default_factory=dict)
    #: ProcessSettings fields every service's workers get (--user, --umask, -e...); env is
    #: added to each service's own.
    process_overrides: Mapping[str, Any] = field(default_factory=dict)
    #: SupervisorConfig fields (--metrics-bind, --start-method, --shutdown-timeout...).
    supervisor_overrides: Mapping[str, Any] = field(default_factory=dict)
    #: --name, when given: the supervisor's name, and the name of a --wsgi/--asgi/--command/
    #: --module service.
    name: str | None = None
    #: --socket: a path, "off", or None for the default path from the name.
    socket_path: str | None = None
    #: How to start this same command again, for `janus-mp upgrade` (empty: no upgrades).
    upgrade_argv: tuple[str, ...] = ()
    #: --reload: watch the Python files under this directory (development only).
    watch_root: str | None = None


@dataclass(frozen=True)
class PlannedService:
    """A service built and its options settled; ``origin`` says where it was asked for
    (``services.web`` for a config table, empty for the command line)."""

    service: JanusService
    options: SpawnOptions
    origin: str = ""


@dataclass(frozen=True)
class Plan:
    """Everything `run` would start, validated; nothing started, nothing bound."""

    config: SupervisorConfig
    services: tuple[PlannedService, ...]
    #: What this supervisor runs, for its process title.
    what: str
    #: A TARGET that named a configured JanusSupervisor: run as it is.
    prebuilt: JanusSupervisor | None = None
    #: The config file's supervision-tree groups (checked against its services).
    groups: tuple[ServiceGroup, ...] = ()
    #: The config file's ``[pools.NAME]``: task pools this supervisor hosts.
    pools: tuple[PoolEntry, ...] = ()


def plan(flags: RunFlags, log: SupervisorLog | None = None) -> Plan:
    """Read the config file, import and build every service, validate the whole."""
    config_file = load_config(flags.config_path) if flags.config_path is not None else None
    config = supervisor_config(config_file, flags)
    try:
        services = plan_services(config_file, flags)
        from_command_line = _command_line_services(flags)
    finally:
        if log is not None:
            log.reclaim()  # the app's import may have reconfigured logging
    if isinstance(from_command_line, JanusSupervisor):
        if services:
            raise JanusError("a JanusSupervisor target cannot be combined with config-file "
                             "services")
        return Plan(from_command_line.config, (), flags.target or "",
                    prebuilt=from_command_line)
    services += from_command_line
    validate(config, services)
    what = flags.config_path or ""
    if flags.kind == "target":
        what = flags.target or ""
    elif flags.kind is not None:
        what = f"--{flags.kind} {flags.target}"
    groups = config_file.groups if config_file is not None else ()
    pools = config_file.pools if config_file is not None else ()
    return Plan(config, tuple(services), what, groups=groups, pools=pools)


def build_supervisor(planned: Plan, handover: Handover | None = None) -> JanusSupervisor:
    """A supervisor with every planned service registered (their listeners are bound here,
    or adopted from the supervisor that handed them over)."""
    if planned.prebuilt is not None:
        return planned.prebuilt
    sup = JanusSupervisor(planned.config)
    if handover is not None:
        sup.handover.adopt(handover.listeners, handover.metrics_fd, handover.old_pid)
    for entry in planned.services:
        try:
            sup.spawn_service(entry.service, entry.options)
        except ConfigError as exc:
            raise _refusal(entry, exc) from None
    for group in creation_order(planned.groups):
        try:
            sup.spawn_group(group)
        except ConfigError as exc:
            raise exc.under(f"groups.{group.name}") from None
    return sup


def deployment(flags: RunFlags, log: SupervisorLog | None = None) -> Deployment:
    """`janus-mp run`: the supervisor the flags and file describe, with its control socket,
    config reload and log reopening."""
    handover = Handover.from_environ()  # first: adopted, not bound, by build_supervisor
    planned = plan(flags, log)
    sup = build_supervisor(planned, handover)
    hosted = host_pools(sup, planned.pools)
    reopen = log.reopen if log is not None else None
    writer = log.writer if log is not None else None
    if log is not None:
        log.set_format(sup.config.log_format)
    outputs = service_logs(sup.config)
    if log is not None:
        log.tail_into(outputs)
    socket_path = control_socket_path(flags.socket_path, sup.config.name)
    if handover is not None:
        handover.close_unused(sup, metrics=sup.config.metrics_port is not None,
                              control=socket_path)
    if planned.prebuilt is not None:
        return Deployment(sup, socket_path=socket_path, reopen_logs=reopen, log_writer=writer,
                          service_logs=outputs)
    reload = None
    code = CodeFingerprints(sup.config.start_method or "fork")
    for entry in planned.services:
        code.record(entry.options.name or entry.service.name, entry.service)
    if flags.config_path is not None:
        managed = {entry.options.name for entry in planned.services if entry.origin}
        reload = reloader(flags, log, {name for name in managed if name}, planned.groups,
                          code)
    return Deployment(sup, socket_path=socket_path, reloader=reload, reopen_logs=reopen,
                      log_writer=writer, title=f"janus-mp: supervisor {planned.what}",
                      upgrade_argv=list(flags.upgrade_argv) or None, handover=handover,
                      watch_root=flags.watch_root, service_logs=outputs, pools=hosted)


def host_pools(sup: JanusSupervisor, pools: tuple[PoolEntry, ...]) -> HostedPools | None:
    """The config file's pools, registered with ``sup`` and reachable by its workers."""
    if not pools:
        return None
    hosted = HostedPools(sup)
    try:
        for entry in pools:
            try:
                hosted.add(entry.name, entry.config)
            except ConfigError as exc:
                raise exc.under(f"pools.{entry.name}") from None
        hosted.expose()
    except BaseException:
        hosted.close()
        raise
    return hosted


def service_logs(config: SupervisorConfig) -> ServiceLogs:
    """Where the workers' captured output goes, from ``log_dir``, ``log_max_bytes``,
    ``log_backups`` and ``log_format``."""
    assert isinstance(config.log_max_bytes, int)
    logs = ServiceLogs(config.log_dir, max_bytes=config.log_max_bytes,
                       backups=config.log_backups, log_format=config.log_format,
                       separate_stderr=config.log_stderr == "separate")
    logs.open()  # creates log_dir: a bad one refuses to start, in one line
    return logs


def check(config_path: str, *, imports: bool = True) -> tuple[list[str], list[str]]:
    """`janus-mp check`: what `run -c FILE` would refuse, refused the same way; returns the
    services' names and warnings (settings that run but likely do not mean what was meant).
    Without ``imports``, only what needs no import of user code (the file, pool sizes,
    watchdogs on adapters that cannot heartbeat)."""
    flags = RunFlags(config_path=config_path)
    if imports:
        planned = plan(flags)
        return ([entry.service.name for entry in planned.services],
                _warnings(planned.config, [(entry.service.name, entry.options)
                                           for entry in planned.services]))
    config_file = load_config(config_path)
    config = supervisor_config(config_file, flags)
    for entry in config_file.services:
        refusal = _refused_options(entry.options, config, ADAPTERS.get(entry.kind))
        if refusal is not None:
            raise refusal.under(f"services.{entry.name}")
    return ([entry.name for entry in config_file.services],
            _warnings(config, [(entry.name, entry.options) for entry in config_file.services]))


def _warnings(config: SupervisorConfig, services: list[tuple[str, SpawnOptions]]) -> list[str]:
    lines = []
    for name, options in services:
        backoff = options.backoff or config.backoff
        where = f"services.{name}.backoff" if options.backoff else "supervisor.backoff"
        warning = backoff.start_count_warning()
        if warning is not None:
            lines.append(f"{where}: {warning}" + ("" if options.backoff else f" ({name})"))
    return lines


def reloader(flags: RunFlags, log: SupervisorLog | None, managed: set[str],
             groups: tuple[ServiceGroup, ...] = (),
             code: CodeFingerprints | None = None) -> Reloader:
    """HUP / `janus-mp reload`: read the file again, build and validate all of it against the
    running supervisor, and only then apply it (any error changes nothing). Groups are fixed
    while the supervisor runs: a file whose [groups] changed is refused. Under spawn and
    forkserver, services whose source files changed are rolling-restarted onto the new code."""
    assert flags.config_path is not None
    path = flags.config_path
    state = {"managed": set(managed)}

    def reload(sup: JanusSupervisor) -> str:
        config_file = load_config(path)
        if sorted(config_file.groups, key=lambda g: g.name) != sorted(groups,
                                                                    key=lambda g: g.name):
            raise ConfigError("groups", "cannot change while the supervisor runs; restart it")
        try:
            services = plan_services(config_file, flags)
        finally:
            if log is not None:
                log.reclaim()
        validate(sup.config, services)
        names = {entry.options.name for entry in services if entry.options.name}
        for entry in services:
            try:
                sup.update_service(entry.service, entry.options)
            except ConfigError as exc:
                raise _refusal(entry, exc) from None
        removed = sorted(state["managed"] - names)
        for gone in removed:
            sup.remove_service(gone)
        state["managed"] = names
        summary = f"{len(services)} services applied" + (f", removed {', '.join(removed)}"
                                                         if removed else "")
        if code is not None:
            summary += code.apply(sup, [(entry.options.name or entry.service.name,
                                         entry.service) for entry in services])
        return summary

    return reload


def demo_deployment(workers: int, supervisor_overrides: Mapping[str, Any],
                    web: str | None, log: SupervisorLog | None = None
                    ) -> tuple[Deployment, str]:
    """`janus-mp demo`, and where to look at it (empty with metrics off)."""
    from janus_mp.app.demo import POOL, demo_services

    config = SupervisorConfig(name="janus-mp-demo", **{**DEFAULT_METRICS,
                                                       **supervisor_overrides})
    sup = JanusSupervisor(config)
    try:
        services = demo_services(workers, web)
    except ConfigError as exc:
        raise JanusError(f"--http-{exc.key}: {exc.rule}") from None
    for service, options in services:
        sup.spawn_service(service, options)
    # the web service's /pool hands its CPU work to this pool's workers
    hosted = host_pools(sup, (PoolEntry(POOL, PoolConfig(workers=workers, task_timeout=60.0)),)
                        if web is not None else ())
    deployment = Deployment(sup, socket_path=control_socket_path(None, config.name),
                            title="janus-mp: supervisor demo",
                            log_writer=log.writer if log is not None else None,
                            service_logs=service_logs(config), pools=hosted)
    if config.metrics_port is None:
        return deployment, ""
    site = "".join(f"; web at http://{address}/primes?n=50000 (and /pool?n=50000)"
                   for address in sup.listening_addresses("web")
                   if not address.startswith("unix:"))
    return deployment, (f"metrics at http://{config.metrics_host}:{config.metrics_port}"
                        f"/metrics{site}")


def control_socket_path(option: str | None, name: str) -> str | None:
    from janus_mp.app.control import default_socket_path

    if option is not None and option.lower() in ("off", "none", ""):
        return None
    return option or default_socket_path(name)


# ----------------------------------------------------------------------------------------------
# Building: the supervisor's settings and the services, with the flags on top
# ----------------------------------------------------------------------------------------------
def supervisor_config(config_file: ConfigFile | None, flags: RunFlags) -> SupervisorConfig:
    """The file's [supervisor] table (or the defaults) with the flags on top."""
    base = config_file.supervisor if config_file else SupervisorConfig(**DEFAULT_METRICS)
    overrides = dict(flags.supervisor_overrides)
    if flags.name is not None:
        overrides["name"] = flags.name
    try:
        return dataclasses.replace(base, **overrides)
    except ConfigError as exc:
        raise _flag_error(exc) from None


def plan_services(config_file: ConfigFile | None, flags: RunFlags) -> list[PlannedService]:
    """The config file's services, built, with the flags' SpawnOptions on top."""
    if config_file is None:
        return []
    overrides = _service_overrides(flags)
    planned = []
    for entry in config_file.services:
        origin = f"services.{entry.name}"
        service = build_service(entry.kind, entry.target, name=entry.name,
                                settings=dict(entry.settings), key=origin)
        options = _with_process(dataclasses.replace(entry.options, **overrides), flags)
        where = f"{origin}.{entry.kind}: target {entry.target!r}"
        planned.append(PlannedService(instantiate(service, options.name, where), options,
                                      origin))
    return planned


def _command_line_services(flags: RunFlags) -> list[PlannedService] | JanusSupervisor:
    if flags.kind is None or flags.target is None:
        return []
    options = _with_process(dataclasses.replace(SpawnOptions(), **_service_overrides(flags)),
                            flags)
    if flags.kind == "target":
        resolved = resolve_target(flags.target)
        if len(resolved) == 1 and isinstance(resolved[0], JanusSupervisor):
            return resolved[0]
        return [PlannedService(instantiate(service, options.name, f"target {flags.target!r}"),
                               options)
                for service in resolved]
    try:
        service = build_service(flags.kind, flags.target, name=flags.name,
                                settings=dict(flags.settings))
    except ConfigError as exc:
        raise _flag_error(exc) from None
    except JanusError as exc:
        raise JanusError(f"--{flags.kind} {flags.target}: {exc}") from None
    return [PlannedService(instantiate(service, options.name, f"target {flags.target!r}"),
                           options)]


def _with_process(options: SpawnOptions, flags: RunFlags) -> SpawnOptions:
    """The process flags over a service's own process settings (-e adds to its env)."""
    if not flags.process_overrides:
        return options
    given = dict(flags.process_overrides)
    if "env" in given:
        given["env"] = {**options.process.env, **given["env"]}
    try:
        return dataclasses.replace(options, process=dataclasses.replace(options.process,
                                                                        **given))
    except ConfigError as exc:
        raise _flag_error(exc) from None


def _service_overrides(flags: RunFlags) -> dict[str, Any]:
    overrides = dict(flags.service_overrides)
    try:
        SpawnOptions(**overrides)
    except ConfigError as exc:
        raise _flag_error(exc) from None
    return overrides


# ----------------------------------------------------------------------------------------------
# Validation: what the runtime refuses at spawn_service, refused before anything starts
# ----------------------------------------------------------------------------------------------
def validate(config: SupervisorConfig, services: list[PlannedService]) -> None:
    """Refuse what `JanusSupervisor.spawn_service` would refuse, with the runtime's own checks
    (pool size, watchdog, name, picklability), but without binding anything."""
    seen: set[str] = set()
    for entry in services:
        try:
            config.check_pool_size(entry.options.workers)
            check_process_settings(entry.options.process)
            name = make_spec(entry.service, entry.options, config.start_method or "fork").name
            if name in seen:
                raise ConfigError("name", f"a service named {name!r} is already registered")
        except ConfigError as exc:
            raise _refusal(entry, exc) from None
        seen.add(name)


def _refused_options(options: SpawnOptions, config: SupervisorConfig,
                     kind: type[JanusService] | None) -> ConfigError | None:
    """``kind`` is the service's class, None when unknown (not imported)."""
    try:
        config.check_pool_size(options.workers)
        if kind is not None:
            check_heartbeat(kind, options)
    except ConfigError as exc:
        return exc
    return None


def _refusal(entry: PlannedService, exc: ConfigError) -> ConfigError:
    """Name the key where the user wrote it: the config table, or the flag."""
    return exc.under(entry.origin) if entry.origin else _flag_error(exc)


def _flag_error(exc: ConfigError) -> ConfigError:
    return ConfigError(f"--{exc.key.replace('_', '-')}" if exc.key else "", exc.rule)
