"""Client commands acting on services by name — a service, a group (its members) or ``all``:
``restart [--wait]``, ``stop``, ``start`` and ``signal SIG NAME``, as supervisorctl's."""

from __future__ import annotations

import time
from typing import Any

import click

from janus_mp.app.cli_client import call, client_options, fail
from janus_mp.core.selection import select_services
from janus_mp.errors import JanusError

_NAME_HELP = "SERVICE is a service, a group (every service in it) or all."


@click.command()
@click.argument("service")
@click.option("--wait", is_flag=True,
              help="Return once every worker was replaced and the new ones are ready (exit 1 "
                   "if that takes longer than --timeout).")
@client_options
def restart(service: str, wait: bool, socket_path: str | None, name: str,
            timeout: float) -> None:
    """Rolling restart of SERVICE: each new worker is ready before an old one stops."""
    before = call(socket_path, name, timeout, "status") if wait else None
    click.echo(call(socket_path, name, timeout, "restart", service=service))
    if before is None:
        return
    try:
        names = select_services(service, [s["name"] for s in before["services"]],
                                {g["name"]: g["members"] for g in before.get("groups", ())})
    except JanusError as exc:
        fail(str(exc))
    old = {(s["name"], w["worker"]): w["generation"] for s in before["services"]
           if s["name"] in names for w in s["workers"]}
    deadline = time.monotonic() + timeout
    while True:
        now = call(socket_path, name, timeout, "status")
        if _replaced(now, names, old):
            click.echo(f"{', '.join(names)}: every worker replaced and ready")
            return
        if time.monotonic() > deadline:
            click.echo(f"janus-mp: {', '.join(names)}: not every worker was replaced and "
                       f"ready within {timeout:g} s", err=True)
            raise SystemExit(1)
        time.sleep(0.1)  # a client polling a status; nothing to block on over the socket


def _replaced(status: dict[str, Any], names: tuple[str, ...],
              old: dict[tuple[str, int], int]) -> bool:
    for service in status["services"]:
        if service["name"] not in names:
            continue
        for worker in service["workers"]:
            previous = old.get((service["name"], worker["worker"]))
            if previous is not None and (worker["generation"] <= previous or not worker["ready"]
                                         or len(worker["pids"]) != 1):
                return False
    return True


@click.command()
@click.argument("service")
@client_options
def stop(service: str, socket_path: str | None, name: str, timeout: float) -> None:
    """Stop SERVICE (the others keep running)."""
    click.echo(call(socket_path, name, timeout, "stop", service=service))


@click.command()
@click.argument("service")
@client_options
def start(service: str, socket_path: str | None, name: str, timeout: float) -> None:
    """Start a stopped SERVICE again."""
    click.echo(call(socket_path, name, timeout, "start", service=service))


@click.command(name="signal")
@click.argument("signal_name", metavar="SIG")
@click.argument("service")
@client_options
def send_signal(signal_name: str, service: str, socket_path: str | None, name: str,
                timeout: float) -> None:
    """Send SIG (HUP, USR1, ... or a number) to every worker of SERVICE; a command service's
    program gets it, not the worker that keeps it."""
    click.echo(call(socket_path, name, timeout, "signal", service=service, signal=signal_name))


for _command in (restart, stop, start, send_signal):
    _command.help = f"{_command.help}\n\n{_NAME_HELP}"
