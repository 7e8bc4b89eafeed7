"""`janus-mp run` under gunicorn's flag names: -t/--timeout kills and replaces an HTTP worker
stuck in a request (gunicorn's meaning), --graceful-timeout is the stop grace."""

from __future__ import annotations

import textwrap
import threading
import time

import pytest

from tests.http_client import get
from tests.integration.ops_cli import QuickCli
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)

APP = '''
import os, time

def app(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        open(f"hanging-{os.getpid()}", "w").close()
        time.sleep(600)  # a request that never finishes: the worker proves no life
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
'''


@pytest.fixture
def cli(tmp_path):
    (tmp_path / "hangapp.py").write_text(textwrap.dedent(APP))
    c = QuickCli(tmp_path)
    yield c
    c.close()


def _pid_answer(address: str) -> int | None:
    try:
        status, _, body = get(address, "/", timeout=5)
    except OSError:
        return None
    return int(body) if status == 200 else None


def test_timeout_replaces_a_worker_stuck_in_a_request(cli):
    cli.start("--wsgi", "hangapp:app", "--name", "web",
              "-b", "127.0.0.1:0", "-w", "1", "-t", "1.5",
              "--graceful-timeout", "1", "--kill-timeout", "1")
    address = wait_until(lambda: cli.service("web")["listening"], timeout=20)[0]
    first = wait_until(lambda: _pid_answer(address), timeout=20)
    hung = threading.Thread(target=lambda: _try(lambda: get(address, "/hang", timeout=30)),
                            daemon=True)
    began = time.monotonic()
    hung.start()
    wait_until(lambda: next((w for w in cli.service("web")["workers"]
                             if w["restarts"] >= 1), None), timeout=30,
               message="the stuck worker replaced")
    wait_until(lambda: f"web[0] (pid {first}, gen 1) exited: watchdog timeout"
               in cli.log.read_text(), timeout=20, message="the watchdog's exit line")
    second = wait_until(lambda: _pid_answer(address), timeout=20)
    assert second != first
    assert time.monotonic() - began < 25
    hung.join(timeout=30)


def _try(call) -> None:
    try:
        call()
    except OSError:
        pass  # the worker holding this request was killed: the connection drops


def test_graceful_timeout_bounds_the_stop_of_a_busy_worker(cli):
    """--shutdown-timeout 120 would keep a worker stuck in a request for two minutes; gunicorn's
    --graceful-timeout 1 is this service's grace, then SIGTERM ends it."""
    cli.start("--wsgi", "hangapp:app", "--name", "web", "-b", "127.0.0.1:0",
              "--shutdown-timeout", "120", "--graceful-timeout", "1", "--kill-timeout", "1")
    address = wait_until(lambda: cli.service("web")["listening"], timeout=20)[0]
    pid = wait_until(lambda: _pid_answer(address), timeout=20)
    hung = threading.Thread(target=lambda: _try(lambda: get(address, "/hang", timeout=60)),
                            daemon=True)
    hung.start()
    wait_until(lambda: (cli.tmp / f"hanging-{pid}").exists(), timeout=20,
               message="the request in the app")
    assert cli.ctl("stop", "web").returncode == 0
    wait_until(lambda: f"web[0] (pid {pid}, gen 1) exited:" in cli.log.read_text(),
               timeout=40, message="the busy worker stopped within its graceful timeout")
    hung.join(timeout=30)
