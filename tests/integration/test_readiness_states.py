"""/readyz, `status --check` and /healthz over a real supervisor walked through every state a
service can be in: starting, waiting for a dependency, backing off, breaker open (and
half-open), breaker open for good, stopped by `janus-mp stop`, a one-shot that completed.
/readyz and `status --check` name the same services every time, and both are ready only
when everything serves."""

from __future__ import annotations

import json
import socket
import textwrap
import urllib.error
import urllib.request

import pytest

from janus_mp.app import control
from tests.integration.ops_cli import QuickCli, janus_here
from tests.support import wait_until

pytestmark = pytest.mark.timeout(120)

APP = '''
import os, sys

def gated(ctx):
    while not os.path.exists("open") and not ctx.shutdown.wait(0.01):
        pass
    ctx.ready()
    ctx.shutdown.wait()

def idle(ctx):
    ctx.ready()
    ctx.shutdown.wait()

def crashing(ctx):
    if os.path.exists("crash-" + ctx.service):
        sys.exit(1)
    ctx.ready()
    ctx.shutdown.wait()

def once(ctx):
    pass
'''

CONFIG = '''
[supervisor]
shutdown_timeout = 2
kill_timeout = 1
healthz_fails_on_given_up = true

[services.gated]
target = "readyapp:gated"
wait_for_ready = true

[services.dependent]
target = "readyapp:idle"
depends_on = ["gated"]

[services.stoppable]
target = "readyapp:idle"

[services.once]
target = "readyapp:once"
restart = "never"

[services.slow]
target = "readyapp:crashing"
backoff = { initial_delay = 1.0, max_delay = 1.0, multiplier = 1, max_retries = 0 }

[services.flaky]
target = "readyapp:crashing"
backoff = { initial_delay = 0.01, max_delay = 0.01, max_retries = 2, half_open_after = 2, trial_period = 0.5 }

[services.doomed]
target = "readyapp:crashing"
backoff = { initial_delay = 0.01, max_delay = 0.01, max_retries = 2, half_open_after = "never" }
'''


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class Views:
    """The three answers, taken one after the other."""

    def __init__(self, port: int, socket_path: str) -> None:
        self.port, self.socket = port, socket_path

    def readyz(self) -> tuple[int, dict]:
        status, body = _get(self.port, "/readyz")
        return status, json.loads(body)

    def check(self) -> tuple[int, str]:
        result = janus_here("status", "--check", "--socket", self.socket)
        return result.returncode, result.stdout.strip()

    def agree(self) -> dict:
        """/readyz and `status --check` say the same (asked twice around the check, so a
        service changing phase in between cannot make them look different)."""
        def both() -> tuple[tuple[int, dict], tuple[int, str], tuple[int, dict]]:
            return self.readyz(), self.check(), self.readyz()

        def same(answers: tuple[tuple[int, dict], tuple[int, str], tuple[int, dict]]) -> bool:
            (code, body), (exit_code, line), (code2, body2) = answers
            if (code, set(body["not_ready"])) != (code2, set(body2["not_ready"])):
                return False
            named = {part.split(" ")[0] for part in line.removeprefix("not ready: ").split(", ")}
            return (code == 200) == (exit_code == 0) and (
                code == 200 or named - {"supervisor"} == set(body["not_ready"]))

        def agreeing() -> tuple | None:
            answers = both()
            return answers if same(answers) else None

        answers = wait_until(agreeing, timeout=30, message="/readyz and status --check agreeing")
        return answers[0][1]


@pytest.fixture
def cli(tmp_path):
    c = QuickCli(tmp_path)
    (tmp_path / "readyapp.py").write_text(textwrap.dedent(APP))
    (tmp_path / "janus.toml").write_text(CONFIG)
    for name in ("slow", "flaky", "doomed"):
        (tmp_path / f"crash-{name}").touch()
    yield c
    c.close()


def test_readyz_and_status_check_agree_through_every_state(cli, tmp_path):
    port = _free_port()
    cli.start("-c", str(tmp_path / "janus.toml"), "--metrics-bind", f"127.0.0.1:{port}")
    views = Views(port, cli.socket)

    def phases() -> dict:
        return {s["name"]: (s["phase"], s["breaker"], (s["termination_reason"] or {}).get("kind"))
                for s in control.call(cli.socket, "status")["services"]}

    wait_until(lambda: phases()["doomed"] == ("terminated", "open", "circuit_breaker_open")
               and phases()["flaky"][1] != "closed" and phases()["once"][0] == "terminated",
               timeout=30, message="doomed given up, flaky tripped, once done")
    body = views.agree()
    assert body["ready"] is False
    not_ready = body["not_ready"]
    # Every service not serving is named, each with why; the one-shot that completed is not.
    assert not_ready["gated"]["phase"] == "starting"
    assert "gated" in not_ready["dependent"]["waiting"]
    assert not_ready["doomed"]["reason"] == "circuit_breaker_open"
    assert not_ready["flaky"]["breaker"] in ("open", "half_open")
    assert "slow" in not_ready and "once" not in not_ready and "stoppable" not in not_ready
    assert body["given_up"] == ["doomed"]
    assert _get(port, "/healthz")[0] == 503  # healthz_fails_on_given_up: the pod restarts
    wait_until(lambda: views.readyz()[1]["not_ready"].get("slow", {}).get("phase")
               == "backing_off", timeout=30, message="slow seen backing off")

    janus_here("stop", "stoppable", "--socket", cli.socket)
    wait_until(lambda: phases()["stoppable"][0] == "terminated", timeout=20)
    body = views.agree()
    assert body["not_ready"]["stoppable"]["reason"] == "stopped"
    assert body["given_up"] == ["doomed"]  # stopped on purpose is not given up

    # Everything is put right, one at a time; readiness comes only with the last one.
    (tmp_path / "open").touch()
    (tmp_path / "crash-slow").unlink()
    (tmp_path / "crash-flaky").unlink()
    wait_until(lambda: set(views.readyz()[1]["not_ready"]) == {"doomed", "stoppable"},
               timeout=30, message="gated, dependent, slow and flaky (half-open) serving")
    assert views.agree()["ready"] is False
    janus_here("start", "stoppable", "--socket", cli.socket)
    (tmp_path / "crash-doomed").unlink()
    janus_here("start", "doomed", "--socket", cli.socket)
    wait_until(lambda: views.readyz()[0] == 200, timeout=30, message="all serving")
    body = views.agree()
    assert body == {"ready": True, "state": "running", "not_ready": {}, "given_up": []}
    assert views.check()[1].startswith("ready: 7 services")
    assert _get(port, "/healthz")[0] == 200
