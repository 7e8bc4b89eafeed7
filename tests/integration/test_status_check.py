"""`janus-mp status --check` for scripts (0 ready, 1 not, 2 nobody answers) and
`workers = "auto"` sized from the CPUs the supervisor may use."""

from __future__ import annotations

import textwrap

import pytest

from janus_mp.app import control
from janus_mp.osproc import usable_cpus
from tests.integration.ops_cli import QuickCli, janus_here
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)

APP = '''
import os

def gated(ctx):
    while not os.path.exists("open") and not ctx.shutdown.wait(0.01):
        pass
    ctx.ready()
    ctx.shutdown.wait()

def idle(ctx):
    ctx.shutdown.wait()
'''

CONFIG = '''
[supervisor]
shutdown_timeout = 2
kill_timeout = 1

[services.gated]
target = "checkapp:gated"
wait_for_ready = true

[services.pool]
target = "checkapp:idle"
workers = "auto"
'''


@pytest.fixture
def cli(tmp_path):
    c = QuickCli(tmp_path)
    (tmp_path / "checkapp.py").write_text(textwrap.dedent(APP))
    yield c
    c.close()


def test_check_exits_1_until_every_worker_is_ready_then_0_and_2_without_supervisor(cli,
                                                                                   tmp_path):
    (tmp_path / "janus.toml").write_text(CONFIG)
    cli.start("-c", str(tmp_path / "janus.toml"))
    waiting = janus_here("status", "--check", "--socket", cli.socket)
    assert waiting.returncode == 1, waiting.stderr
    assert "gated starting 0/1" in waiting.stdout
    (tmp_path / "open").touch()
    wait_until(lambda: control.call(cli.socket, "status")["services"][0]["ready"] == 1)
    ready = janus_here("status", "--check", "--socket", cli.socket)
    assert ready.returncode == 0 and ready.stdout.startswith("ready: 2 services"), ready.stdout
    assert cli.service("pool")["desired"] == usable_cpus()

    gone = janus_here("status", "--check", "--socket", str(tmp_path / "nobody.sock"))
    assert gone.returncode == 2 and "no supervisor is listening" in gone.stderr
