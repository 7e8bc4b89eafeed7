"""Client commands by name, as supervisorctl's: `signal SIG NAME`, `start`/`stop`/`restart` of a
group or `all`, and `restart --wait` returning once every worker was replaced and is ready."""

from __future__ import annotations

import textwrap

import pytest

from tests.integration.ops_cli import QuickCli, janus_here
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)

APP = '''
import os, signal

def catcher(ctx):
    def noted(signum, frame):
        with open(f"got-{signal.Signals(signum).name}-{os.getpid()}", "w"):
            pass
    signal.signal(signal.SIGUSR1, noted)
    signal.signal(signal.SIGHUP, noted)
    ctx.ready()
    ctx.shutdown.wait()

def idle(ctx):
    ctx.ready()
    ctx.shutdown.wait()
'''

CONFIG = '''
[supervisor]
shutdown_timeout = 2
kill_timeout = 1

[services.py]
target = "opsapp:catcher"
workers = 2

[services.prog]
command = ["sh", "-c", "trap 'touch prog-got-HUP-$$' HUP; while :; do sleep 0.1; done"]

[services.a]
target = "opsapp:idle"

[services.b]
target = "opsapp:idle"

[groups.pair]
members = ["a", "b"]
'''


@pytest.fixture
def cli(tmp_path):
    (tmp_path / "opsapp.py").write_text(textwrap.dedent(APP))
    (tmp_path / "janus.toml").write_text(CONFIG)
    c = QuickCli(tmp_path)
    c.start("-c", "janus.toml")
    wait_until(lambda: all(w["ready"] for name in ("py", "prog", "a", "b")
                           for w in c.service(name)["workers"]), timeout=30,
               message="every worker ready")
    yield c
    c.close()


def _ctl(cli: QuickCli, *args: str):
    return janus_here(*args, "--socket", cli.socket)


def _pids(cli: QuickCli, service: str) -> list[int]:
    return sorted(pid for w in cli.service(service)["workers"] for pid in w["pids"])


def test_signal_reaches_every_python_worker(cli):
    pids = _pids(cli, "py")
    result = _ctl(cli, "signal", "USR1", "py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"SIGUSR1 sent to 2 processes of py "
                                     f"({', '.join(map(str, pids))})")
    for pid in pids:
        wait_until(lambda pid=pid: (cli.tmp / f"got-SIGUSR1-{pid}").exists(), timeout=10)
    assert _pids(cli, "py") == pids  # handled, not killed


def test_signal_goes_to_a_commands_program_not_its_keeper(cli):
    worker = _pids(cli, "prog")[0]
    result = _ctl(cli, "signal", "hup", "prog")
    assert result.returncode == 0 and "SIGHUP sent to 1 process of prog" in result.stdout
    program = int(result.stdout.rsplit("(", 1)[1].rstrip(")\n"))
    assert program != worker
    wait_until(lambda: (cli.tmp / f"prog-got-HUP-{program}").exists(), timeout=10,
               message="the program's HUP trap")
    assert _pids(cli, "prog") == [worker]


def test_bad_signal_and_unknown_name_are_one_line(cli):
    bad = _ctl(cli, "signal", "NOPE", "py")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "unknown signal 'NOPE'" in bad.stderr
    unknown = _ctl(cli, "stop", "nosuch")
    assert unknown.returncode == 2
    assert "unknown service 'nosuch'" in unknown.stderr and "pair" in unknown.stderr


def test_stop_and_start_a_group_then_all(cli):
    assert _ctl(cli, "stop", "pair").stdout.strip() == "a, b stopping"
    wait_until(lambda: not _pids(cli, "a") and not _pids(cli, "b"), timeout=20,
               message="the group's services stopped")
    assert len(_pids(cli, "py")) == 2  # not in the group: still running
    assert _ctl(cli, "start", "pair").stdout.strip() == "a, b starting"
    wait_until(lambda: _pids(cli, "a") and _pids(cli, "b"), timeout=20)
    assert _ctl(cli, "stop", "all").stdout.strip() == "py, prog, a, b stopping"
    wait_until(lambda: not any(_pids(cli, s) for s in ("py", "prog", "a", "b")), timeout=20)


def test_restart_wait_returns_once_every_worker_is_new_and_ready(cli):
    before = _pids(cli, "py")
    result = _ctl(cli, "restart", "--wait", "py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["rolling restart of py started",
                                          "py: every worker replaced and ready"]
    after = cli.service("py")["workers"]  # no waiting: --wait already did
    assert all(w["ready"] and w["generation"] >= 2 for w in after), after
    assert not set(before) & {pid for w in after for pid in w["pids"]}


def test_restart_of_a_group(cli):
    a, b = _pids(cli, "a"), _pids(cli, "b")
    result = _ctl(cli, "restart", "--wait", "pair")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "rolling restart of a, b started"
    assert _pids(cli, "a") != a and _pids(cli, "b") != b


