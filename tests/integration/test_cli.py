"""The janus-mp command, driven for real in subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    TAG_VAR,
    kill_pids,
    proc_state,
    stop_process,
    tagged_pids,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]

SERVICES = '''
import os, sys, time
from janus_mp import JanusService

class Crunch(JanusService):
    name = "crunch"
    def run(self, ctx):
        ctx.ready()
        while not ctx.shutdown.wait(0.05):
            ctx.heartbeat()

def helper(ctx):
    ctx.shutdown.wait()

def broken_factory():
    raise RuntimeError("factory exploded")
'''

CONFIG = '''
[supervisor]
shutdown_timeout = 5
kill_timeout = 1

[services.crunch]
target = "svcmod:Crunch"
workers = {workers}
wait_for_ready = true

[services.helper]
target = "svcmod:helper"
workers = 1
'''


class Cli:
    """One `janus-mp run` process plus helpers to talk to it like a user would."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tag = uuid.uuid4().hex
        (tmp / "svcmod.py").write_text(textwrap.dedent(SERVICES))
        self.socket = str(tmp / "ctl" / "janus.sock")
        self.env = dict(os.environ, PYTHONPATH=f"{tmp}:{ROOT}", SPT_NOENV="1",
                        **{TAG_VAR: self.tag})
        self.proc: subprocess.Popen[str] | None = None
        self.log = tmp / "run.log"

    def janus(self, *args: str, env: dict[str, str] | None = None,
              timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "janus_mp", *args], cwd=self.tmp,
                              env=env or self.env, capture_output=True, text=True,
                              timeout=timeout)

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.janus(*args, "--socket", self.socket)

    def status(self) -> dict:
        """The status reply, asked in-process: a `janus-mp status` subprocess per poll costs
        a second of interpreter start-up on a busy machine (tests of the command itself use
        ``ctl``)."""
        from janus_mp.app import control

        return control.call(self.socket, "status", timeout=10)

    def answers(self) -> bool:
        """The supervisor runs (its socket opens a moment before its services start)."""
        from janus_mp.app import control
        from janus_mp.errors import JanusError

        try:
            return bool(control.call(self.socket, "status", timeout=5)["state"] == "running")
        except JanusError:
            return False

    def service(self, name: str) -> dict:
        return next(s for s in self.status()["services"] if s["name"] == name)

    def start(self, *args: str, env: dict[str, str] | None = None) -> None:
        if self.proc is not None:
            self._log.close()
        self._log = open(self.log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "janus_mp", "run", "--socket", self.socket,
             "--metrics-bind", "off", *args], cwd=self.tmp, env=env or self.env,
            stdout=self._log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        wait_until(lambda: self.proc.poll() is not None or self.answers(), timeout=20,
                   message="the control socket")
        assert self.proc.poll() is None, self.log.read_text()

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        if self.proc is not None:
            self._log.close()
        leftovers = tagged_pids(self.tag)
        kill_pids(leftovers)
        assert not leftovers, f"left behind: {leftovers}"


@pytest.fixture
def cli(tmp_path):
    c = Cli(tmp_path)
    yield c
    c.close()


def test_run_status_scale_restart_reload_term(cli, tmp_path):
    config = tmp_path / "janus.toml"
    config.write_text(CONFIG.format(workers=2))
    cli.start("-c", str(config))
    wait_until(lambda: cli.service("crunch")["ready"] == 2)
    mode = os.stat(cli.socket).st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(cli.socket)).st_mode) == 0o700

    status = cli.status()
    crunch = next(s for s in status["services"] if s["name"] == "crunch")
    assert crunch["phase"] == "running" and crunch["desired"] == 2
    assert all(p["rss_bytes"] > 0 for w in crunch["workers"] for p in w["processes"])

    assert cli.ctl("scale", "crunch", "3").returncode == 0
    wait_until(lambda: cli.service("crunch")["ready"] == 3)
    assert cli.ctl("scale", "crunch", "-1").returncode == 0
    wait_until(lambda: cli.service("crunch")["desired"] == 2)

    before = set(cli.service("crunch")["pids"])
    assert cli.ctl("restart", "crunch").returncode == 0
    wait_until(lambda: (s := cli.service("crunch"))["ready"] == 2
               and not set(s["pids"]) & before and len(s["pids"]) == 2)

    text = cli.ctl("status")
    assert "crunch" in text.stdout and "running" in text.stdout

    # HUP: the file now asks for 4 workers and drops the helper service.
    config.write_text(CONFIG.format(workers=4).split("[services.helper]")[0])
    cli.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: cli.service("crunch")["ready"] == 4, timeout=20)
    wait_until(lambda: [s["name"] for s in cli.status()["services"]] == ["crunch"])

    # A broken file on reload changes nothing and says why.
    config.write_text("[services.crunch]\ntarget = 'svcmod:Crunch'\nworkerz = 3\n")
    result = cli.ctl("reload")
    assert result.returncode == 2
    assert "services.crunch.workerz: unknown key (did you mean 'workers'?)" in result.stderr
    assert cli.service("crunch")["ready"] == 4

    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(20) == 0
    assert not os.path.exists(cli.socket)


