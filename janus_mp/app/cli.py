"""The ``janus-mp`` command: run a target gunicorn-style, validate a config, run the demo.

Every option can come from a ``JANUS_MP_*`` environment variable (``JANUS_MP_RUN_WORKERS``...,
click's auto_envvar_prefix); flags override the config file; both fill the same dataclasses as
the Python API. User mistakes print one line and exit 2, never a traceback.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from janus_mp.app.config_file import KINDS, ConfigFile, load_config
from janus_mp.app.deploy import Deployment
from janus_mp.app.log_writer import LogWriter
from janus_mp.core.config import START_METHODS, SpawnOptions, SupervisorConfig
from janus_mp.core.exits import RestartPolicy
from janus_mp.errors import ConfigError, JanusError
from janus_mp.safe_paths import identity, open_no_follow, unlink_if_same
from janus_mp.version import __version__

USAGE_ERROR = 2


def main() -> None:
    cli(auto_envvar_prefix="JANUS_MP")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="janus-mp")
def cli() -> None:
    """janus-mp: supervise pools of CPU-bound worker processes."""


def _fail(message: str) -> NoReturn:
    click.echo(f"janus-mp: error: {message}", err=True)
    sys.exit(USAGE_ERROR)


def _bind(value: str | None) -> tuple[str, int] | None:
    if value is None or value.lower() in ("", "off", "none"):
        return None
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        _fail(f"--metrics-bind {value!r}: expected HOST:PORT with a port from 0 to 65535")
    return host, int(port)


LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


def _setup_logging(level: str, log_file: str | None = None
                   ) -> tuple[LogWriter, Callable[[], None] | None]:
    """Log to stderr, or to a file that SIGUSR1 reopens (for logrotate), through a writer
    thread (a stalled stderr must not block the supervisor); returns it and the reopener."""
    target: logging.StreamHandler[Any]
    if log_file is None:
        target = logging.StreamHandler(sys.stderr)
    else:
        try:
            target = _NoFollowFileHandler(log_file)
        except (OSError, JanusError) as exc:
            _fail(f"--log-file {log_file}: {getattr(exc, 'rule', None) or exc}")
    target.setFormatter(logging.Formatter(LOG_FORMAT))
    writer = LogWriter(target)
    writer.start()
    atexit.register(writer.stop)  # before logging's own shutdown: atexit runs last-in first
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[writer])
    if not isinstance(target, _NoFollowFileHandler):
        return writer, None
    file_handler = target

    def reopen() -> None:
        file_handler.acquire()
        try:
            file_handler.close()
            file_handler.stream = file_handler._open()
        finally:
            file_handler.release()

    return writer, reopen


class _NoFollowFileHandler(logging.FileHandler):
    """A log file opened (and reopened by SIGUSR1) without following a symlink at its path."""

    def _open(self) -> Any:
        fd = open_no_follow(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


def _supervise(build: Callable[[], Any], pid_file: str | None) -> NoReturn:
    """Build the supervisor (errors → one line, exit 2), then run it to its exit status."""
    try:
        sup = build()
    except JanusError as exc:
        _fail(str(exc))
    written: tuple[int, int] | None = None
    if pid_file:
        try:
            fd = open_no_follow(pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            written = identity(pid_file)
        except (OSError, ConfigError) as exc:
            _fail(f"--pid-file {pid_file}: {getattr(exc, 'rule', None) or exc}")
    try:
        status = sup.run()
    except JanusError as exc:
        _fail(str(exc))
    finally:
        if pid_file:
            unlink_if_same(pid_file, written)  # ours only: never a file put there since
    sys.exit(status)


_COMMON = [
    click.option("-w", "--workers", type=click.IntRange(min=0), default=None,
                 help="Workers per service [default: 1, or the config file's]."),
    click.option("--restart", type=click.Choice([p.value for p in RestartPolicy]),
                 default=None, help="Restart policy [default: on_failure]."),
    click.option("--metrics-bind", default=None, metavar="HOST:PORT",
                 help="Serve /metrics, /healthz, /readyz here ('off' to disable) "
                      "[default: 127.0.0.1:9464]."),
    click.option("--start-method", type=click.Choice(START_METHODS), default=None,
                 help="multiprocess start method [default: fork]."),
    click.option("--shutdown-timeout", type=click.FloatRange(min=0), default=None,
                 help="Seconds of cooperative grace before SIGTERM [default: 30]."),
    click.option("--kill-timeout", type=click.FloatRange(min=0), default=None,
                 help="Seconds between SIGTERM and SIGKILL [default: 5]."),
    click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
                 default="info", show_default=True),
    click.option("--pid-file", type=click.Path(dir_okay=False), default=None,
                 help="Write the supervisor's pid here while it runs."),
    click.option("--log-file", type=click.Path(dir_okay=False), default=None,
                 help="Log here instead of stderr; SIGUSR1 reopens it."),
    click.option("--socket", "socket_path", default=None, metavar="PATH",
                 help="Control socket [default: $XDG_RUNTIME_DIR/janus-mp/NAME.sock or "
                      "/tmp/janus-mp-UID/NAME.sock; 'off' to disable]."),
    click.option("--name", default="janus-mp", show_default=True,
                 help="Supervisor name: process titles, logs, default socket name."),
]


def common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_COMMON):
        fn = option(fn)
    return fn


def _supervisor_overrides(metrics_bind: str | None, start_method: str | None,
                          shutdown_timeout: float | None, kill_timeout: float | None,
                          default_bind: str = "127.0.0.1:9464") -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    bind = _bind(metrics_bind if metrics_bind is not None else default_bind)
    if bind is None:
        overrides["metrics_port"] = None
    else:
        overrides["metrics_host"], overrides["metrics_port"] = bind
    for key, value in (("start_method", start_method), ("shutdown_timeout", shutdown_timeout),
                       ("kill_timeout", kill_timeout)):
        if value is not None:
            overrides[key] = value
    return overrides


_SERVICE_FLAGS = [
    click.option("--wsgi", "wsgi", default=None, metavar="MODULE:APP",
                 help="Serve this WSGI application from every worker (see --bind)."),
    click.option("--asgi", "asgi", default=None, metavar="MODULE:APP",
                 help="Serve this ASGI application from every worker (see --bind)."),
    click.option("--command", "command", default=None, metavar="'PROGRAM ARGS'",
                 help="Run this external program in every worker, like a supervisord program."),
    click.option("--module", "module", default=None, metavar="MODULE[:ATTR]",
                 help="Run code not written for janus-mp: start()/stop(), run()/close(), "
                      "main() or a plain callable."),
    click.option("-b", "--bind", "binds", multiple=True, metavar="ADDRESS",
                 help="Where --wsgi/--asgi listen: HOST:PORT, unix:PATH or fd://N; repeatable "
                      "[default: 127.0.0.1:8000]."),
    click.option("--backlog", type=click.IntRange(min=1), default=None,
                 help="Listen backlog of each --bind socket [default: 2048]."),
    click.option("--threads", type=click.IntRange(min=1), default=None,
                 help="Request threads per --wsgi worker [default: 1; CPU-bound code gains "
                      "nothing from more]."),
    click.option("--max-requests", type=click.IntRange(min=1), default=None,
                 help="Recycle an API worker after this many requests."),
    click.option("--max-requests-jitter", type=click.IntRange(min=0), default=None,
                 help="Add a random 0..N to --max-requests per worker."),
    click.option("--max-lifetime", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="Recycle a worker after this many seconds."),
    click.option("--max-lifetime-jitter", type=click.FloatRange(min=0), default=None,
                 help="Add a random 0..N seconds to --max-lifetime per worker."),
    click.option("--max-rss", default=None, metavar="SIZE",
                 help="Recycle a worker whose resident memory passes SIZE (512MiB, 2G...)."),
]


def service_flags(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_SERVICE_FLAGS):
        fn = option(fn)
    return fn


@cli.command()
@click.argument("target", required=False)
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML config file with [supervisor] and [services.NAME] tables.")
@common_options
@service_flags
def run(target: str | None, config_path: str | None, log_level: str, pid_file: str | None,
        log_file: str | None, socket_path: str | None, name: str, metrics_bind: str | None,
        start_method: str | None, shutdown_timeout: float | None, kill_timeout: float | None,
        **flags: Any) -> None:
    """Supervise TARGET (module:attr), an app or program given by --wsgi, --asgi, --command or
    --module, and/or the services of a config file.

    Signals: TERM/INT graceful stop (a second one kills), QUIT fast stop, HUP reload the config,
    TTIN/TTOU one worker more/fewer in every pool, USR1 reopen the log file.
    """
    log_writer, reopen = _setup_logging(log_level, log_file)
    kinds = {kind: flags.pop(kind) for kind in ("wsgi", "asgi", "command", "module")}
    given = {kind: value for kind, value in kinds.items() if value is not None}
    if target is not None:
        given = {"target": target, **given}
    if len(given) > 1:
        _fail(f"give one of TARGET, --wsgi, --asgi, --command, --module (got "
              f"{' and '.join(given)})")
    if not given and config_path is None:
        _fail("give a TARGET (module:attr), --wsgi/--asgi/--command/--module, or a --config "
              "file")
    settings = _adapter_settings(next(iter(given), None), flags)
    service_overrides = _service_overrides(flags)

    def build() -> Any:
        from janus_mp.app.build import build_service, resolve_target
        from janus_mp.runtime.supervisor import JanusSupervisor

        config_file = None
        file_default_bind = "127.0.0.1:9464"
        if config_path is not None:
            config_file = load_config(config_path)
            file_default_bind = _bind_text(config_file.supervisor)
        overrides = _supervisor_overrides(metrics_bind, start_method, shutdown_timeout,
                                          kill_timeout, file_default_bind)
        base = config_file.supervisor if config_file else SupervisorConfig()
        if base.name == "janus-mp":
            overrides["name"] = name
        sup_config = dataclasses.replace(base, **overrides)
        entries: list[tuple[Any, SpawnOptions]] = []
        if config_file is not None:
            entries += _config_services(config_file, service_overrides)
        what = config_path
        if "target" in given:
            resolved = resolve_target(target or "")
            if len(resolved) == 1 and isinstance(resolved[0], JanusSupervisor):
                if entries:
                    raise JanusError("a JanusSupervisor target cannot be combined with "
                                     "config-file services")
                return Deployment(resolved[0], socket_path=_socket(
                    socket_path, resolved[0].config.name), reopen_logs=reopen,
                    log_writer=log_writer)
            for service in resolved:
                entries.append((service, _options(SpawnOptions(), service_overrides)))
            what = target
        elif given:
            kind, value = next(iter(given.items()))
            try:
                service = build_service(kind, value, settings=settings)
            except ConfigError as exc:
                raise JanusError(f"--{exc.key.replace('_', '-')}: {exc.rule}") from None
            except JanusError as exc:
                raise JanusError(f"--{kind} {value}: {exc}") from None
            entries.append((service, _options(SpawnOptions(), service_overrides)))
            what = f"--{kind} {value}"
        sup = JanusSupervisor(sup_config)
        for service, options in entries:
            try:
                sup.spawn_service(service, options)
            except ConfigError as exc:  # a config-file service: name its table
                raise exc.under(f"services.{options.name}" if options.name else "") from None
        reloader = None
        if config_path is not None:
            reloader = _config_reloader(config_path, service_overrides,
                                        {options.name for _, options in entries})
        return Deployment(sup, socket_path=_socket(socket_path, sup_config.name),
                          reloader=reloader, reopen_logs=reopen, log_writer=log_writer,
                          title=f"janus-mp: supervisor {what}")

    _supervise(build, pid_file)


def _adapter_settings(kind: str | None, flags: dict[str, Any]) -> dict[str, Any]:
    """--bind/--backlog/--threads go to the adapter; they mean nothing for other kinds."""
    settings = {"bind": list(flags.pop("binds")) or None, "backlog": flags.pop("backlog"),
                "threads": flags.pop("threads")}
    given = {k: v for k, v in settings.items() if v is not None}
    allowed = KINDS.get(kind or "", frozenset())
    for key in given:
        if key not in allowed:
            _fail(f"--{key} applies to --wsgi/--asgi services only")
    return given


def _service_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Flags that override SpawnOptions of every service run (config-file services too)."""
    overrides = {k: v for k, v in flags.items() if v is not None}
    if "restart" in overrides:
        overrides["restart"] = RestartPolicy.parse(overrides["restart"])
    try:
        SpawnOptions(**overrides)
    except ConfigError as exc:
        _fail(f"--{exc.key.replace('_', '-')}: {exc.rule}")
    return overrides


