"""The ``janus-mp`` command: run a target gunicorn-style, validate a config, run the demo.

Every option can come from a ``JANUS_MP_*`` environment variable (``JANUS_MP_RUN_WORKERS``...,
click's auto_envvar_prefix); flags override the config file; both fill the same dataclasses as
the Python API. User mistakes print one line and exit 2, never a traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from janus_mp import __version__
from janus_mp.config import START_METHODS, SpawnOptions, SupervisorConfig
from janus_mp.config_file import ConfigFile, load_config
from janus_mp.errors import JanusError
from janus_mp.exits import RestartPolicy

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


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")


def _supervise(build: Callable[[], Any], pid_file: str | None) -> NoReturn:
    """Build the supervisor (errors → one line, exit 2), then run it to its exit status."""
    try:
        sup = build()
    except JanusError as exc:
        _fail(str(exc))
    if pid_file:
        try:
            with open(pid_file, "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError as exc:
            _fail(f"--pid-file {pid_file}: {exc.strerror or exc}")
    try:
        status = sup.run_until_shutdown()
    except JanusError as exc:
        _fail(str(exc))
    finally:
        if pid_file:
            try:
                os.unlink(pid_file)
            except OSError:
                pass
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


@cli.command()
@click.argument("target", required=False)
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML config file with [supervisor] and [services.NAME] tables.")
@common_options
def run(target: str | None, config_path: str | None, workers: int | None, restart: str | None,
        metrics_bind: str | None, start_method: str | None, shutdown_timeout: float | None,
        kill_timeout: float | None, log_level: str, pid_file: str | None) -> None:
    """Supervise TARGET (module:attr) and/or the services of a config file."""
    _setup_logging(log_level)
    if target is None and config_path is None:
        _fail("give a TARGET (module:attr) or a --config file")

    def build() -> Any:
        from janus_mp.loader import resolve_target
        from janus_mp.supervisor import JanusSupervisor

        config_file = None
        file_default_bind = "127.0.0.1:9464"
        if config_path is not None:
            config_file = load_config(config_path)
            file_default_bind = _bind_text(config_file.supervisor)
        overrides = _supervisor_overrides(metrics_bind, start_method, shutdown_timeout,
                                          kill_timeout, file_default_bind)
        base = config_file.supervisor if config_file else SupervisorConfig()
        sup_config = dataclasses.replace(base, **overrides)
        entries: list[tuple[Any, SpawnOptions]] = []
        if config_file is not None:
            entries += _config_services(config_file, workers, restart)
        if target is not None:
            resolved = resolve_target(target)
            if len(resolved) == 1 and isinstance(resolved[0], JanusSupervisor):
                if entries:
                    raise JanusError("a JanusSupervisor target cannot be combined with "
                                     "config-file services")
                return resolved[0]
            for service in resolved:
                entries.append((service, _options(SpawnOptions(), workers, restart)))
        sup = JanusSupervisor(sup_config)
        for service, options in entries:
            sup.spawn_service(service, options)
        return sup

    _supervise(build, pid_file)


def _bind_text(config: SupervisorConfig) -> str:
    return "off" if config.metrics_port is None else f"{config.metrics_host}:{config.metrics_port}"


def _options(base: SpawnOptions, workers: int | None, restart: str | None) -> SpawnOptions:
    changes: dict[str, Any] = {}
    if workers is not None:
        changes["workers"] = workers
    if restart is not None:
        changes["restart"] = RestartPolicy.parse(restart)
    return dataclasses.replace(base, **changes)


def _config_services(config: ConfigFile, workers: int | None,
                     restart: str | None) -> list[tuple[Any, SpawnOptions]]:
    from janus_mp.loader import resolve_target

    entries = []
    for entry in config.services:
        resolved = resolve_target(entry.target)
        if len(resolved) != 1:
            raise JanusError(f"services.{entry.name}.target: must name one service")
        entries.append((resolved[0], _options(entry.options, workers, restart)))
    return entries


@cli.command()
@click.argument("config_path", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--imports/--no-imports", default=True, show_default=True,
              help="Also import every service target.")
def check(config_path: str, imports: bool) -> None:
    """Validate a config file without starting anything."""
    try:
        config = load_config(config_path)
        if imports:
            from janus_mp.loader import resolve_target

            for entry in config.services:
                try:
                    resolve_target(entry.target)
                except JanusError as exc:
                    raise JanusError(f"services.{entry.name}.target: {exc}") from None
    except JanusError as exc:
        _fail(str(exc))
    names = ", ".join(e.name for e in config.services) or "no services"
    click.echo(f"{config_path}: ok ({names})")


@cli.command()
@click.option("-w", "--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Workers for each CPU-bound demo service.")
@click.option("--metrics-bind", default="127.0.0.1:9464", show_default=True, metavar="HOST:PORT")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
def demo(workers: int, metrics_bind: str, log_level: str) -> None:
    """Run the built-in demo: primes, hasher and a flaky service, with /metrics."""
    _setup_logging(log_level)

    def build() -> Any:
        from janus_mp.demo import demo_services
        from janus_mp.supervisor import JanusSupervisor

        overrides = _supervisor_overrides(metrics_bind, None, 10.0, None)
        sup = JanusSupervisor(SupervisorConfig(name="janus-mp demo", **overrides))
        for service, options in demo_services(workers):
            sup.spawn_service(service, options)
        if overrides.get("metrics_port") is not None:
            host, port = overrides["metrics_host"], overrides["metrics_port"]
            click.echo(f"janus-mp demo: metrics at http://{host}:{port}/metrics "
                       f"(Ctrl-C to stop)", err=True)
        return sup

    _supervise(build, None)


if __name__ == "__main__":
    main()
