"""The ``janus-mp`` command: run a target gunicorn-style, validate a config, run the demo.

Every option can come from a ``JANUS_MP_*`` environment variable (``JANUS_MP_RUN_WORKERS``...,
click's auto_envvar_prefix); flags override the config file; both fill the same dataclasses as
the Python API. User mistakes print one line and exit 2, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from janus_mp.adapters.http_settings import HTTP_KEYS
from janus_mp.app.cli_exit import exit_with as _exit
from janus_mp.app.cli_exit import fail as _fail
from janus_mp.app.cli_run_flags import file_logging, process_overrides, run_flags
from janus_mp.app.config_file import KINDS
from janus_mp.app.deploy import Deployment
from janus_mp.app.logs import SupervisorLog
from janus_mp.core.config import LOG_FORMATS, START_METHODS
from janus_mp.core.exits import RestartPolicy
from janus_mp.errors import ConfigError, JanusError
from janus_mp.version import __version__


def main() -> None:
    cli(auto_envvar_prefix="JANUS_MP")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="janus-mp")
def cli() -> None:
    """janus-mp: supervise pools of CPU-bound worker processes."""


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


def _supervisor_log(level: str, log_file: str | None = None,
                    log_format: str = "text") -> SupervisorLog:
    """janus-mp's own log: stderr, or a file SIGUSR1 reopens (see app/logs.py)."""
    try:
        log = SupervisorLog(level, log_file, log_format)
    except JanusError as exc:
        _fail(str(exc))
    log.install()
    return log


def _supervise(build: Callable[[], Deployment], pid_file: str | None,
               log: SupervisorLog) -> NoReturn:
    """Build the supervisor (errors → one line, exit 2), then run it to its exit status."""
    try:
        deployment = build()
    except JanusError as exc:
        _fail(str(exc), log)
    from janus_mp.app.pid_file import PidFile

    written = PidFile(pid_file) if pid_file else None
    if written is not None and deployment.handover is not None:
        def write_once_serving(pid_file: PidFile = written) -> None:  # an upgrade's
            try:
                pid_file.write()
            except ConfigError as exc:
                logging.getLogger("janus_mp.cli").error("--pid-file %s: %s", pid_file.path,
                                                        exc.rule)
        deployment.on_ready.insert(0, write_once_serving)
    elif written is not None:
        try:
            written.write()
        except ConfigError as exc:
            _fail(f"--pid-file {pid_file}: {exc.rule}", log)
    try:
        status = deployment.run()
    except JanusError as exc:
        _fail(str(exc), log)
    finally:
        if written is not None:
            written.remove()  # ours only: never a file put there since (an upgrade's)
    _exit(status, log)


def _worker_count(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """-w N (N >= 0) or -w auto."""
    if value is None:
        return None
    text = value.strip().lower()
    if text == "auto":
        from janus_mp.osproc import usable_cpus

        return usable_cpus()
    if not text.isdigit():
        raise click.BadParameter(f"{value!r} is not a worker count (N >= 0, or auto)")
    return int(text)


_COMMON = [
    click.option("-w", "--workers", default=None, metavar="N|auto", callback=_worker_count,
                 help="Workers per service, or 'auto': the CPUs this process may use (its "
                      "affinity, capped by its cgroup's CPU quota) [default: 1, or the config "
                      "file's]."),
    click.option("--standby", type=click.IntRange(min=0), default=None, metavar="K",
                 help="Keep K extra workers per service booted and parked: a crash, recycle "
                      "or scale-up promotes one instead of forking [default: 0]."),
    click.option("--restart", type=click.Choice([p.value for p in RestartPolicy]),
                 default=None, help="Restart policy [default: on_failure]."),
    click.option("--metrics-bind", default=None, metavar="HOST:PORT",
                 help="Serve /metrics, /healthz, /readyz here ('off' to disable) "
                      "[default: 127.0.0.1:9464 without -c; with -c FILE, the file's "
                      "[supervisor] metrics_host/metrics_port, and no endpoint when it sets "
                      "no metrics_port]."),
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
    click.option("--log-format", type=click.Choice(LOG_FORMATS), default=None,
                 help="text, or json: one object a line (time, service, worker, pid, stream, "
                      "message) [default: text, or the config file's log_format]."),
    click.option("--socket", "socket_path", default=None, metavar="PATH",
                 help="Control socket [default: $XDG_RUNTIME_DIR/janus-mp/NAME.sock or "
                      "/tmp/janus-mp-UID/NAME.sock; 'off' to disable]."),
    click.option("--name", default="janus-mp", show_default=True,
                 help="Supervisor name: process titles, logs, default socket name; also the "
                      "name of a --wsgi/--asgi/--command/--module service."),
]


def common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_COMMON):
        fn = option(fn)
    return fn


