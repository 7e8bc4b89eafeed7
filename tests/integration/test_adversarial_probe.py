"""Faults an adversarial probe found, each on a real supervisor: nothing a worker or a client
does may block the supervisor's loop, starve its control socket or its probes, or reach its
log raw; bad input gets one line and exit 2."""

from __future__ import annotations

import textwrap

import pytest

from janus_mp.app import control
from tests.integration.ops_cli import QuickCli
from tests.support import wait_until

pytestmark = pytest.mark.timeout(120)

APPS = '''
import os, sys, time

def fifo_dump(ctx):
    """Swaps its stack-dump file for a FIFO, then stops heartbeating."""
    from janus_mp.runtime import worker
    path = worker._dump_file.name
    os.unlink(path)
    os.mkfifo(path)
    ctx.ready()
    while True:
        time.sleep(60)

def idle(ctx):
    ctx.ready()
    ctx.shutdown.wait()
'''

BASE = '''
[supervisor]
shutdown_timeout = 1
kill_timeout = 1
'''


@pytest.fixture
def cli(tmp_path):
    c = QuickCli(tmp_path)
    (tmp_path / "probeapp.py").write_text(textwrap.dedent(APPS))
    yield c
    c.close()


def _status(cli: QuickCli) -> dict:
    return control.call(cli.socket, "status", timeout=10)


def test_a_fifo_at_the_stack_dump_path_does_not_block_the_loop(cli, tmp_path):
    (tmp_path / "janus.toml").write_text(BASE + '''
[services.fifo]
target = "probeapp:fifo_dump"
watchdog_timeout = 1
stack_dump_timeout = 0.5
backoff = { initial_delay = 0.1, max_delay = 0.1, max_retries = 0 }
''')
    cli.start("-c", str(tmp_path / "janus.toml"))
    first = wait_until(lambda: (s := cli.service("fifo"))["ready"] == 1 and s["pids"][0],
                       timeout=20, message="the first worker ready")
    # The watchdog kills it (after asking for a dump that cannot be read), and the loop goes
    # on: a new worker, and status answering all along.
    wait_until(lambda: (pids := cli.service("fifo")["pids"]) and pids[0] != first,
               timeout=30, message="the stuck worker replaced")
    exits = [e for e in _status(cli)["recent_exits"] if e["pid"] == first]
    assert exits and exits[0]["reason"] == "watchdog timeout"
    assert "not a regular file" in (exits[0].get("stack_dump") or "")
