"""`janus-mp run` flags under gunicorn's names: the watchdog and stop grace as gunicorn's
``-t/--timeout`` and ``--graceful-timeout``, and the process settings every worker gets
(``--user``, ``--group``, ``--umask``, ``--chdir``, ``-e KEY=VALUE``). They apply to every
service run, config-file services too, as the other service flags do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

_FLAGS = [
    click.option("-t", "--timeout", "watchdog_timeout",
                 type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
                 help="Kill and replace a worker silent this long (gunicorn's --timeout: an "
                      "HTTP worker proves life while it serves) [default: off]."),
    click.option("--graceful-timeout", "stop_timeout", type=click.FloatRange(min=0),
                 default=None, metavar="SECONDS",
                 help="Seconds a stopping worker has to finish before SIGTERM "
                      "[default: --shutdown-timeout]."),
    click.option("-u", "--user", default=None, help="Run workers as this user (name or uid)."),
    click.option("-g", "--group", default=None,
                 help="Run workers with this group (name or gid); without --user, only the "
                      "group changes."),
    click.option("-m", "--umask", default=None, metavar="OCTAL",
                 help="Workers' umask, such as 027."),
    click.option("--chdir", "--cwd", "cwd", default=None, metavar="DIR",
                 help="Workers' working directory."),
    click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE",
                 help="Set an environment variable in every worker; repeatable."),
]

#: The flags' destinations that are ProcessSettings fields (the rest are SpawnOptions fields).
PROCESS_FLAGS = ("user", "group", "umask", "cwd", "env")


def run_flags(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_FLAGS):
        fn = option(fn)
    return fn


def process_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Pop the process flags given: ProcessSettings fields for every worker."""
    given = {key: flags.pop(key) for key in PROCESS_FLAGS}
    entries = given.pop("env")
    overrides = {k: _number_if_digits(k, v) for k, v in given.items() if v is not None}
    if entries:
        env = {}
        for entry in entries:
            name, sep, value = entry.partition("=")
            if not sep or not name:
                raise click.BadParameter(f"{entry!r} is not KEY=VALUE", param_hint="'-e'")
            env[name] = value
        overrides["env"] = env
    return overrides


def file_logging(config_path: str | None, log_level: str | None, log_file: str | None,
                 pid_file: str | None) -> tuple[str, str | None, str | None]:
    """The supervisor's log level, log file and pid file: the flags given (``log_level`` None
    when not), else the config file's [supervisor] keys, else the defaults. The log starts
    before the services are built, so these are read from the file first, on their own."""
    if config_path is not None and (log_level is None or log_file is None or pid_file is None):
        from janus_mp.app.config_file import load_config

        supervisor = load_config(config_path).supervisor
        return (log_level or supervisor.log_level, log_file or supervisor.log_file,
                pid_file or supervisor.pid_file)
    return log_level or "info", log_file, pid_file


def _number_if_digits(key: str, value: str) -> Any:
    """A uid or gid given as digits is a number (a name could not be all digits)."""
    return int(value) if key in ("user", "group") and value.isdigit() else value