def test_control_errors_are_one_line(cli):
    cli.start("svcmod:helper", "-w", "1")
    result = cli.ctl("scale", "nope", "2")
    assert result.returncode == 2
    assert result.stderr.strip() == \
        "janus-mp: error: unknown service 'nope' (running: helper)"
    result = cli.ctl("scale", "helper", "many")
    assert result.returncode == 2 and "not a worker count" in result.stderr
    result = cli.ctl("reload")
    assert result.returncode == 2 and "needs a config file" in result.stderr
    # Malformed, oversized and half-sent requests: refused, the supervisor lives on.
    for payload in (b"not json\n", b'{"command": 5}\n', b"[1,2]\n", b"x" * 70_000,
                    b'{"command": "status"'):
        s = socket.socket(socket.AF_UNIX)
        s.connect(cli.socket)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        reply = json.loads(s.recv(65536) or b'{"ok": false}')
        s.close()
        assert reply["ok"] is False
    assert cli.service("helper")["ready"] == 1


def test_second_supervisor_refused_and_stale_socket_reclaimed(cli, tmp_path):
    cli.start("svcmod:helper")
    second = cli.janus("run", "svcmod:helper", "--socket", cli.socket, "--metrics-bind", "off")
    assert second.returncode == 2
    assert "another janus-mp supervisor is running on" in second.stderr
    assert "Traceback" not in second.stderr
    assert cli.service("helper")["ready"] == 1  # the first one was not disturbed
    os.killpg(cli.proc.pid, signal.SIGKILL)
    cli.proc.wait()
    wait_until(lambda: not tagged_pids(cli.tag), timeout=3)
    assert os.path.exists(cli.socket)  # left behind by the killed supervisor
    cli.start("svcmod:helper")  # reclaims it
    assert cli.service("helper")["ready"] == 1


BAD_CONFIGS = [
    ("[supervisor]\nshutdown_timeot = 3\n",
     "supervisor.shutdown_timeot: unknown key (did you mean 'shutdown_timeout'?)"),
    ("[services.x]\ntarget = 'svcmod:helper'\n[services.x.backoff]\ninitial_delay = 5\n"
     "max_delay = 1\n", "services.x.backoff.max_delay: must be >= initial_delay"),
    ("[services.x]\ntarget = 'svcmod:helper'\nworkers = -1\n",
     "services.x.workers: must be >= 0"),
    ("[services.x]\ntarget = 'svcmod:helper'\nrestart = 'sometimes'\n",
     "services.x.restart: must be one of always, on_failure, never"),
    ("[services.x]\ntarget = 'svcmod'\n", 'services.x.target: must be "module:attribute"'),
    ("[services.x]\ntarget = 'nomod:thing'\n", "no module named 'nomod'"),
    ("[services.x]\ntarget = 'svcmod:missing'\n", "has no attribute 'missing'"),
    ("[services.x]\ntarget = 'svcmod:broken_factory'\n", "factory raised RuntimeError"),
    ("[services.x]\ntarget = 'svcmod:helper'\nhalt_codes = [3]\nsuccess_codes = [0, 3]\n",
     "exit code 3 is also in success_codes"),
    ("[supervisor\n", "is not valid TOML"),
    ("[services.x]\ntarget = 'svcmod:helper'\nwatchdog_timeout = 'soon'\n",
     "services.x.watchdog_timeout: must be a finite number"),
]