def _socket(option: str | None, name: str) -> str | None:
    from janus_mp.app.control import default_socket_path

    if option is not None and option.lower() in ("off", "none", ""):
        return None
    return option or default_socket_path(name)


def _config_reloader(config_path: str, service_overrides: dict[str, Any],
                     managed: set[str | None]) -> Callable[[Any], str]:
    """HUP / `janus-mp reload`: read the file again and apply what changed. Any error (bad
    file, bad target) is raised before anything is touched."""
    state = {"managed": set(managed)}

    def reload(sup: Any) -> str:
        config_file = load_config(config_path)
        entries = _config_services(config_file, service_overrides)
        names = {options.name for _, options in entries}
        for service, options in entries:
            sup.update_service(service, options)
        removed = sorted(n for n in state["managed"] - names if n)
        for gone in removed:
            sup.remove_service(gone)
        state["managed"] = names
        return f"{len(entries)} services applied" + (f", removed {', '.join(removed)}"
                                                      if removed else "")

    return reload


def _bind_text(config: SupervisorConfig) -> str:
    return "off" if config.metrics_port is None else f"{config.metrics_host}:{config.metrics_port}"


def _options(base: SpawnOptions, overrides: dict[str, Any]) -> SpawnOptions:
    return dataclasses.replace(base, **overrides)


