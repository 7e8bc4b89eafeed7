"""A supervisord.conf into a janus.toml: each ``[program:x]`` a command service, each
``[group:x]`` a group, the ``[supervisord]`` settings janus-mp has into ``[supervisor]``.

The file is read as supervisord reads it: an INI file (configparser) with ``;`` and ``#``
comments after whitespace, ``%(here)s`` (the file's directory), ``%(ENV_NAME)s`` and
``%(program_name)s`` expanded in values. Every option becomes its janus-mp key through
core/foreign_names.py, or a comment saying why not.
"""

from __future__ import annotations

import configparser
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from janus_mp.app.convert.toml_doc import Document, Table, header
from janus_mp.core.config import valid_service_name
from janus_mp.core.foreign_names import LOG_LEVELS, SUPERVISORD_NAMES
from janus_mp.errors import ConfigError

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_AUTORESTART = {"true": "always", "unexpected": "on_failure", "false": "never"}
_IGNORED_SECTIONS = {
    "unix_http_server": "janus-mp's control socket is `run --socket PATH` (mode 0600)",
    "inet_http_server": "janus-mp has no remote control over TCP; /metrics is "
                        "[supervisor] metrics_port",
    "supervisorctl": "`janus-mp status/start/stop/restart` talk to the control socket",
    "include": "not followed: convert each included file and merge the tables",
}