@pytest.mark.parametrize("text, message", BAD_CONFIGS)
def test_check_rejects_bad_configs_in_one_line(cli, tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = cli.janus("check", str(path))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_check_accepts_a_good_config(cli, tmp_path):
    path = tmp_path / "good.toml"
    path.write_text(CONFIG.format(workers=2))
    result = cli.janus("check", str(path))
    assert result.returncode == 0 and "ok (crunch, helper)" in result.stdout
    like_run = cli.janus("check", "-c", str(path))  # as `run -c FILE` takes it
    assert like_run.returncode == 0 and "ok (crunch, helper)" in like_run.stdout
    for args in ((), ("-c", str(path), str(path))):
        twice = cli.janus("check", *args)
        assert twice.returncode == 2
        assert twice.stderr == ("janus-mp: error: check: give the config file once, as FILE or "
                                "-c FILE\n")


@pytest.mark.parametrize("args, message", [
    (["run", "nomod:x"], "no module named 'nomod'"),
    (["run", "svcmod:nothing"], "has no attribute 'nothing'"),
    (["run", "svcmod:helper", "-w", "-3"], "Invalid value for '-w'"),
    (["run", "svcmod:helper", "--metrics-bind", "127.0.0.1:99999"], "port from 0 to 65535"),
    (["run", "-c", "/nonexistent/janus.toml"], "cannot read config file"),
    (["run"], "give a TARGET"),
])
def test_bad_input_exits_2_without_traceback(cli, args, message):
    result = cli.janus(*args, "--socket", cli.socket)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_port_in_use_is_refused_and_nothing_is_disturbed(cli):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        result = cli.janus("run", "svcmod:helper", "--socket", cli.socket,
                           "--metrics-bind", f"127.0.0.1:{port}")
        assert result.returncode == 2
        assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
        assert "Traceback" not in result.stderr
        assert not tagged_pids(cli.tag)  # no worker was started
        busy.settimeout(0.1)  # the owner of the port still has it
        assert busy.getsockname()[1] == port
    finally:
        busy.close()


def test_env_vars_fill_options(cli):
    env = dict(cli.env, JANUS_MP_RUN_WORKERS="3")
    cli.start("svcmod:helper", env=env)
    wait_until(lambda: cli.service("helper")["ready"] == 3)


def test_systemd_notify_over_a_real_datagram_socket(cli, tmp_path):
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(15)
    env = dict(cli.env, NOTIFY_SOCKET=address, WATCHDOG_USEC="400000")
    try:
        cli.start("svcmod:Crunch", "-w", "2", env=env)
        messages = []
        while not any("READY=1" in m for m in messages):
            messages.append(listener.recv(4096).decode())
        ready = next(m for m in messages if "READY=1" in m)
        assert "STATUS=2 services" not in ready and "2/2 workers ready" in ready
        assert f"MAINPID={cli.proc.pid}" in ready
        watchdog = 0
        while watchdog < 2:  # pings keep coming at half of WATCHDOG_USEC
            if "WATCHDOG=1" in listener.recv(4096).decode():
                watchdog += 1
        cli.proc.send_signal(signal.SIGTERM)
        while True:
            message = listener.recv(4096).decode()
            if "STOPPING=1" in message:
                break
        assert cli.proc.wait(20) == 0
    finally:
        listener.close()


def test_usr1_reopens_the_log_file(cli, tmp_path):
    log_file = tmp_path / "janus.log"
    cli.start("svcmod:helper", "--log-file", str(log_file))
    wait_until(lambda: log_file.exists() and "supervisor started" in log_file.read_text())
    rotated = tmp_path / "janus.log.1"
    log_file.rename(rotated)
    cli.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: log_file.exists() and "log files reopened" in log_file.read_text())


def test_process_titles_name_supervisor_and_workers(cli):
    cli.start("svcmod:Crunch", "-w", "2")
    wait_until(lambda: cli.service("crunch")["ready"] == 2)

    def title(pid: int) -> str:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()

    assert title(cli.proc.pid).startswith("janus-mp: supervisor svcmod:Crunch")
    workers = {w["worker"]: w["pids"][0] for w in cli.service("crunch")["workers"]}
    assert title(workers[0]).startswith("janus-mp: crunch worker 0 (gen 1)")
    assert title(workers[1]).startswith("janus-mp: crunch worker 1 (gen 1)")


def test_shipped_example_config_is_valid(cli):
    result = cli.janus("check", "--no-imports", str(ROOT / "scripts/deploy/janus.toml"))
    assert result.returncode == 0, result.stderr