def _supervisor_overrides(metrics_bind: str | None, start_method: str | None,
                          shutdown_timeout: float | None,
                          kill_timeout: float | None) -> dict[str, Any]:
    """SupervisorConfig fields the flags set (the ones not given are left to the file)."""
    overrides: dict[str, Any] = {}
    if metrics_bind is not None:
        bind = _bind(metrics_bind)
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
    click.option("--limit-request-line", type=click.IntRange(min=1), default=None,
                 help="--wsgi: longest request line, else 414 [default: 4094]."),
    click.option("--limit-request-fields", type=click.IntRange(min=1), default=None,
                 help="--wsgi: most header fields, else 431 [default: 100]."),
    click.option("--limit-request-field-size", type=click.IntRange(min=1), default=None,
                 help="--wsgi: longest header field line, else 431 [default: 8190]."),
    click.option("--limit-request-body", type=click.IntRange(min=0), default=None,
                 help="--wsgi: largest request body in bytes, else 413 [default: 0, no limit]."),
    click.option("--header-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="--wsgi: seconds to receive a whole request head, else 408 "
                      "[default: 10]."),
    click.option("--body-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="--wsgi: seconds to receive a whole request body once the app reads it, "
                      "else 408 [default: 60]."),
    click.option("--access-log", default=None, metavar="FILE|-",
                 help="--wsgi: append one line per request to FILE, or stderr for '-' "
                      "[default: off]."),
    click.option("--access-log-format", default=None, metavar="common|combined|json|FORMAT",
                 help="--wsgi: access log layout, or a format of gunicorn's atoms such as "
                      "'%(h)s \"%(r)s\" %(s)s %(M)s' [default: common]."),
    click.option("--forwarded-allow-ips", default=None, metavar="IPS",
                 help="--wsgi: comma-separated addresses or networks (or '*') whose "
                      "X-Forwarded-For/-Proto and Forwarded headers are honoured "
                      "[default: 127.0.0.1]."),
    click.option("--keep-alive", "keepalive", type=click.FloatRange(min=0), default=None,
                 help="--wsgi with --threads > 1: seconds an idle persistent connection is "
                      "kept, parked off the request threads; 0 closes after each response "
                      "(always so with one thread) [default: 2]."),
    click.option("--max-requests", type=click.IntRange(min=1), default=None,
                 help="Recycle an API worker after this many requests."),
    click.option("--max-requests-jitter", type=click.IntRange(min=0), default=None,
                 help="Add a random 0..N to --max-requests per worker."),
    click.option("--max-lifetime", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="Recycle a worker after this many seconds."),
    click.option("--max-lifetime-jitter", type=click.FloatRange(min=0), default=None,
                 help="Add a random 0..N seconds to --max-lifetime per worker."),
    click.option("--max-rss", default=None, metavar="SIZE",
                 help="Old name of --max-memory."),
    click.option("--max-memory", default=None, metavar="SIZE",
                 help="Recycle a worker whose process tree uses more than SIZE (512MiB, "
                      "2G...), measured as --memory-measure."),
    click.option("--memory-measure", type=click.Choice(["uss", "pss", "rss"]), default=None,
                 help="What --max-memory counts [default: uss, memory only the worker's "
                      "tree has]."),
]


def service_flags(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_SERVICE_FLAGS):
        fn = option(fn)
    return fn


@cli.command()
@click.argument("target", required=False)
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML config file with [supervisor] and [services.NAME] tables.")
@click.option("--reload", "watch", is_flag=True,
              help="Development only, not for production: when a .py file under the current "
                   "directory changes, replace the workers (a rolling restart under spawn/"
                   "forkserver, an upgrade under fork). Needs janus-mp[reload].")
