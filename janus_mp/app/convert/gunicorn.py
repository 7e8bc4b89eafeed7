"""gunicorn's settings — from a gunicorn.conf.py or a gunicorn command line — into a janus.toml
with one WSGI (or ASGI) service.

    gunicorn.conf.py ── executed as gunicorn executes it ──┐
    'gunicorn -w 4 -b :8000 app:app' ── shlex + argparse ──┴─► settings by gunicorn's names
        ─► to_document(): each setting through core/foreign_names.py ─► Document

A command line's ``-c FILE`` is read first and its flags override it, as gunicorn does.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import shlex
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from janus_mp.adapters.http_access_log import check_format
from janus_mp.app.convert.toml_doc import Document, header
from janus_mp.core.config import valid_service_name
from janus_mp.core.foreign_names import GUNICORN_NAMES, LOG_LEVELS
from janus_mp.errors import ConfigError

SERVICE = "web"
#: gunicorn kills a worker silent this long when its timeout is not set.
GUNICORN_DEFAULT_TIMEOUT = 30


def read_conf_py(path: str | Path) -> dict[str, Any]:
    """The settings a gunicorn.conf.py defines: the file is executed as a module of its own
    (gunicorn's way: it is Python), and its public names are the settings."""
    spec = importlib.util.spec_from_file_location("__config__", str(path))
    if spec is None or spec.loader is None:
        raise ConfigError("", f"cannot read {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror or exc}") from None
    except BaseException as exc:  # the file is user code: whatever it raises is one line
        raise ConfigError("", f"{path} failed: {type(exc).__name__}: {exc}") from None
    return {name: value for name, value in vars(module).items()
            if not name.startswith("_") and not isinstance(value, (types.ModuleType, type))}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError("--gunicorn", message)


def integer(text: str) -> int:
    return int(text, 0)  # gunicorn reads 0o22 and 18 alike


#: gunicorn's command-line options: (flags, its setting name, argparse keywords).
_OPTIONS: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (("-c", "--config"), "config", {}),
    (("-w", "--workers"), "workers", {"type": integer}),
    (("-b", "--bind"), "bind", {"action": "append"}),
    (("-t", "--timeout"), "timeout", {"type": integer}),
    (("--graceful-timeout",), "graceful_timeout", {"type": integer}),
    (("--keep-alive",), "keepalive", {"type": integer}),
    (("-k", "--worker-class"), "worker_class", {}),
    (("--threads",), "threads", {"type": integer}),
    (("--worker-connections",), "worker_connections", {"type": integer}),
    (("--max-requests",), "max_requests", {"type": integer}),
    (("--max-requests-jitter",), "max_requests_jitter", {"type": integer}),
    (("--backlog",), "backlog", {"type": integer}),
    (("--preload",), "preload_app", {"action": "store_true", "default": None}),
    (("--reload",), "reload", {"action": "store_true", "default": None}),
    (("--chdir",), "chdir", {}),
    (("-e", "--env"), "raw_env", {"action": "append"}),
    (("-u", "--user"), "user", {}),
    (("-g", "--group"), "group", {}),
    (("-m", "--umask"), "umask", {"type": integer}),
    (("-p", "--pid"), "pidfile", {}),
    (("--error-logfile", "--log-file"), "errorlog", {}),
    (("--log-level",), "loglevel", {}),
    (("--access-logfile",), "accesslog", {}),
    (("--access-logformat",), "access_log_format", {}),
    (("-n", "--name"), "proc_name", {}),
    (("--forwarded-allow-ips",), "forwarded_allow_ips", {}),
    (("--limit-request-line",), "limit_request_line", {"type": integer}),
    (("--limit-request-fields",), "limit_request_fields", {"type": integer}),
    (("--limit-request-field_size", "--limit-request-field-size"), "limit_request_field_size",
     {"type": integer}),
    (("-D", "--daemon"), "daemon", {"action": "store_true", "default": None}),
    (("--capture-output",), "capture_output", {"action": "store_true", "default": None}),
    (("--certfile",), "certfile", {}),
    (("--keyfile",), "keyfile", {}),
    (("--statsd-host",), "statsd_host", {}),
    (("--worker-tmp-dir",), "worker_tmp_dir", {}),
]


def parse_command_line(text: str) -> tuple[dict[str, Any], list[str]]:
    """Settings from a gunicorn command line (``-c FILE``'s first, the flags over them), and
    the arguments no gunicorn option here knows."""
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise ConfigError("--gunicorn", f"cannot split the command line: {exc}") from None
    while argv and (Path(argv[0]).name in ("gunicorn", "-m") or argv[0].startswith("python")):
        argv.pop(0)  # gunicorn ..., python -m gunicorn ...
    parser = _Parser(prog="gunicorn", add_help=False, allow_abbrev=False)
    for flags, dest, keywords in _OPTIONS:
        parser.add_argument(*flags, dest=dest, **keywords)
    parser.add_argument("wsgi_app", nargs="?")
    given, unknown = parser.parse_known_args(argv)
    given_settings = {k: v for k, v in vars(given).items() if v is not None}
    settings = (read_conf_py(given_settings.pop("config")) if "config" in given_settings
                else {})
    settings.update(given_settings)
    return settings, unknown