def test_demo_serves_metrics_and_answers_status_and_top(cli, tmp_path):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    env = dict(cli.env, XDG_RUNTIME_DIR=str(tmp_path / "run"))
    cli._log = open(cli.log, "w")
    cli.proc = subprocess.Popen(
        [sys.executable, "-m", "janus_mp", "demo", "--metrics-bind", f"127.0.0.1:{port}",
         "--http-bind", "127.0.0.1:0"],
        cwd=tmp_path, env=env, stdout=cli._log, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    import urllib.request

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return ""

    body = wait_until(lambda: 'janus_supervisor_spawned_total{service="flaky"} 2.0' in
                      (b := scrape()) and b, timeout=30)
    assert "demo_primes_found_total" in body and "demo_hashes_total" in body
    web = re.search(r"web at http://([\d.:]+)/", cli.log.read_text()).group(1)
    with urllib.request.urlopen(f"http://{web}/primes?n=1000", timeout=10) as r:
        assert r.read() == b"168\n"
    assert 'demo_http_requests_total{path="/primes"} 1.0' in scrape()
    with urllib.request.urlopen(f"http://{web}/pool?n=1000", timeout=60) as r:
        assert r.read() == b"168\n"  # counted by a worker of the demo's task pool
    wait_until(lambda: 'janus_pool_tasks_total{outcome="done",pool="crunch"} 1.0' in scrape(),
               message="the pool's count (the answer may reach the client before the count)")
    status = cli.janus("status", "--name", "janus-mp-demo", env=env)
    assert status.returncode == 0 and "primes" in status.stdout and "hasher" in status.stdout
    top = cli.janus("top", "--once", "--name", "janus-mp-demo", env=env)
    assert top.returncode == 0 and "recent exits" in top.stdout and "flaky" in top.stdout
    cli.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert cli.proc.wait(30) == 0


def _fill_backlog(path: str) -> list[socket.socket]:
    """Connect to ``path`` until the kernel refuses (EAGAIN): its listen backlog is full."""
    held: list[socket.socket] = []
    for _ in range(10_000):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.setblocking(False)
        try:
            conn.connect(path)
        except BlockingIOError:
            conn.close()
            return held
        held.append(conn)
    raise AssertionError("the backlog never filled")


def _all_threads_stopped(pid: int) -> bool:
    """Every thread of ``pid`` is stopped: none can accept a connection any more."""
    tasks = os.listdir(f"/proc/{pid}/task")
    return all(proc_state(int(task)) == "T" for task in tasks)


@contextlib.contextmanager
def _backlog_full(cli: Cli) -> Iterator[None]:
    """The supervisor stopped (SIGSTOP: it accepts nothing) with its backlog full."""
    assert cli.proc is not None
    os.kill(cli.proc.pid, signal.SIGSTOP)
    held: list[socket.socket] = []
    try:
        wait_until(lambda: _all_threads_stopped(cli.proc.pid), message="SIGSTOP to take hold")
        held = _fill_backlog(cli.socket)
        yield
    finally:
        for conn in held:
            conn.close()
        os.kill(cli.proc.pid, signal.SIGCONT)


def test_full_backlog_gives_one_line_and_exit_2(cli):
    cli.start("svcmod:helper", "-w", "1")
    with _backlog_full(cli):
        result = cli.janus("status", "--socket", cli.socket,
                           env=dict(cli.env, JANUS_MP_STATUS_TIMEOUT="0.5"))
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"janus-mp: error: the supervisor on {cli.socket} did not accept "
                             "the connection within 0.5s (its connection backlog stayed full)\n")
    assert cli.service("helper")["ready"] == 1


def test_client_retries_while_the_backlog_is_full(cli, monkeypatch):
    from janus_mp.app import control

    cli.start("svcmod:helper", "-w", "1")
    retried = threading.Event()
    real_pause = control._retry_pause

    def pause(seconds: float) -> None:
        retried.set()
        real_pause(seconds)

    monkeypatch.setattr(control, "_retry_pause", pause)
    replies: list[object] = []
    with _backlog_full(cli):
        caller = threading.Thread(
            target=lambda: replies.append(control.call(cli.socket, "status", timeout=30)))
        caller.start()
        assert retried.wait(10), "the client never met a full backlog"
    caller.join(30)
    assert replies and replies[0]["services"][0]["name"] == "helper"  # type: ignore[index]


def test_sixty_concurrent_clients_get_a_reply_or_one_error(cli):
    """60 clients at once (threads: 60 CLI processes would mostly measure their imports): each
    gets the status or a JanusError, the CLI's one line; never a raw socket error."""
    from janus_mp.app import control
    from janus_mp.errors import JanusError

    cli.start("svcmod:helper", "-w", "1")
    go = threading.Barrier(60)
    outcomes: list[object] = []

    def ask() -> None:
        go.wait()
        try:
            outcomes.append(control.call(cli.socket, "status", timeout=30)["pid"])
        except JanusError as exc:
            outcomes.append(exc)
        except Exception as exc:
            outcomes.append(f"raw {type(exc).__name__}: {exc}")

    clients = [threading.Thread(target=ask) for _ in range(60)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(60)
    assert len(outcomes) == 60
    assert not [o for o in outcomes if isinstance(o, str)]
    assert outcomes.count(cli.proc.pid) == 60, [o for o in outcomes if o != cli.proc.pid]
