"""``janus-mp profile SERVICE``: where the CPU of every worker of a service goes, in one flame
graph (py-spy samples each worker; the stacks are merged)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from janus_mp.errors import JanusError

FORMATS = {".svg": "svg", ".json": "speedscope", ".txt": "collapsed", ".collapsed": "collapsed"}


@click.command()
@click.argument("service")
@click.option("-d", "--duration", type=click.IntRange(min=1), default=10, show_default=True,
              help="Seconds to sample for.")
@click.option("-r", "--rate", type=click.IntRange(min=1, max=1000), default=100,
              show_default=True, help="Samples per second of each worker.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Where to write the flame graph: .svg, .json (speedscope) or .txt "
                   "(collapsed stacks) [default: SERVICE-profile.svg].")
@click.option("--nonblocking", is_flag=True,
              help="Do not pause the workers while sampling (less overhead, less accurate).")
@click.option("--gil", "gil_only", is_flag=True,
              help="Only samples of threads holding the GIL: the CPU spent running Python, "
                   "without threads blocked in a system call (py-spy counts some as busy).")
@click.option("--full-stacks", is_flag=True,
              help="Keep the frames above the worker's entry (the supervisor's own path to the "
                   "fork, the same in every sample).")
@click.option("--socket", "socket_path", default=None, metavar="PATH",
              help="Control socket of the supervisor [default: from --name].")
@click.option("--name", default="janus-mp", show_default=True,
              help="Name of the supervisor to talk to.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="Seconds to wait for the supervisor to answer.")
def profile(service: str, duration: int, rate: int, output: str | None, nonblocking: bool,
            gil_only: bool, full_stacks: bool, socket_path: str | None, name: str,
            timeout: float) -> None:
    """Sample every worker of SERVICE with py-spy for DURATION seconds and write one merged
    flame graph (needs janus-mp[profile])."""
    from janus_mp.app.control import call, default_socket_path
    from janus_mp.app.profile import flame_graph
    from janus_mp.app.profile.sampler import find_py_spy, sample

    target = Path(output or f"{service}-profile.svg")
    kind = FORMATS.get(target.suffix.lower())
    if kind is None:
        _fail(f"-o {target}: give a .svg, .json (speedscope) or .txt (collapsed stacks) file")
    try:
        py_spy = find_py_spy()
        status = call(socket_path or default_socket_path(name), "status", timeout)
        pids = _worker_pids(status, service)
        click.echo(f"janus-mp profile: sampling {len(pids)} worker(s) of {service} for "
                   f"{duration} s ...", err=True)
        sampled = sample(pids, duration, rate, nonblocking=nonblocking,
                         gil_only=gil_only, py_spy=py_spy)
    except JanusError as exc:
        _fail(str(exc))
    for pid, reason in sampled.failures.items():
        click.echo(f"janus-mp profile: worker pid {pid} not sampled: {reason}", err=True)
    if not sampled.stacks:
        _fail(f"no worker of {service} could be sampled")
    per_worker = {f"pid {pid}": stacks if full_stacks else flame_graph.from_worker_entry(stacks)
                  for pid, stacks in sampled.stacks.items()}
    merged = flame_graph.merge(per_worker.values())
    title = f"{service}: {len(sampled.stacks)} worker(s), {duration} s at {rate} Hz"
    text = (flame_graph.svg(merged, title) if kind == "svg"
            else flame_graph.speedscope(per_worker, title) if kind == "speedscope"
            else flame_graph.collapsed(merged))
    try:
        target.write_text(text)
    except OSError as exc:
        _fail(f"-o {target}: {exc.strerror or exc}")
    total = sum(merged.values())
    click.echo(f"{target}: {total} samples from {len(sampled.stacks)} worker(s) "
               f"({', '.join(str(pid) for pid in sampled.stacks)})")
    if not total:
        click.echo("  no samples: the workers were idle (py-spy records busy threads only)")
    for frame, count in flame_graph.hottest(merged):
        click.echo(f"  {100.0 * count / total:5.1f}%  {frame}")


def _worker_pids(status: dict[str, Any], service: str) -> list[int]:
    """The pids of the service's workers in their slots (parked standbys do no work)."""
    for entry in status.get("services", ()):
        if entry.get("name") == service:
            pids = [pid for worker in entry.get("workers", ()) for pid in worker.get("pids", ())]
            if not pids:
                raise JanusError(f"service {service!r} has no running worker to sample")
            return sorted(set(pids))
    known = ", ".join(entry.get("name", "?") for entry in status.get("services", ()))
    raise JanusError(f"no service {service!r} (services: {known or 'none'})")


def _fail(message: str) -> NoReturn:
    click.echo(f"janus-mp: error: {message}", err=True)
    sys.exit(2)
