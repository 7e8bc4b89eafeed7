"""Health probes, stack dumps, lifecycle events and hooks, end to end: a real `janus-mp run`
from a TOML file, looked at like a user would (status, events, a hook's output)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from tests.integration.test_cli import Cli
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)

APPS = '''
import os, sys, time
from janus_mp import JanusService

def sick_app(environ, start_response):
    """The first worker that answers /healthz is sick for good; the others are fine."""
    sick = os.path.join(os.environ["MARKER_DIR"], "sick_pid")
    if not os.path.exists(sick):
        with open(sick + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(sick + ".tmp", sick)
    if environ["PATH_INFO"] == "/healthz" and open(sick).read() == str(os.getpid()):
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"sick"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]

def blocked_in_here():
    while True:
        time.sleep(60)  # no heartbeat: the watchdog will come

def stuck(ctx):
    ctx.ready()
    blocked_in_here()

def steady(ctx):
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
    c = Cli(tmp_path)
    (tmp_path / "probeapps.py").write_text(textwrap.dedent(APPS))
    c.env["MARKER_DIR"] = str(tmp_path)
    yield c
    c.close()


def _recent_exits(cli: Cli) -> list[dict]:
    return cli.status()["recent_exits"]


HOOK_WRITER = ("import json, os, sys; "
               "open(sys.argv[1] + '.tmp', 'w').write(json.dumps({k: v for k, v in "
               "os.environ.items() if k.startswith('JANUS_')})); "
               "os.replace(sys.argv[1] + '.tmp', sys.argv[1])")


def test_an_http_probe_replaces_a_sick_worker_and_the_exit_hook_hears_of_it(cli, tmp_path):
    hook_out = tmp_path / "hook.json"
    config = tmp_path / "janus.toml"
    config.write_text(BASE + f'''
[services.web]
wsgi = "probeapps:sick_app"
bind = "127.0.0.1:0"
stop_timeout = 0.5
health = {{ http = "/healthz", interval = 0.2, timeout = 1, failures = 2 }}
[services.web.backoff]
initial_delay = 0.1
max_retries = 0

[hooks]
on_exit = [{json.dumps(sys.executable)}, "-c", {json.dumps(HOOK_WRITER)},
           {json.dumps(str(hook_out))}]
timeout = 5
''')
    cli.start("-c", str(config))
    wait_until(hook_out.exists, timeout=20, message="the exit hook's output")
    sick_pid = int((tmp_path / "sick_pid").read_text())
    web = wait_until(lambda: (s := cli.service("web"))["ready"] == 1 and s, timeout=20,
                     message="a healthy replacement")
    assert web["restarts"] == 1 and sick_pid not in web["pids"]
    # The hook wrote its file before it exited; it counts as run once the supervisor reaped it.
    status = wait_until(lambda: (s := cli.status())["hooks"]["ran"] >= 1 and s, timeout=20,
                        message="the exit hook counted as run")
    (exit_,) = status["recent_exits"]
    assert status["hooks"]["dropped"] == 0
    assert (exit_["pid"], exit_["service"], exit_["reason"]) == (sick_pid, "web", "unhealthy")
    log = wait_until(lambda: "health probe failed (2/2): GET /healthz on 127.0.0.1:" in
                     (text := cli.log.read_text()) and text, timeout=20,
                     message="the failed probe in the log (written by the log's own thread)")
    assert "HTTP 500" in log
    env = json.loads(hook_out.read_text())
    assert env["JANUS_EVENT"] == "exited" and env["JANUS_REASON"] == "unhealthy"
    assert env["JANUS_SERVICE"] == "web" and env["JANUS_SLOT"] == "0"
    assert env["JANUS_PID"] == str(sick_pid)
    assert env["JANUS_EXIT_CODE"] == str(exit_["exit_code"])


def test_events_follow_shows_a_crash_and_a_stuck_worker_is_dumped_before_its_kill(cli,
                                                                                 tmp_path):
    config = tmp_path / "janus.toml"
    config.write_text(BASE + '''
[services.steady]
target = "probeapps:steady"
[services.steady.backoff]
initial_delay = 0.1
max_retries = 0

[services.stuck]
target = "probeapps:stuck"
watchdog_timeout = 1
stack_dump_timeout = 2
[services.stuck.backoff]
initial_delay = 30
max_retries = 0
''')
    cli.start("-c", str(config))
    pid = wait_until(lambda: (s := cli.service("steady"))["ready"] == 1 and s["pids"][0],
                     message="a ready worker")
    follower = subprocess.Popen(
        [sys.executable, "-m", "janus_mp", "events", "-f", "--json", "--socket", cli.socket],
        cwd=tmp_path, env=cli.env, stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[dict] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(json.loads(line))
                                              for line in follower.stdout], daemon=True)
    reader.start()
    seen: list[dict] = []

    def saw(predicate) -> dict | None:
        while not lines.empty():
            seen.append(lines.get())
        return next((item for item in seen if predicate(item)), None)

    try:
        # History first: the worker's start is already there.
        wait_until(lambda: saw(lambda e: e["event"] == "ready" and e["pid"] == pid),
                   message="the ready event from history")
        os.kill(pid, signal.SIGKILL)
        crash = wait_until(lambda: saw(lambda e: e["event"] == "exited" and e["pid"] == pid),
                           message="the crash event")
        assert (crash["service"], crash["reason"], crash["exit_code"]) == \
            ("steady", "killed", -9)
        wait_until(lambda: saw(lambda e: e["event"] == "spawned" and e["service"] == "steady"
                               and e["pid"] != pid), message="the replacement's spawn")
        kinds = [e["event"] for e in seen if e.get("service") == "steady"]
        exited = kinds.index("exited")
        # full jitter may draw a delay of 0 (1 in 101 here): then the restart happens in the
        # exit's own step and no backing_off is announced
        later = kinds[exited + 1:]
        assert later[0] in ("backing_off", "spawned"), kinds
        assert "spawned" in later, kinds
        stuck = wait_until(lambda: saw(lambda e: e["event"] == "exited" and
                                       e["service"] == "stuck"), timeout=20,
                           message="the stuck worker's kill")
        assert stuck["reason"] == "watchdog_timeout"
    finally:
        follower.terminate()
        follower.wait(10)
        reader.join(10)
        follower.stdout.close()
    exits = cli.status()["recent_exits"]
    dumped = next(e for e in exits if e["service"] == "stuck")
    assert dumped["pid"] == stuck["pid"] and dumped["reason"] == "watchdog timeout"
    assert "in blocked_in_here" in dumped["stack_dump"]
    # The supervisor's log is written by its own thread: wait for the line, do not race it.
    wait_until(lambda: f"stuck[0] (pid {stuck['pid']}): stack dump before SIGKILL"
               in cli.log.read_text(), timeout=20, message="the stack dump in the log")
    text = cli.ctl("status").stdout
    heading = f"stack dump of stuck[0] (pid {stuck['pid']}, watchdog timeout"
    assert heading in text and "in blocked_in_here" in text.split(heading, 1)[1]
    plain = cli.ctl("events")
    assert plain.returncode == 0, plain.stderr
    assert f"pid {pid}  exit -9  killed by signal 9 (SIGKILL)" in plain.stdout