def read(path: str | Path) -> Document:
    """The janus.toml for the supervisord config file at ``path``."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False,
                                          interpolation=None)
    try:
        with open(path, encoding="utf-8") as file:
            parser.read_file(file)
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror or exc}") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError("", f"{path} is not a supervisord config file "
                              f"({' '.join(str(exc).split())}); a gunicorn config file's "
                              "name ends in .py") from None
    return convert(parser, str(Path(path).resolve().parent), str(path))


def convert(parser: configparser.RawConfigParser, here: str, source: str) -> Document:
    doc = Document([f"janus.toml converted from {source} by `janus-mp convert`.",
                    "Comments mark supervisord options janus-mp has no key for or reads "
                    "differently."])
    supervisor = doc.table("supervisor")
    programs = {}
    # [supervisord] environment is every program's, under the program's own
    shared_env = (_environment(_expand(parser.get("supervisord", "environment"), here,
                                       "supervisord", "environment", "supervisord"),
                               "supervisord")
                  if parser.has_option("supervisord", "environment") else {})
    for section in parser.sections():
        kind, _, name = section.partition(":")
        values = {key: _expand(value, here, name, key, section)
                  for key, value in parser.items(section)}
        if kind == "program" and name:
            service = _service_name(name)
            programs[name] = service
            table = doc.table(header("services", service))
            _program(table, name, values, supervisor)
            if shared_env:
                table.set("env", {**shared_env, **table.values.get("env", {})})
        elif kind == "supervisord":
            _supervisord(supervisor, values)
        elif kind == "group" and name:
            continue  # after the programs: members are named by their service names
        elif kind in _IGNORED_SECTIONS:
            supervisor.note(f"supervisord's [{section}]: {_IGNORED_SECTIONS[kind]}")
        elif kind == "rpcinterface":
            supervisor.note(f"supervisord's [{section}]: no XML-RPC interface")
        else:
            supervisor.note(f"supervisord's [{section}]: not converted (janus-mp has no "
                            f"{kind or section} sections)")
    for section in parser.sections():
        kind, _, name = section.partition(":")
        if kind == "group" and name:
            values = {key: _expand(value, here, name, key, section)
                      for key, value in parser.items(section)}
            _group(doc.table(header("groups", _service_name(name))), values, programs)
    return doc


def _program(table: Table, program: str, values: Mapping[str, str], supervisor: Table) -> None:
    if "command" not in values:
        raise ConfigError(f"program:{program}", "has no command")
    table.set("command", values["command"])
    for key, value in values.items():
        if key == "command":
            continue
        row = SUPERVISORD_NAMES.get(key)
        if row is None:
            table.note(f"supervisord's {key} = {value}: not converted (an option janus-mp does "
                       "not know)")
        elif key == "numprocs":
            table.set("workers", _integer(key, value, program))
        elif key == "priority":
            table.set("start_order", _integer(key, value, program), _says(row.name, row.note))
        elif key == "autorestart":
            if value.lower() not in _AUTORESTART:
                raise ConfigError(f"program:{program}.autorestart",
                                  "must be true, false or unexpected")
            table.set("restart", _AUTORESTART[value.lower()], _says(row.name, row.note))
        elif key == "startsecs":
            table.set("ready_after", _number(key, value, program), _says(row.name, row.note))
        elif key == "startretries":
            _integer(key, value, program)  # checked, not carried over: see the note
            table.note(f"supervisord's {key} = {value}: {row.note}")
        elif key == "exitcodes":
            codes = [_integer(key, code.strip(), program) for code in value.split(",")]
            table.set("success_codes", codes, _says(row.name, row.note))
        elif key == "stopsignal":
            table.set("stop_signal", value.upper())
        elif key == "stopwaitsecs":
            table.set("stop_timeout", _number(key, value, program), _says(row.name, row.note))
        elif key in ("user", "directory", "umask"):
            table.set(row.key or key, value)
        elif key == "environment":
            table.set("env", _environment(value, program))
        elif key == "autostart":
            if value.lower() not in (*_TRUE, *_FALSE):
                raise ConfigError(f"program:{program}.autostart", "must be true or false")
            if value.lower() in _FALSE:
                table.set("autostart", False, _says(row.name, row.note))
        elif row.key is not None and row.key.startswith("supervisor.log_"):
            _log_setting(supervisor, row.key.removeprefix("supervisor."), key, value)
            table.note(f"supervisord's {key} = {value}: {row.note}")
            if key == "stderr_logfile" and value.upper() not in ("AUTO", "NONE", "SYSLOG") \
                    and values.get("redirect_stderr", "false").lower() not in _TRUE:
                supervisor.values.setdefault("log_stderr", "separate")  # its own file
        else:
            table.note(f"supervisord's {key} = {value}: " + (
                row.note if row.key is None else f"see {row.key} ({row.note})"))


def _log_setting(supervisor: Table, setting: str, key: str, value: str) -> None:
    """The first program's log options settle the supervisor's (one log_dir for all)."""
    if setting in supervisor.values or value.upper() in ("AUTO", "NONE", "SYSLOG"):
        return
    if setting == "log_dir":
        supervisor.set(setting, str(Path(value).parent),
                       f"the directory of supervisord's {key} = {value}")
    elif setting == "log_backups":
        supervisor.set(setting, _integer(key, value, "supervisord"))
    else:
        supervisor.set(setting, value)


def _supervisord(table: Table, values: Mapping[str, str]) -> None:
    for key, value in values.items():
        row = SUPERVISORD_NAMES.get(key)
        if key == "identifier":
            name = _service_name(value)
            table.set("name", name)
        elif key == "environment":
            continue  # added to every program's env
        elif key == "childlogdir":
            table.values.pop("log_dir", None)  # the directory meant for every program's log
            table.set("log_dir", value)
        elif key in ("logfile", "pidfile"):
            table.set(f"{key[:3]}_file", value)
        elif key == "loglevel" and value.lower() in LOG_LEVELS:
            table.set("log_level", LOG_LEVELS[value.lower()])
        elif row is None:
            table.note(f"supervisord's [supervisord] {key} = {value}: not converted")
        else:
            table.note(f"supervisord's [supervisord] {key} = {value}: {row.note}")


def _group(table: Table, values: Mapping[str, str], programs: Mapping[str, str]) -> None:
    members = [item.strip() for item in values.get("programs", "").split(",") if item.strip()]
    unknown = [member for member in members if member not in programs]
    if unknown:
        raise ConfigError(f"group:{table.header}", f"names no program {unknown[0]!r}")
    table.set("members", [programs[member] for member in members])
    for key, value in values.items():
        if key != "programs":
            table.note(f"supervisord's group {key} = {value}: not converted (members start in "
                       "their own start_order)")


def _expand(value: str, here: str, name: str, key: str, section: str) -> str:
    """supervisord's %(here)s, %(ENV_X)s, %(program_name)s... in a value."""
    names: dict[str, object] = {f"ENV_{k}": v for k, v in os.environ.items()}
    names.update(here=here, program_name=name, group_name=name, process_num=0,
                 host_node_name=os.uname().nodename, numprocs=1)
    try:
        return value % names
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"{section}.{key}", f"cannot expand {value!r}: {exc}") from None


def _environment(value: str, program: str) -> dict[str, str]:
    """KEY="val",KEY2=val2 (supervisord's quoting) into a table."""
    lexer = shlex.shlex(value, posix=True)
    lexer.whitespace = ","
    lexer.whitespace_split = True
    env = {}
    try:
        for item in lexer:
            name, sep, text = item.strip().partition("=")
            if not sep or not name:
                raise ValueError(f"{item!r} is not KEY=value")
            env[name] = text
    except ValueError as exc:
        raise ConfigError(f"program:{program}.environment", str(exc)) from None
    return env


def _says(name: str, note: str) -> str:
    return f"supervisord's {name}: {note}" if note else ""


def _integer(key: str, value: str, program: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"program:{program}.{key}", f"{value!r} is not an integer") from None


def _number(key: str, value: str, program: str) -> Any:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"program:{program}.{key}", f"{value!r} is not a number") from None
    return int(number) if number.is_integer() else number


def _service_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:64]
    if not valid_service_name(cleaned):
        raise ConfigError(f"program:{name}", "cannot become a service name")
    return cleaned