def test_autostart_false_waits_for_start(tmp_path):
    (tmp_path / "opsapp.py").write_text(textwrap.dedent(APP))
    (tmp_path / "lazy.toml").write_text(
        '[supervisor]\nshutdown_timeout = 2\nkill_timeout = 1\n'
        '[services.web]\ntarget = "opsapp:idle"\n'
        '[services.lazy]\ntarget = "opsapp:idle"\nworkers = 2\nautostart = false\n')
    cli = QuickCli(tmp_path)
    try:
        cli.start("-c", "lazy.toml")
        wait_until(lambda: _pids(cli, "web"), timeout=20, message="web started")
        lazy = next(s for s in janus_status(cli)["services"] if s["name"] == "lazy")
        assert (lazy["started"], lazy["phase"], lazy["workers"]) == (False, "terminated", [])
        shown = _ctl(cli, "status").stdout
        assert any(line.split()[:3] == ["lazy", "not", "started"] for line in shown.splitlines())
        wait_until(lambda: _ctl(cli, "status", "--check").returncode == 0, timeout=20,
                   message="ready without the lazy service")
        assert _ctl(cli, "status", "--check").stdout.strip() == "ready: 1 services, 1 workers"
        assert _ctl(cli, "start", "lazy").stdout.strip() == "lazy starting"
        wait_until(lambda: len(_pids(cli, "lazy")) == 2, timeout=20, message="lazy started")
        assert cli.service("lazy")["started"] is True
    finally:
        cli.close()


def janus_status(cli: QuickCli) -> dict:
    from janus_mp.app import control

    return control.call(cli.socket, "status", timeout=10)


def test_log_file_log_level_and_pid_file_from_the_config_file(tmp_path):
    (tmp_path / "opsapp.py").write_text(textwrap.dedent(APP))
    (tmp_path / "logs.toml").write_text(
        '[supervisor]\nshutdown_timeout = 2\nkill_timeout = 1\n'
        'log_file = "sup.log"\nlog_level = "warning"\npid_file = "sup.pid"\n'
        '[services.web]\ntarget = "opsapp:idle"\n')
    cli = QuickCli(tmp_path)
    try:
        cli.start("-c", "logs.toml")
        wait_until(lambda: (tmp_path / "sup.pid").exists(), timeout=20, message="the pid file")
        assert int((tmp_path / "sup.pid").read_text()) == cli.proc.pid
        wait_until(lambda: (tmp_path / "sup.log").exists(), timeout=20, message="the log file")
        cli.close()
        text = (tmp_path / "sup.log").read_text()  # it exists: the log went to the file
        assert " INFO " not in text and "supervisor started" not in text, text
        assert not (tmp_path / "sup.pid").exists()  # removed on exit
        cli.start("-c", "logs.toml", "--log-level", "info", "--log-file", "flag.log")
        wait_until(lambda: "supervisor started" in (tmp_path / "flag.log").read_text()
                   if (tmp_path / "flag.log").exists() else False, timeout=20,
                   message="the flags win over the file")
    finally:
        cli.close()


def test_logs_supervisor_shows_and_follows_the_supervisors_own_log(tmp_path):
    import subprocess
    import sys

    from tests.support import stop_process

    (tmp_path / "opsapp.py").write_text(textwrap.dedent(APP) + textwrap.dedent('''
        def chatty(ctx):
            print("hello-from-the-worker", flush=True)
            ctx.ready()
            ctx.shutdown.wait()
    '''))
    (tmp_path / "own.toml").write_text(
        f'[supervisor]\nshutdown_timeout = 2\nkill_timeout = 1\nlog_dir = "{tmp_path}/logs"\n'
        '[services.web]\ntarget = "opsapp:chatty"\n')
    cli = QuickCli(tmp_path)
    follower = None
    try:
        cli.start("-c", "own.toml")
        wait_until(lambda: "hello-from-the-worker" in "".join(
            _ctl(cli, "logs", "web").stdout), timeout=20, message="the worker's line")
        own = _ctl(cli, "logs", "--supervisor", "-n", "100").stdout
        assert "supervisor started" in own and "hello-from-the-worker" not in own, own
        with open(tmp_path / "follow.out", "w") as out:
            follower = subprocess.Popen(
                [sys.executable, "-m", "janus_mp", "logs", "--supervisor", "-f", "-n", "1",
                 "--socket", cli.socket], cwd=tmp_path, env=cli.env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        # the last line comes with the subscription: once it is printed, no line is missed
        wait_until(lambda: (tmp_path / "follow.out").read_text(), timeout=20,
                   message="the follower subscribed")
        assert "exited: stopped" not in (tmp_path / "follow.out").read_text()
        assert _ctl(cli, "stop", "web").returncode == 0
        wait_until(lambda: "exited: stopped" in (tmp_path / "follow.out").read_text(),
                   timeout=20, message="the stop's log line followed")
        both = _ctl(cli, "logs", "web", "--supervisor")
        assert both.returncode == 2 and "service or supervisor, not both" in both.stderr
    finally:
        if follower is not None:
            stop_process(follower)
        cli.close()

