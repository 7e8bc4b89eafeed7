"""What every client command of `janus-mp` shares: the options naming the supervisor to talk
to, one call over its control socket, and the one-line error (exit 2) when it fails."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from janus_mp.app.cli_exit import USAGE_ERROR
from janus_mp.errors import JanusError


def client_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--socket", "socket_path", default=None, metavar="PATH",
                      help="Control socket of the supervisor [default: from --name].")(fn)
    fn = click.option("--name", default="janus-mp", show_default=True,
                      help="Name of the supervisor to talk to.")(fn)
    fn = click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0,
                      show_default=True,
                      help="Seconds to wait for the supervisor to accept and answer.")(fn)
    return fn


def call(socket_path: str | None, name: str, timeout: float, command: str, **args: Any) -> Any:
    from janus_mp.app.control import call as control_call
    from janus_mp.app.control import default_socket_path

    try:
        return control_call(socket_path or default_socket_path(name), command, timeout, **args)
    except JanusError as exc:
        fail(str(exc))


def fail(message: str) -> NoReturn:
    click.echo(f"janus-mp: error: {message}", err=True)
    sys.exit(USAGE_ERROR)