@common_options
@service_flags
@run_flags
def run(target: str | None, config_path: str | None, watch: bool, log_level: str,
        pid_file: str | None, log_file: str | None, log_format: str | None,
        socket_path: str | None, name: str,
        metrics_bind: str | None, start_method: str | None, shutdown_timeout: float | None,
        kill_timeout: float | None, **flags: Any) -> None:
    """Supervise TARGET (module:attr), an app or program given by --wsgi, --asgi, --command or
    --module, and/or the services of a config file.

    Signals: TERM/INT graceful stop (a second one kills), QUIT fast stop, HUP reload the config,
    TTIN/TTOU one worker more/fewer in every pool, USR1 reopen the log file, USR2 upgrade (a new
    supervisor on new code takes the sockets over, see `janus-mp upgrade`).
    """
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
    kind, value = next(iter(given.items()), (None, None))
    source = click.get_current_context().get_parameter_source("name")
    from janus_mp.app.build import RunFlags, deployment

    run_flags = RunFlags(
        config_path=config_path, kind=kind, target=value,
        settings=_adapter_settings(kind, flags), process_overrides=process_overrides(flags),
        service_overrides=_service_overrides(flags),
        supervisor_overrides={**_supervisor_overrides(metrics_bind, start_method,
                                                      shutdown_timeout, kill_timeout),
                              **({"log_format": log_format} if log_format else {})},
        name=None if source is ParameterSource.DEFAULT else name, socket_path=socket_path,
        upgrade_argv=(sys.executable, "-m", "janus_mp", *sys.argv[1:]),
        watch_root=os.getcwd() if watch else None)
    flag_level = None if click.get_current_context().get_parameter_source(
        "log_level") is ParameterSource.DEFAULT else log_level
    try:
        log_level, log_file, pid_file = file_logging(config_path, flag_level, log_file, pid_file)
    except JanusError as exc:
        _fail(str(exc))
    log = _supervisor_log(log_level, log_file, log_format or "text")
    _supervise(lambda: deployment(run_flags, log), pid_file, log)


def _adapter_settings(kind: str | None, flags: dict[str, Any]) -> dict[str, Any]:
    """--bind/--backlog/--threads and the HTTP settings go to the adapter; they mean nothing
    for other kinds."""
    settings = {"bind": list(flags.pop("binds")) or None, "backlog": flags.pop("backlog"),
                "threads": flags.pop("threads")}
    settings.update({key: flags.pop(key) for key in HTTP_KEYS})
    given = {k: v for k, v in settings.items() if v is not None}
    allowed = KINDS.get(kind or "", frozenset())
    for key in given:
        if key not in allowed:
            flag = "keep-alive" if key == "keepalive" else key.replace("_", "-")  # gunicorn's
            _fail(f"--{flag} applies to --wsgi/--asgi services only")
    return given


def _service_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Flags that override SpawnOptions of every service run (config-file services too)."""
    overrides = {k: v for k, v in flags.items() if v is not None}
    if "restart" in overrides:
        overrides["restart"] = RestartPolicy.parse(overrides["restart"])
    return overrides


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
    log = _supervisor_log(log_level)
    overrides = _supervisor_overrides(metrics_bind, None, 10.0, None)
    web = None if http_bind.lower() in ("off", "none", "") else http_bind

    def build() -> Deployment:
        from janus_mp.app.build import demo_deployment

        deployment, where = demo_deployment(workers, overrides, web, log)
        if where:
            click.echo(f"janus-mp demo: {where}; try `janus-mp status --name janus-mp-demo` or "
                       f"`janus-mp top --name janus-mp-demo` (Ctrl-C to stop)", err=True)
        return deployment

    _supervise(build, None, log)


def _register_commands() -> None:
    """Commands kept in modules of their own (cli.py holds the group, run and demo)."""
    from janus_mp.app.cli_check import check
    from janus_mp.app.cli_control import COMMANDS
    from janus_mp.app.cli_convert import convert
    from janus_mp.app.cli_ops import restart, send_signal, start, stop
    from janus_mp.app.cli_profile import profile

    for command in (*COMMANDS, check, restart, stop, start, send_signal, convert, profile):
        cli.add_command(command)


_register_commands()

if __name__ == "__main__":
    main()
