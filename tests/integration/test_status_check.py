"""`janus-mp status --check` for scripts (0 ready, 1 not, 2 nobody answers) and
`workers = "auto"` sized from the CPUs the supervisor may use."""

from __future__ import annotations

import textwrap

import pytest

from janus_mp.osproc import usable_cpus
from tests.integration.test_cli import Cli
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
    c = Cli(tmp_path)
    (tmp_path / "checkapp.py").write_text(textwrap.dedent(APP))
    yield c
    c.close()


def test_check_exits_1_until_every_worker_is_ready_then_0(cli, tmp_path):
    (tmp_path / "janus.toml").write_text(CONFIG)
    cli.start("-c", str(tmp_path / "janus.toml"))
    waiting = cli.ctl("status", "--check")
    assert waiting.returncode == 1, waiting.stderr
    assert "gated starting 0/1" in waiting.stdout
    (tmp_path / "open").touch()
    ready = wait_until(lambda: (r := cli.ctl("status", "--check")).returncode == 0 and r)
    assert ready.stdout.startswith("ready: 2 services")
    assert cli.service("pool")["desired"] == usable_cpus()


def test_check_exits_2_when_no_supervisor_answers(cli, tmp_path):
    gone = cli.janus("status", "--check", "--socket", str(tmp_path / "nobody.sock"))
    assert gone.returncode == 2 and "no supervisor is listening" in gone.stderr
