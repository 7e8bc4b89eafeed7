"""gunicorn's and supervisord's setting names, and what janus-mp calls each: one table read by
the config file's unknown-key hints and by ``janus-mp convert``, so the two never disagree.

A row says where the foreign setting goes in a janus.toml (``key``: a service key, or
``supervisor.KEY`` for the ``[supervisor]`` table) or that there is none, and ``note`` says what
differs — a name that looks alike but means something else is the trap worth a sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

GUNICORN = "gunicorn"
SUPERVISORD = "supervisord"


@dataclass(frozen=True)
class ForeignName:
    source: str
    name: str
    #: The janus-mp key that does this job ("supervisor.log_dir" for the [supervisor] table),
    #: or None when janus-mp has no such setting.
    key: str | None
    #: What differs, or why there is no equivalent; empty when the meaning is the same.
    note: str = ""


def _rows(source: str, *rows: tuple[str, str | None, str]) -> dict[str, ForeignName]:
    return {name: ForeignName(source, name, key, note) for name, key, note in rows}


_HOOKS_NOTE = ("gunicorn's server hooks are Python callables; janus-mp runs commands on "
               "lifecycle events ([hooks] on_exit, on_ready...) and takes post_fork/worker_exit "
               "callables from the Python API")

GUNICORN_NAMES = _rows(
    GUNICORN,
    ("wsgi_app", "wsgi", ""),
    ("bind", "bind", "janus-mp binds 127.0.0.1:8000 by default, gunicorn 127.0.0.1:8000 too"),
    ("workers", "workers", ""),
    ("threads", "threads", ""),
    ("backlog", "backlog", ""),
    ("max_requests", "max_requests", ""),
    ("max_requests_jitter", "max_requests_jitter", ""),
    ("timeout", "watchdog_timeout",
     "a worker silent this long is killed and replaced; janus-mp's stop_timeout is the "
     "grace of a stop"),
    ("graceful_timeout", "stop_timeout",
     "seconds a stopping worker has to finish its requests before SIGTERM, then kill_timeout "
     "before SIGKILL"),
    ("keepalive", "keepalive", "connections are kept only with threads > 1 (gthread's model); "
                               "a single-threaded worker answers one request per connection"),
    ("worker_class", None, "janus-mp serves WSGI with its own threaded engine (threads > 1 is "
                           "gthread's model) and ASGI with uvicorn: use wsgi = or asgi ="),
    ("worker_connections", None, "no event-loop workers"),
    ("preload_app", None, "under the fork start method (the default) the app is imported in the "
                          "supervisor before the workers fork: preloaded already"),
    ("reload", None, "`janus-mp run --reload` (development only)"),
    ("chdir", "cwd", ""),
    ("raw_env", "env", "a table NAME = \"value\" instead of a list of NAME=value"),
    ("env", "env", ""),
    ("user", "user", ""),
    ("group", "group", ""),
    ("umask", "umask", ""),
    ("pidfile", "supervisor.pid_file", ""),
    ("errorlog", "supervisor.log_file", "'-' (stderr) is janus-mp's default"),
    ("loglevel", "supervisor.log_level", "debug, info, warning or error (critical: error)"),
    ("accesslog", "access_log", ""),
    ("access_log_format", "access_log_format",
     "gunicorn's atoms, less request and response headers (%({name}i)s, %({name}o)s) and the "
     "environ (%({name}e)s)"),
    ("proc_name", "supervisor.name", ""),
    ("forwarded_allow_ips", "forwarded_allow_ips", ""),
    ("limit_request_line", "limit_request_line", ""),
    ("limit_request_fields", "limit_request_fields", ""),
    ("limit_request_field_size", "limit_request_field_size", ""),
    ("daemon", None, "janus-mp stays in the foreground: run it under systemd or a container"),
    ("worker_tmp_dir", None, "workers prove life over a pipe, not by touching a file"),
    ("statsd_host", "supervisor.metrics_port", "janus-mp serves Prometheus /metrics instead"),
    ("certfile", None, "no TLS: put a proxy in front"),
    ("keyfile", None, "no TLS: put a proxy in front"),
    ("capture_output", None, "worker output is always captured (supervisor.log_dir)"),
    *((hook, None, _HOOKS_NOTE) for hook in (
        "on_starting", "on_reload", "when_ready", "pre_fork", "post_fork", "post_worker_init",
        "worker_int", "worker_abort", "pre_exec", "pre_request", "post_request", "child_exit",
        "worker_exit", "nworkers_changed", "on_exit")),
)

_LOG_NOTE = ("each service's stdout and stderr go to one NAME.log under [supervisor] log_dir "
             "(log_max_bytes, log_backups), every line tagged with its stream; "
             "log_stderr = \"separate\" puts stderr in NAME.stderr.log")

SUPERVISORD_NAMES = _rows(
    SUPERVISORD,
    ("command", "command", ""),
    ("numprocs", "workers", ""),
    ("process_name", None, "workers are named SERVICE[N]"),
    ("numprocs_start", None, "workers are numbered from 0"),
    ("priority", "start_order", "lower starts first and stops last, as in supervisord; "
                                "depends_on waits for readiness, which priority never did"),
    ("autostart", "autostart", "false: defined, started by `janus-mp start NAME`"),
    ("autorestart", "restart", "true -> always, unexpected -> on_failure, false -> never"),
    ("startsecs", "ready_after",
     "seconds a program must stay up to count as ready (command services)"),
    ("startretries", "backoff.max_retries",
     "not carried over: supervisord counts failed start attempts, backoff.max_retries counts "
     "every failure within backoff.window (600 s) however long the worker ran; the defaults "
     "(10, and a breaker that tries again after half_open_after = 60 s) keep a service that "
     "is killed now and then running"),
    ("exitcodes", "success_codes",
     "the exit codes that count as expected; not exit_codes, which maps a module's exceptions "
     "to exit codes"),
    ("stopsignal", "stop_signal", ""),
    ("stopwaitsecs", "stop_timeout",
     "after stop_signal the program has stop_timeout, then SIGTERM, then kill_timeout before "
     "SIGKILL"),
    ("stopasgroup", None, "a command's stop signal always goes to its whole process group"),
    ("killasgroup", None, "a command's process group is always killed whole"),
    ("user", "user", ""),
    ("redirect_stderr", None, _LOG_NOTE),
    ("stdout_logfile", "supervisor.log_dir", _LOG_NOTE),
    ("stdout_logfile_maxbytes", "supervisor.log_max_bytes", _LOG_NOTE),
    ("stdout_logfile_backups", "supervisor.log_backups", _LOG_NOTE),
    ("stderr_logfile", "supervisor.log_dir", _LOG_NOTE),
    ("stderr_logfile_maxbytes", "supervisor.log_max_bytes", _LOG_NOTE),
    ("stderr_logfile_backups", "supervisor.log_backups", _LOG_NOTE),
    ("stdout_capture_maxbytes", None, "no process communication events"),
    ("stderr_capture_maxbytes", None, "no process communication events"),
    ("stdout_events_enabled", None, "no process communication events"),
    ("stderr_events_enabled", None, "no process communication events"),
    ("stdout_syslog", None, "log_format = \"json\" lines suit a log shipper"),
    ("stderr_syslog", None, "log_format = \"json\" lines suit a log shipper"),
    ("environment", "env", "a table NAME = \"value\" instead of KEY=\"val\",KEY2=\"val2\""),
    ("directory", "cwd", ""),
    ("umask", "umask", ""),
    ("serverurl", None, "workers need no supervisor URL"),
    # [supervisord] section
    ("logfile", "supervisor.log_file", ""),
    ("logfile_maxbytes", None, "rotate the supervisor's own log with logrotate and SIGUSR1"),
    ("logfile_backups", None, "rotate the supervisor's own log with logrotate and SIGUSR1"),
    ("loglevel", "supervisor.log_level",
     "debug, info, warning or error (trace and blather: debug; warn: warning; critical: error)"),
    ("pidfile", "supervisor.pid_file", ""),
    ("silent", None, "janus-mp logs to stderr or to `run --log-file FILE`"),
    ("nodaemon", None, "janus-mp always stays in the foreground"),
    ("minfds", "rlimits", "per service: rlimits = { nofile = N }"),
    ("minprocs", "rlimits", "per service: rlimits = { nproc = N }"),
    ("identifier", "supervisor.name", ""),
    ("childlogdir", "supervisor.log_dir", ""),
    ("nocleanup", None, "janus-mp keeps no AUTO child logs to clean"),
    ("strip_ansi", None, "output is kept as the program wrote it"),
)


#: Log levels of gunicorn and supervisord, as janus-mp's.
LOG_LEVELS = {"trace": "debug", "blather": "debug", "debug": "debug", "info": "info",
              "warn": "warning", "warning": "warning", "error": "error", "critical": "error"}


def foreign_names(name: str) -> tuple[ForeignName, ...]:
    """Every row naming ``name`` (gunicorn's first), empty when neither tool uses it."""
    return tuple(row for row in (GUNICORN_NAMES.get(name), SUPERVISORD_NAMES.get(name))
                 if row is not None)


def foreign_hint(name: str) -> str | None:
    """The hint for an unknown key that is a gunicorn or supervisord name, or None."""
    rows = foreign_names(name)
    if not rows:
        return None
    parts = []
    for row in rows:
        if row.key is None:
            where = "has no janus-mp key"
        elif row.key.startswith("supervisor."):
            where = f"is janus-mp's [supervisor] {row.key.removeprefix('supervisor.')}"
        else:
            where = f"is janus-mp's {row.key}"
        parts.append(f"{row.source}'s {row.name} {where}" + (f": {row.note}" if row.note else ""))
    return "; ".join(parts)
