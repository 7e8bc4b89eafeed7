"""Every worker's output captured into its service's log file, rotated by size, shown and
followed by `janus-mp logs`; a flooding worker costs dropped lines, never supervision."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import psutil
import pytest

from janus_mp.app import control
from tests.integration.ops_cli import QuickCli, janus_here
from tests.support import tagged_pids, wait_until

pytestmark = pytest.mark.timeout(90)

APP = '''
import os, subprocess, sys

def talker(ctx):
    print("hello from print", ctx.index)
    sys.stderr.write("hello from stderr\\n")
    os.write(1, b"hello from fd 1\\n")
    subprocess.run(["sh", "-c", "echo hello from a child"])
    while not os.path.exists("go") and not ctx.shutdown.wait(0.01):
        pass
    i = 0
    while not ctx.shutdown.wait(0.002):
        print(f"n {i}")
        i += 1

def flood(ctx):
    line = b"z" * 99 + b"\\n"
    block = line * 640
    while not ctx.shutdown.is_cancelled():
        os.write(1, block)

def idle(ctx):
    ctx.shutdown.wait()
'''


@pytest.fixture
def cli(tmp_path):
    c = QuickCli(tmp_path)
    (tmp_path / "outapp.py").write_text(textwrap.dedent(APP))
    yield c
    c.close()



def _config(tmp_path: Path, body: str, **supervisor: object) -> str:
    table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in supervisor.items())
    path = tmp_path / "out.toml"
    path.write_text(f"[supervisor]\nshutdown_timeout = 2\nkill_timeout = 1\n{table}\n{body}")
    return str(path)


def _read(path: Path) -> str:
    """A rotating file's text, or "" while it is being renamed."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _numbers(lines: list[str]) -> list[int]:
    return [int(line.rsplit(" ", 1)[1]) for line in lines if " out| n " in line]


def test_print_stderr_fd_writes_and_children_land_rotated_in_the_service_log(cli, tmp_path):
    logs = tmp_path / "logs"
    cli.start("-c", _config(tmp_path, '[services.talk]\ntarget = "outapp:talker"\n',
                            log_dir=str(logs), log_max_bytes=4000, log_backups=2))
    # stdout and stderr are two pipes, read as each has data: their lines may land in either
    # order, so wait for all four.
    expected = ("talk[0] out| hello from print 0", "talk[0] err| hello from stderr",
                "talk[0] out| hello from fd 1", "talk[0] out| hello from a child")
    wait_until(lambda: all(text in _read(logs / "talk.log") for text in expected), timeout=20,
               message="every line of the talker in its log")
    (tmp_path / "go").touch()
    # more rotations: still two backups, none past the limit, and no line cut at a boundary
    wait_until(lambda: _numbers(_read(logs / "talk.log.2").splitlines())[:1] > [200],
               timeout=20)
    control.call(cli.socket, "stop", timeout=10, service="talk")  # the files hold still now
    wait_until(lambda: cli.service("talk")["phase"] == "terminated")
    assert sorted(p.name for p in logs.iterdir()) == ["talk.log", "talk.log.1", "talk.log.2"]
    older = "".join(_read(logs / name) for name in ("talk.log.2", "talk.log.1", "talk.log"))
    assert all(p.stat().st_size <= 4000 for p in logs.iterdir())
    numbers = _numbers(older.splitlines())
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert "hello from print" not in cli.log.read_text()  # in its file, not the main log

    recent = janus_here("logs", "talk", "-n", "3", "--socket", cli.socket)
    assert recent.returncode == 0, recent.stderr
    assert len(_numbers(recent.stdout.splitlines())) == 3

    # logrotate's way: move the file, SIGUSR1, and the next lines go to a new file
    (logs / "talk.log").rename(logs / "moved.log")
    os.kill(cli.proc.pid, signal.SIGUSR1)
    wait_until(lambda: "log files reopened" in cli.log.read_text())
    control.call(cli.socket, "start", timeout=10, service="talk")
    wait_until(lambda: "hello from a child" in _read(logs / "talk.log"), timeout=20)
    assert "hello from a child" not in (logs / "moved.log").read_text()


