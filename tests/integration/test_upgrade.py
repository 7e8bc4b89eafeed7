"""Zero-downtime deploys with real processes: `janus-mp upgrade` under load, a broken new
version, `reload` picking up code under spawn, and `run --reload`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from janus_mp.app.control import call
from janus_mp.errors import JanusError
from tests.http_client import Load, get
from tests.integration.test_cli import Cli
from tests.support import alive, stop_process, tagged_pids, wait_until

pytestmark = pytest.mark.timeout(90)

APP = '''
def app(environ, start_response):
    body = {text!r}
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''
BROKEN = 'raise RuntimeError("new version cannot start: missing setting")\n'


def write_app(tmp: Path, text: bytes) -> None:
    (tmp / "webapp.py").write_text(APP.format(text=text))


class UpgradeCli(Cli):
    """Cli, with the control socket spoken to directly where the command line is not what is
    tested: every `janus-mp status` subprocess costs an interpreter start."""

    def call(self, command: str, **args: object) -> Any:
        return call(self.socket, command, 10.0, **args)

    def status(self) -> dict:
        return self.call("status")

    def start(self, *args: str) -> None:
        self._log = open(self.log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "janus_mp", "run", "--socket", self.socket,
             "--metrics-bind", "off", *args], cwd=self.tmp, env=self.env,
            stdout=self._log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        wait_until(lambda: self.proc.poll() is not None or self._answers(), timeout=20,
                   message="the control socket")
        assert self.proc.poll() is None, self.log.read_text()

    def _answers(self) -> bool:
        try:
            self.call("status")
        except JanusError:
            return False
        return True


@pytest.fixture
def cli(tmp_path):
    c = UpgradeCli(tmp_path)
    c.env["PYTHONDONTWRITEBYTECODE"] = "1"  # a rewritten file must never meet a stale .pyc
    yield c
    if c.proc is not None and c.proc.poll() is None:
        stop_process(c.proc)
    elif tagged_pids(c.tag):  # upgraded: the supervisor now running is the new one
        c.call("shutdown")
    # spawn's resource tracker exits once the supervisor has: wait for it, with a deadline
    wait_until(lambda: not tagged_pids(c.tag), timeout=20, message="every process to exit")
    c.close()


def serving(cli: Cli) -> str:
    """Where the one service listens, once it is registered."""
    def address() -> str | None:
        services = cli.status()["services"]
        return services[0]["listening"][0] if services and services[0]["listening"] else None
    return wait_until(address, timeout=10, message="the service to listen")


UPGRADED = '''
[supervisor]
shutdown_timeout = 5
metrics_dir = "metrics"

[services.web]
wsgi = "webapp:app"
bind = ["127.0.0.1:0"]
workers = 2
'''


def metrics_port(log: str, pid: int) -> int:
    return int(re.search(rf"\[{pid}\] INFO janus_mp.http: metrics on http://127.0.0.1:(\d+)/",
                         log).group(1))


def test_upgrade_under_load_drops_no_request(cli, tmp_path):
    write_app(tmp_path, b"version one")
    (tmp_path / "janus.toml").write_text(UPGRADED)
    pid_file = tmp_path / "janus.pid"
    cli.start("-c", "janus.toml", "--pid-file", str(pid_file), "--metrics-bind", "127.0.0.1:0")
    old = cli.proc
    address = serving(cli)
    wait_until(lambda: cli.status()["services"][0]["ready"] == 2)
    with Load(address, clients=1) as load:
        wait_until(lambda: load.bodies[b"version one"] >= 20, message="old responses")
        write_app(tmp_path, b"version two, new")
        started = time.monotonic()
        result = cli.janus("upgrade", "--socket", cli.socket, timeout=60)
        assert result.returncode == 0, result.stderr + cli.log.read_text()
        new_pid = int(re.search(r"supervisor pid (\d+) serves", result.stdout).group(1))
        assert old.wait(20) == 0  # drained and exited cleanly
        handover = time.monotonic() - started
        after_exit = load.ok
        wait_until(lambda: load.ok >= after_exit + 20, message="responses after the handover")
    print(f"\nupgrade under load: {load.ok + len(load.failures)} requests, "
          f"{len(load.failures)} failed, upgrade command to old supervisor gone "
          f"{handover:.2f}s; {result.stdout.strip()}; "
          f"{dict((k.decode(), v) for k, v in load.bodies.items())}")
    assert load.failures == []
    assert load.last_body == b"version two, new"
    assert load.bodies[b"version two, new"] >= 20
    assert not alive(old.pid)
    shown = cli.ctl("status", "--json")  # the command a user runs answers from the new one
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["pid"] == new_pid != old.pid
    web = status["services"][0]
    assert web["ready"] == 2 and web["listening"] == [address]
    assert pid_file.read_text() == f"{new_pid}\n"
    log = cli.log.read_text()
    assert f"upgrade: supervisor pid {new_pid} is ready after" in log
    assert f"[{old.pid}] INFO janus_mp.supervisor: janus-mp: supervisor stopped (exit status 0)" \
        in log  # its last line too: the log writer is flushed before the exit
    # The metrics endpoint was handed over too (same port, now the new one's), and the old
    # one's exit left the new workers' files in the shared metrics_dir.
    port = metrics_port(log, old.pid)
    assert metrics_port(log, new_pid) == port
    scrape = get(f"127.0.0.1:{port}", "/metrics")[2].decode()
    served = sum(float(line.rsplit(" ", 1)[1]) for line in scrape.splitlines()
                 if line.startswith("janus_http_requests_total{"))
    assert served >= 20
    files = os.listdir(tmp_path / "metrics")
    for worker in web["workers"]:
        assert any(name.endswith(f"_{worker['pids'][0]}.db") for name in files), files
    cli.call("shutdown")
    wait_until(lambda: not tagged_pids(cli.tag), timeout=20, message="everything to exit")
    assert not Path(cli.socket).exists() and not pid_file.exists()


def test_a_broken_new_version_leaves_the_old_one_serving(cli, tmp_path):
    write_app(tmp_path, b"version one")
    cli.start("--wsgi", "webapp:app", "-b", "127.0.0.1:0", "-w", "1")
    address = serving(cli)
    before = set(tagged_pids(cli.tag))
    (tmp_path / "webapp.py").write_text(BROKEN)
    result = cli.janus("upgrade", "--socket", cli.socket, timeout=60)
    assert result.returncode == 2
    failed = re.search(r"upgrade failed: the new supervisor \(pid (\d+)\) exited with status 2 "
                       r"before it was ready", result.stderr)
    assert failed, result.stderr
    log = cli.log.read_text()
    assert "new version cannot start: missing setting" in log
    assert f"still serving as pid {cli.proc.pid}, unchanged" in log
    assert not alive(int(failed.group(1)))
    assert cli.status()["pid"] == cli.proc.pid
    assert get(address)[2] == b"version one"
    assert set(tagged_pids(cli.tag)) == before  # the new one left nothing behind
    # Fixed: SIGUSR2 upgrades as the command does.
    write_app(tmp_path, b"version two, new")
    cli.proc.send_signal(signal.SIGUSR2)
    assert cli.proc.wait(30) == 0
    assert get(address)[2] == b"version two, new"
    assert cli.status()["pid"] != cli.proc.pid


SLOW = '''
[supervisor]
upgrade_timeout = 1

[services.web]
wsgi = "webapp:app"
bind = ["127.0.0.1:0"]
'''


def test_a_new_version_not_ready_in_time_is_stopped(cli, tmp_path):
    write_app(tmp_path, b"version one")
    (tmp_path / "janus.toml").write_text(SLOW)
    cli.start("-c", "janus.toml")
    address = serving(cli)
    wait_until(lambda: cli.status()["services"][0]["ready"] == 1)
    before = set(tagged_pids(cli.tag))
    (tmp_path / "webapp.py").write_text("import time\ntime.sleep(60)\n")
    with pytest.raises(JanusError, match=r"upgrade failed: the new supervisor \(pid \d+\) was "
                       r"not ready within 1s; still serving as pid \d+, unchanged"):
        cli.call("upgrade")
    assert cli.status()["pid"] == cli.proc.pid
    assert get(address)[2] == b"version one"
    assert set(tagged_pids(cli.tag)) == before


CONFIG = '''
[supervisor]
start_method = "spawn"
shutdown_timeout = 5

[services.web]
wsgi = "webapp:app"
bind = ["127.0.0.1:0"]
workers = 1
'''


def test_reload_under_spawn_picks_up_a_changed_module(cli, tmp_path):
    write_app(tmp_path, b"version one")
    (tmp_path / "janus.toml").write_text(CONFIG)
    cli.start("-c", "janus.toml")
    address = serving(cli)
    wait_until(lambda: get(address)[2] == b"version one", timeout=20)
    assert "code changed" not in cli.call("reload")  # nothing changed yet
    write_app(tmp_path, b"version two, new")
    result = cli.ctl("reload")
    assert result.returncode == 0, result.stderr
    assert "code changed, rolling restart of web" in result.stdout
    wait_until(lambda: get(address)[2] == b"version two, new", timeout=20,
               message="the new code to serve")


def test_run_reload_restarts_on_a_file_change(cli, tmp_path):
    write_app(tmp_path, b"version one")
    cli.start("--reload", "--start-method", "spawn", "--wsgi", "webapp:app",
              "-b", "127.0.0.1:0", "--shutdown-timeout", "5")
    address = serving(cli)
    wait_until(lambda: "watching Python files" in cli.log.read_text(), timeout=10)
    wait_until(lambda: get(address)[2] == b"version one", timeout=20)
    write_app(tmp_path, b"version two, new")
    wait_until(lambda: get(address)[2] == b"version two, new", timeout=20,
               message="the new code to serve")
    assert "files changed (webapp.py): rolling restart" in cli.log.read_text()