def to_document(settings: Mapping[str, Any], source: str,
                unknown_arguments: list[str] | None = None) -> Document:
    """A janus.toml for these gunicorn settings."""
    doc = Document([f"janus.toml converted from {source} by `janus-mp convert`.",
                    "Comments mark gunicorn settings janus-mp has no key for or reads "
                    "differently."])
    supervisor = doc.table("supervisor")
    table = doc.table(header("services", SERVICE))
    app = settings.get("wsgi_app")
    if not isinstance(app, str) or not app:
        raise ConfigError("wsgi_app", f"{source} names no application (gunicorn's APP_MODULE, "
                                      "module:variable)")
    worker_class = str(settings.get("worker_class", "sync"))
    kind = "asgi" if "uvicorn" in worker_class.lower() else "wsgi"
    if ":" not in app:
        table.set(kind, f"{app}:application",
                  f"gunicorn's {app!r} means the variable 'application' in {app}")
    else:
        table.set(kind, app)
    for name, value in settings.items():
        if name in ("wsgi_app", "config"):
            continue
        handler = _SPECIAL.get(name)
        if handler is not None:
            handler(value, table, supervisor)
            continue
        row = GUNICORN_NAMES.get(name)
        shown = _shown(value)
        if row is None:
            table.note(f"gunicorn's {name} = {shown}: not converted (not a setting janus-mp "
                       "knows)")
        elif row.key is None:
            table.note(f"gunicorn's {name} = {shown}: no janus-mp key: {row.note}")
        else:
            target = supervisor if row.key.startswith("supervisor.") else table
            target.set(row.key.removeprefix("supervisor."), value,
                       f"gunicorn's {name}: {row.note}" if row.note else "")
    if "timeout" not in settings:  # gunicorn always has one; janus-mp has none unless asked
        table.set("watchdog_timeout", GUNICORN_DEFAULT_TIMEOUT,
                  f"gunicorn's default timeout ({GUNICORN_DEFAULT_TIMEOUT} s): "
                  f"{GUNICORN_NAMES['timeout'].note}")
    for argument in unknown_arguments or ():
        table.note(f"gunicorn argument {argument!r}: not converted (an option janus-mp does "
                   "not know)")
    return doc


def _shown(value: Any) -> str:
    if callable(value):
        name = getattr(value, "__name__", type(value).__name__)
        return f"<function {name}{inspect.signature(value) if inspect.isfunction(value) else ''}>"
    return repr(value)


def _bind(value: Any, table: Any, supervisor: Any) -> None:
    binds = [value] if isinstance(value, str) else list(value)
    out = []
    for bind in binds:
        if isinstance(bind, str) and bind.startswith(":"):
            out.append(f"0.0.0.0{bind}")
            table.set("bind", out, f"gunicorn's {bind!r} listens on every interface: so does "
                                   f"0.0.0.0{bind} (janus-mp reads {bind!r} as loopback)")
        else:
            out.append(bind)
    table.set("bind", out)


def _env(value: Any, table: Any, supervisor: Any) -> None:
    entries = [value] if isinstance(value, str) else list(value)
    env = {}
    for entry in entries:
        name, sep, text = str(entry).partition("=")
        if not sep or not name:
            raise ConfigError("raw_env", f"{entry!r} is not NAME=VALUE")
        env[name] = text
    table.set("env", env)


def _timeout(value: Any, table: Any, supervisor: Any) -> None:
    row = GUNICORN_NAMES["timeout"]
    if value in (0, None):
        table.note("gunicorn's timeout = 0 (no timeout): no watchdog_timeout, as janus-mp's "
                   "default")
        return
    table.set("watchdog_timeout", value, f"gunicorn's timeout: {row.note}")


def _worker_class(value: Any, table: Any, supervisor: Any) -> None:
    text = str(value)
    if text.lower() in ("sync", "gthread") or "uvicorn" in text.lower():
        return  # wsgi (threads for gthread) or asgi, chosen above
    table.note(f"gunicorn's worker_class = {text!r}: {GUNICORN_NAMES['worker_class'].note}")


def _access_log_format(value: Any, table: Any, supervisor: Any) -> None:
    wrong = check_format(value) if isinstance(value, str) else "is not a string"
    if wrong is None:
        table.set("access_log_format", value)
    else:
        table.note(f"gunicorn's access_log_format = {value!r}: not converted, it {wrong}; "
                   "janus-mp logs the common layout")


def _loglevel(value: Any, table: Any, supervisor: Any) -> None:
    level = LOG_LEVELS.get(str(value).lower())
    if level is None:
        table.note(f"gunicorn's loglevel = {value!r}: not converted (not a log level)")
    else:
        supervisor.set("log_level", level)


def _errorlog(value: Any, table: Any, supervisor: Any) -> None:
    if value != "-":  # stderr: janus-mp's default
        supervisor.set("log_file", value)


def _proc_name(value: Any, table: Any, supervisor: Any) -> None:
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(value))[:64]
    if valid_service_name(name):
        supervisor.set("name", name)


_SPECIAL: dict[str, Callable[[Any, Any, Any], None]] = {
    "bind": _bind, "raw_env": _env, "timeout": _timeout, "worker_class": _worker_class,
    "proc_name": _proc_name, "access_log_format": _access_log_format,
    "loglevel": _loglevel, "errorlog": _errorlog,
}
