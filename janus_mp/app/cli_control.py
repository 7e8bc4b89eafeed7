"""Client commands that talk to a running supervisor over its control socket: ``status``
(``--check``), ``top``, ``scale``, ``reload``, ``upgrade``, ``shutdown``, and the streams
``events`` and ``logs`` (``-f``). Commands acting on services by name are in cli_ops.py."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from janus_mp.app.cli_client import call, client_options, fail
from janus_mp.app.cli_exit import exit_with
from janus_mp.errors import JanusError


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
@click.option("--check", is_flag=True,
              help="Print one line and exit 0 when every service serves (the verdict of "
                   "/readyz), 1 when not, 2 when no supervisor answers.")
@client_options
def status(as_json: bool, check: bool, socket_path: str | None, name: str,
           timeout: float) -> None:
    """Show services, workers, phases, restarts, CPU and memory."""
    data = call(socket_path, name, timeout, "status")
    if check:
        from janus_mp.app.status_view import readiness

        ready, line = readiness(data)
        click.echo(line)
        exit_with(0 if ready else 1, None)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    from janus_mp.app.status_view import render_text

    click.echo(render_text(data))


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("service")
@click.argument("workers")
@client_options
def scale(service: str, workers: str, socket_path: str | None, name: str, timeout: float) -> None:
    """Set SERVICE's pool to WORKERS (or +N / -N)."""
    value: Any = workers
    if workers.isdigit():
        value = int(workers)
    elif not (workers[:1] in "+-" and workers[1:].isdigit()):
        fail(f"scale: {workers!r} is not a worker count (N, +N or -N)")
    click.echo(call(socket_path, name, timeout, "scale", service=service, workers=value))


@click.command()
@client_options
def reload(socket_path: str | None, name: str, timeout: float) -> None:
    """Re-read the config file and apply what changed (rolling restarts)."""
    click.echo(call(socket_path, name, timeout, "reload"))


@click.command()
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0,
              show_default=True,
              help="Seconds to wait for the outcome (the supervisor's upgrade_timeout bounds "
                   "the new one's start).")
@click.option("--socket", "socket_path", default=None, metavar="PATH",
              help="Control socket of the supervisor [default: from --name].")
@click.option("--name", default="janus-mp", show_default=True,
              help="Name of the supervisor to talk to.")
def upgrade(socket_path: str | None, name: str, timeout: float) -> None:
    """Zero-downtime upgrade: start a new supervisor from the current code and janus-mp with
    the same command line, hand it the listening sockets; once all its workers are ready the
    old one drains and exits. If it is not ready within upgrade_timeout, it is stopped and the
    old one keeps serving."""
    click.echo(call(socket_path, name, timeout, "upgrade"))


@click.command()
@click.option("--fast", is_flag=True, help="SIGKILL the workers instead of a graceful stop.")
@client_options
def shutdown(fast: bool, socket_path: str | None, name: str, timeout: float) -> None:
    """Stop the supervisor and all its services."""
    click.echo(call(socket_path, name, timeout, "shutdown", fast=fast))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("-f", "--follow", is_flag=True,
              help="Keep streaming new events until the supervisor stops (Ctrl-C to quit).")
@click.option("--buffer", type=click.IntRange(min=1, max=10_000), default=256,
              show_default=True,
              help="Events the supervisor keeps for this client before it loses some.")
@client_options
def events(as_json: bool, follow: bool, buffer: int, socket_path: str | None, name: str,
           timeout: float) -> None:
    """Show recent lifecycle events (spawned, ready, exited, backing_off, breaker_opened...);
    with -f, follow new ones as they happen."""
    from janus_mp.app.control import default_socket_path
    from janus_mp.app.control import follow as follow_stream
    from janus_mp.app.events_view import render_event

    try:
        items = follow_stream(socket_path or default_socket_path(name), "events", timeout,
                              follow=follow, buffer=buffer)
        next(items)  # the stream's opening reply carries no result
        for item in items:
            click.echo(json.dumps(item) if as_json else render_event(item))
    except JanusError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


@click.command()
@click.argument("service", required=False)
@click.option("-n", "--lines", type=click.IntRange(min=0), default=20, show_default=True,
              help="Recent lines to show first (the supervisor keeps the last 500 of each "
                   "service).")
@click.option("-f", "--follow", is_flag=True,
              help="Then print every new line as it comes, across log rotations, until the "
                   "supervisor stops (Ctrl-C to quit).")
@click.option("--supervisor", "own", is_flag=True,
              help="The supervisor's own log instead (supervisorctl's maintail).")
@client_options
def logs(service: str | None, lines: int, follow: bool, own: bool, socket_path: str | None,
         name: str, timeout: float) -> None:
    """Show the captured output of SERVICE (or of all services), or with --supervisor the
    supervisor's own log."""
    args: dict[str, Any] = {"lines": lines, "follow": follow, **({"supervisor": True} if own
                                                                 else {})}
    if service is not None:
        args["service"] = service
    if not follow:
        for line in call(socket_path, name, timeout, "logs", **args):
            click.echo(line)
        return
    from janus_mp.app.control import default_socket_path
    from janus_mp.app.control import follow as follow_stream

    stream = follow_stream(socket_path or default_socket_path(name), "logs", timeout, **args)
    try:
        for line in next(stream):
            click.echo(line)
        for message in stream:
            for line in message.get("lines", ()):
                click.echo(line)
            if message.get("lost"):
                click.echo(f"janus-mp: {message['lost']} lines lost: this client read too "
                           "slowly", err=True)
            sys.stdout.flush()
    except JanusError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


@click.command()
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True)
@click.option("--once", is_flag=True, help="Draw one frame and exit (for scripts and tests).")
@client_options
def top(interval: float, once: bool, socket_path: str | None, name: str, timeout: float) -> None:
    """A live view of the supervisor, refreshed in place."""
    from janus_mp.app.status_view import run_top

    run_top(lambda: call(socket_path, name, timeout, "status"), interval, once)


COMMANDS = (status, top, scale, reload, upgrade, shutdown, events, logs)