def _config_services(config: ConfigFile,
                     overrides: dict[str, Any]) -> list[tuple[Any, SpawnOptions]]:
    from janus_mp.app.build import build_service

    return [(build_service(entry.kind, entry.target, name=entry.name,
                           settings=dict(entry.settings), key=f"services.{entry.name}"),
             _options(entry.options, overrides))
            for entry in config.services]


@cli.command()
@click.argument("config_path", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--imports/--no-imports", default=True, show_default=True,
              help="Also import every service target.")
def check(config_path: str, imports: bool) -> None:
    """Validate a config file without starting anything."""
    try:
        config = load_config(config_path)
        if imports:
            _config_services(config, {})
    except JanusError as exc:
        _fail(str(exc))
    names = ", ".join(e.name for e in config.services) or "no services"
    click.echo(f"{config_path}: ok ({names})")


@cli.command()
@click.option("-w", "--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Workers for each CPU-bound demo service.")
@click.option("--metrics-bind", default="127.0.0.1:9464", show_default=True, metavar="HOST:PORT")
@click.option("--http-bind", default="127.0.0.1:8000", show_default=True, metavar="ADDRESS",
              help="Where the demo's web service listens ('off' to leave it out).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
def demo(workers: int, metrics_bind: str, http_bind: str, log_level: str) -> None:
    """Run the built-in demo: primes, hasher, a flaky service and a web service (a WSGI app
    served by every worker from one port), with /metrics."""
    log_writer, _ = _setup_logging(log_level)

    def build() -> Any:
        from janus_mp.app.demo import demo_services
        from janus_mp.runtime.supervisor import JanusSupervisor

        overrides = _supervisor_overrides(metrics_bind, None, 10.0, None)
        sup = JanusSupervisor(SupervisorConfig(name="janus-mp-demo", **overrides))
        web = None if http_bind.lower() in ("off", "none", "") else http_bind
        try:
            services = demo_services(workers, web)
        except ConfigError as exc:
            raise JanusError(f"--http-{exc.key}: {exc.rule}") from None
        for service, options in services:
            sup.spawn_service(service, options)
        deployment = Deployment(sup, socket_path=_socket(None, "janus-mp-demo"),
                                title="janus-mp: supervisor demo", log_writer=log_writer)
        if overrides.get("metrics_port") is not None:
            host, port = overrides["metrics_host"], overrides["metrics_port"]
            site = "".join(f"; web at http://{a}/primes?n=50000"
                           for a in sup.listening_addresses("web") if not a.startswith("unix:"))
            click.echo(f"janus-mp demo: metrics at http://{host}:{port}/metrics{site}; "
                       f"try `janus-mp status --name janus-mp-demo` or `janus-mp top --name "
                       f"janus-mp-demo` (Ctrl-C to stop)", err=True)
        return deployment

    _supervise(build, None)


# ------------------------------------------------------------------------------------------
# Talking to a running supervisor over its control socket
# ------------------------------------------------------------------------------------------
def _client_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--socket", "socket_path", default=None, metavar="PATH",
                      help="Control socket of the supervisor [default: from --name].")(fn)
    fn = click.option("--name", default="janus-mp", show_default=True,
                      help="Name of the supervisor to talk to.")(fn)
    fn = click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0,
                      show_default=True,
                      help="Seconds to wait for the supervisor to accept and answer.")(fn)
    return fn