def test_logs_follow_goes_on_across_a_rotation(cli, tmp_path):
    logs = tmp_path / "logs"
    cli.start("-c", _config(tmp_path, '[services.talk]\ntarget = "outapp:talker"\n',
                            log_dir=str(logs), log_max_bytes=3000, log_backups=1))
    (tmp_path / "go").touch()
    follower = subprocess.Popen(
        [sys.executable, "-m", "janus_mp", "logs", "talk", "-f", "-n", "1", "--socket",
         cli.socket], cwd=tmp_path, env=cli.env, stdout=subprocess.PIPE, text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(follower.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        wait_until(lambda: _numbers(list(seen)), timeout=20)
        start = _numbers(list(seen))[0]
        # a rotation after the follower started: the backup begins past its first line...
        rotated = wait_until(lambda: (text := _read(logs / "talk.log.1")) and _numbers(
            text.splitlines())[:1] > [start] and text, timeout=20)
        rotated_last = _numbers(rotated.splitlines())[-1]
        # ...and the follower goes on into the new file, without a gap
        wait_until(lambda: _numbers(list(seen))[-1] > rotated_last + 5, timeout=20)
        numbers = _numbers(list(seen))
        assert numbers == list(range(start, start + len(numbers)))
    finally:
        follower.terminate()
        follower.wait(10)
        reader.join(10)
        follower.stdout.close()


def test_json_format_one_object_per_line(cli, tmp_path):
    logs = tmp_path / "logs"
    cli.start("--log-format", "json", "-c",
              _config(tmp_path, '[services.talk]\ntarget = "outapp:talker"\n',
                      log_dir=str(logs)))
    (tmp_path / "go").touch()
    wait_until(lambda: "hello from a child" in _read(logs / "talk.log"), timeout=20)
    records = [json.loads(line) for line in (logs / "talk.log").read_text().splitlines()]
    worker_pid = cli.service("talk")["workers"][0]["pids"][0]
    assert {"time", "service", "worker", "pid", "stream", "message"} <= set(records[0])
    assert {"service": "talk", "worker": 0, "pid": worker_pid, "stream": "err",
            "message": "hello from stderr"}.items() <= next(
        r for r in records if r["stream"] == "err").items()
    own = [json.loads(line) for line in cli.log.read_text().splitlines() if line.strip()]
    assert any(r["stream"] == "log" and "supervisor started" in r["message"] for r in own)


def test_a_flooding_worker_neither_stalls_a_restart_nor_grows_the_supervisor(cli, tmp_path):
    logs = tmp_path / "logs"
    cli.start("-c", _config(tmp_path, '[services.flood]\ntarget = "outapp:flood"\n'
                            '[services.other]\ntarget = "outapp:idle"\n',
                            log_dir=str(logs), log_max_bytes=1_000_000, log_backups=1))
    wait_until(lambda: (logs / "flood.log.1").exists(), timeout=20)
    supervisor = psutil.Process(cli.proc.pid)
    before = supervisor.memory_info().rss

    old = cli.service("other")["workers"][0]["pids"][0]
    control.call(cli.socket, "restart", timeout=10, service="other")
    wait_until(lambda: (s := cli.service("other"))["ready"] == 1
               and s["workers"][0]["pids"][0] != old, timeout=20)
    wait_until(lambda: "lines of output dropped" in _read(logs / "flood.log")
               + _read(logs / "flood.log.1"), timeout=20)
    # bounded: the pending budget (4 MiB) and a few buffers, whatever the flood
    assert supervisor.memory_info().rss < before + 32 * 1024 * 1024


def test_capture_without_log_dir_under_forkserver(cli, tmp_path):
    # the write ends travel pickled, as multiprocess connections (spawn takes the same path);
    # no log_dir: the lines go to the supervisor's own log
    cli.start("--start-method", "forkserver", "--log-format", "json",
              "-c", _config(tmp_path, '[services.talk]\ntarget = "outapp:talker"\n'))
    wait_until(lambda: "hello from a child" in cli.log.read_text(), timeout=20)
    records = [json.loads(line) for line in cli.log.read_text().splitlines()]
    pid = cli.service("talk")["workers"][0]["pids"][0]
    assert {"service": "talk", "worker": 0, "pid": pid, "stream": "out",
            "message": "hello from print 0"}.items() <= next(
        r for r in records if r["message"] == "hello from print 0").items()
    assert next(r for r in records if r["message"] == "hello from stderr")["stream"] == "err"
    # multiprocess's helpers (fork server, resource tracker) leave when the supervisor has
    # exited, a moment after it: wait for them, then the harness checks nothing is left
    control.call(cli.socket, "shutdown", timeout=10)
    assert cli.proc.wait(20) == 0
    wait_until(lambda: not tagged_pids(cli.tag), timeout=10, message="multiprocess helpers")


def test_separate_stderr_file_per_service(cli, tmp_path):
    """log_stderr = "separate": stderr in NAME.stderr.log beside NAME.log (supervisord's
    stderr_logfile); `logs` still shows both streams together."""
    logs = tmp_path / "logs"
    config = _config(tmp_path, '[services.talk]\ntarget = "outapp:talker"\n',
                     log_dir=str(logs), log_stderr="separate")
    cli.start("-c", config)
    wait_until(lambda: "hello from a child" in _read(logs / "talk.log")
               and "hello from stderr" in _read(logs / "talk.stderr.log"), timeout=20,
               message="both files written")
    out, err = _read(logs / "talk.log"), _read(logs / "talk.stderr.log")
    assert " err| " not in out and "hello from print 0" in out
    assert err.strip().endswith("talk[0] err| hello from stderr") and " out| " not in err
    shown = janus_here("logs", "talk", "-n", "20", "--socket", cli.socket).stdout
    assert "hello from stderr" in shown and "hello from print" in shown


def test_separate_stderr_needs_log_dir(cli, tmp_path):
    config = _config(tmp_path, '[services.talk]\ntarget = "outapp:idle"\n',
                     log_stderr="separate")
    done = cli.janus("check", config)
    assert done.returncode == 2
    assert done.stderr.strip() == ('janus-mp: error: supervisor.log_stderr: "separate" needs '
                                   'log_dir (files to separate)')
