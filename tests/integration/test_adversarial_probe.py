"""Faults an adversarial probe found, each on a real supervisor: nothing a worker or a client
does may block the supervisor's loop, starve its control socket or its probes, or reach its
log raw; bad input gets one line and exit 2."""

from __future__ import annotations

import textwrap

import pytest

from janus_mp.app import control
from janus_mp.errors import JanusError
from tests.integration.ops_cli import QuickCli
from tests.support import tagged_pids, wait_until

pytestmark = pytest.mark.timeout(120)

APPS = '''
import os, sys, time

def fifo_dump(ctx):
    """Swaps its stack-dump file for a FIFO, then stops heartbeating."""
    from janus_mp.runtime import worker
    path = os.readlink(f"/proc/self/fd/{worker._dump_file}")  # the fd faulthandler writes to
    os.unlink(path)
    os.mkfifo(path)
    ctx.ready()
    while True:
        time.sleep(60)

def idle(ctx):
    ctx.ready()
    ctx.shutdown.wait()

def gated(ctx):
    while not os.path.exists("open") and not ctx.shutdown.wait(0.01):
        pass
    ctx.ready()
    ctx.shutdown.wait()

def spoofer(ctx):
    """Prints lines that, raw on a terminal, would pass for the supervisor's own."""
    sys.stdout.write("work\\r\\x1b[2K2026-01-01 00:00:00,000 [1] INFO janus_mp.supervisor: "
                     "all good\\x07\\x9b\\n")
    sys.stdout.flush()
    ctx.ready()
    ctx.shutdown.wait()

def dripping_app(environ, start_response):
    """Answers 200 at once, then drips its body a byte at a time, for ever."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    def body():
        while True:
            yield b"x"
            time.sleep(0.2)
    return body()

def sick_app(environ, start_response):
    start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
    return [b"sick"]
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


def test_a_dripping_http_answer_fails_its_probe_and_does_not_starve_other_services(cli,
                                                                                   tmp_path):
    (tmp_path / "janus.toml").write_text(BASE + '''
[services.drip]
wsgi = "probeapp:dripping_app"
bind = "127.0.0.1:0"
workers = 4
stop_timeout = 0.5
health = { http = "/", interval = 0.2, timeout = 1, failures = 1 }
backoff = { initial_delay = 0.1, max_delay = 0.1, max_retries = 0 }

[services.sick]
wsgi = "probeapp:sick_app"
bind = "unix:sick.sock"
stop_timeout = 0.5
health = { http = "/", interval = 0.2, timeout = 1, failures = 1 }
backoff = { initial_delay = 0.1, max_delay = 0.1, max_retries = 0 }
''')
    cli.start("-c", str(tmp_path / "janus.toml"))

    def replaced(service: str) -> bool:
        return any(e["service"] == service and e["reason"] == "unhealthy"
                   for e in _status(cli)["recent_exits"])

    # The dripping answers end at the probe's timeout, as failures; and the four of them do
    # not keep the other service from being probed (and its sick worker replaced).
    wait_until(lambda: replaced("drip"), timeout=30, message="a dripping worker replaced")
    wait_until(lambda: replaced("sick"), timeout=30, message="the sick worker replaced")
    wait_until(lambda: "no whole answer within 1s" in cli.log.read_text(), timeout=20,
               message="the probe's failure in the log")


def test_a_command_probe_leaves_no_children_behind(cli, tmp_path):
    (tmp_path / "janus.toml").write_text(BASE + '''
[services.idle]
target = "probeapp:idle"
health = { command = ["sh", "-c", "echo x >> probes; sleep 300 & exit 0"], interval = 0.1, timeout = 5 }
''')
    cli.start("-c", str(tmp_path / "janus.toml"))
    probes = tmp_path / "probes"
    wait_until(lambda: probes.exists() and len(probes.read_text().split()) >= 10, timeout=30,
               message="ten probes run")

    def sleeps() -> list[int]:
        left = []
        for pid in tagged_pids(cli.tag):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[:2] == [b"sleep", b"300"]:
                        left.append(pid)
            except OSError:
                pass
        return left

    # Each probe's group is killed as it ends: at most the one running now has a sleep.
    wait_until(lambda: len(sleeps()) <= 1, timeout=10, message="the probes' children killed")
    count = len(probes.read_text().split())
    wait_until(lambda: len(probes.read_text().split()) >= count + 10, timeout=30)
    assert len(sleeps()) <= 1


@pytest.mark.parametrize("log_dir", [False, True])
def test_control_characters_in_worker_output_are_escaped_in_text_logs(cli, tmp_path, log_dir):
    (tmp_path / "janus.toml").write_text(BASE + (f'log_dir = "{tmp_path / "logs"}"\n'
                                                 if log_dir else "") + '''
[services.spoof]
target = "probeapp:spoofer"
''')
    cli.start("-c", str(tmp_path / "janus.toml"))
    where = tmp_path / "logs" / "spoof.log" if log_dir else cli.log
    text = wait_until(lambda: where.exists() and "all good" in (t := where.read_text()) and t,
                      timeout=20, message="the worker's line in the log")
    line = next(line for line in text.splitlines() if "all good" in line)
    assert "work\\x0d\\x1b[2K2026-01-01" in line and line.endswith("all good\\x07\\x9b")
    assert not any(c in text for c in "\r\x1b\x07\x9b")
    shown = control.call(cli.socket, "logs", service="spoof", lines=5)
    assert any("work\\x0d\\x1b[2K" in entry for entry in shown)


def test_scaling_a_service_that_waits_for_a_dependency_starts_no_worker(cli, tmp_path):
    (tmp_path / "janus.toml").write_text(BASE + '''
[services.db]
target = "probeapp:gated"
wait_for_ready = true

[services.api]
target = "probeapp:idle"
depends_on = ["db"]
''')
    cli.start("-c", str(tmp_path / "janus.toml"))
    wait_until(lambda: cli.service("db")["pids"], timeout=20, message="db starting")
    control.call(cli.socket, "scale", service="api", workers=3, timeout=10)
    api = cli.service("api")
    assert api["desired"] == 3 and api["waiting"] == "waiting for db (starting)"
    assert api["pids"] == [] and [w["pids"] for w in api["workers"]] == [[], [], []]
    (tmp_path / "open").touch()
    wait_until(lambda: cli.service("api")["ready"] == 3, timeout=30, message="api ready")


def test_an_events_buffer_past_the_cap_is_refused_in_one_line(cli, tmp_path):
    (tmp_path / "janus.toml").write_text(BASE + '[services.idle]\ntarget = "probeapp:idle"\n')
    cli.start("-c", str(tmp_path / "janus.toml"))
    with pytest.raises(JanusError) as refused:
        control.call(cli.socket, "events", timeout=10, follow=True, buffer=100_000_000)
    assert str(refused.value) == "events: buffer must be an integer from 1 to 10000"
    assert control.call(cli.socket, "events", timeout=10, buffer=10_000) is None  # the cap