def _call(socket_path: str | None, name: str, timeout: float, command: str,
          **args: Any) -> Any:
    from janus_mp.app.control import call, default_socket_path

    try:
        return call(socket_path or default_socket_path(name), command, timeout, **args)
    except JanusError as exc:
        _fail(str(exc))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
@_client_options
def status(as_json: bool, socket_path: str | None, name: str, timeout: float) -> None:
    """Show services, workers, phases, restarts, CPU and memory."""
    data = _call(socket_path, name, timeout, "status")
    if as_json:
        import json

        click.echo(json.dumps(data, indent=2))
        return
    from janus_mp.app.status_view import render_text

    click.echo(render_text(data))


@cli.command()
@click.argument("service")
@_client_options
def restart(service: str, socket_path: str | None, name: str, timeout: float) -> None:
    """Rolling restart of SERVICE: each new worker is ready before an old one stops."""
    click.echo(_call(socket_path, name, timeout, "restart", service=service))


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("service")
@click.argument("workers")
@_client_options
def scale(service: str, workers: str, socket_path: str | None, name: str, timeout: float) -> None:
    """Set SERVICE's pool to WORKERS (or +N / -N)."""
    value: Any = workers
    if workers.isdigit():
        value = int(workers)
    elif not (workers[:1] in "+-" and workers[1:].isdigit()):
        _fail(f"scale: {workers!r} is not a worker count (N, +N or -N)")
    click.echo(_call(socket_path, name, timeout, "scale", service=service, workers=value))


@cli.command()
@click.argument("service")
@_client_options
def stop(service: str, socket_path: str | None, name: str, timeout: float) -> None:
    """Stop SERVICE (the others keep running)."""
    click.echo(_call(socket_path, name, timeout, "stop", service=service))


@cli.command()
@click.argument("service")
@_client_options
def start(service: str, socket_path: str | None, name: str, timeout: float) -> None:
    """Start a stopped SERVICE again."""
    click.echo(_call(socket_path, name, timeout, "start", service=service))


@cli.command()
@_client_options
def reload(socket_path: str | None, name: str, timeout: float) -> None:
    """Re-read the config file and apply what changed (rolling restarts)."""
    click.echo(_call(socket_path, name, timeout, "reload"))


@cli.command()
@click.option("--fast", is_flag=True, help="SIGKILL the workers instead of a graceful stop.")
@_client_options
def shutdown(fast: bool, socket_path: str | None, name: str, timeout: float) -> None:
    """Stop the supervisor and all its services."""
    click.echo(_call(socket_path, name, timeout, "shutdown", fast=fast))


@cli.command()
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True)
@click.option("--once", is_flag=True, help="Draw one frame and exit (for scripts and tests).")
@_client_options
def top(interval: float, once: bool, socket_path: str | None, name: str, timeout: float) -> None:
    """A live view of the supervisor, refreshed in place."""
    from janus_mp.app.status_view import run_top

    run_top(lambda: _call(socket_path, name, timeout, "status"), interval, once)


if __name__ == "__main__":
    main()
