"""A stalled reader of the supervisor's stderr must not stall the supervisor (issue 12.4).

``janus-mp run`` with stderr a pipe the test never reads, filled to the brim by a noisy worker:
the supervisor's own log lines (one per crash of another service) then cannot be written, yet
/healthz answers 200 and the crashing service keeps being restarted.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import termios
import textwrap
import uuid
from pathlib import Path

import pytest

from janus_mp.app import control
from tests.http_client import get
from tests.support import TAG_VAR, kill_pids, tagged_pids, wait_until

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]

SERVICES = '''
import os, sys

def noisy(ctx):
    flag = os.environ["NOISY_FLAG"]
    while not os.path.exists(flag) and not ctx.shutdown.wait(0.01):
        pass
    chunk = "n" * 65535 + "\\n"
    while os.path.exists(flag) and not ctx.shutdown.is_cancelled():
        sys.stderr.write(chunk)               # blocks this worker once the pipe is full
        sys.stderr.flush()
    ctx.shutdown.wait()

def crashy(ctx):
    with open(os.environ["CRASHES"], "a") as f:
        f.write(f"{ctx.generation}\\n")
    sys.exit(1)                               # each crash: a supervisor log line
'''

CONFIG = '''
[supervisor]
shutdown_timeout = 2
kill_timeout = 1

[services.noisy]
target = "stallmod:noisy"

[services.crashy]
target = "stallmod:crashy"
[services.crashy.backoff]
initial_delay = 0.01
max_delay = 0.05
max_retries = 0
'''


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _unread_bytes(fd: int) -> int:
    buffered = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buffered)
    return int.from_bytes(buffered, sys.byteorder)


def _healthz(port: int) -> int | None:
    try:
        return get(f"127.0.0.1:{port}", "/healthz", timeout=5)[0]
    except OSError:
        return None


def test_full_stderr_pipe_does_not_stall_the_supervisor(tmp_path):
    (tmp_path / "stallmod.py").write_text(textwrap.dedent(SERVICES))
    (tmp_path / "janus.toml").write_text(CONFIG)
    crashes, flag, sock = tmp_path / "crashes", tmp_path / "noisy.flag", str(tmp_path / "c.sock")
    port = _free_port()
    tag = uuid.uuid4().hex
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}:{ROOT}", SPT_NOENV="1", NOISY_FLAG=str(flag),
               CRASHES=str(crashes), **{TAG_VAR: tag})
    proc = subprocess.Popen(
        [sys.executable, "-m", "janus_mp", "run", "-c", "janus.toml", "--socket", sock,
         "--metrics-bind", f"127.0.0.1:{port}"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stderr is not None
    try:
        wait_until(lambda: _healthz(port) == 200 and crashes.exists(), timeout=20,
                   message="the supervisor to serve /healthz and crashy to run")
        # Full: every page of the pipe in use. The noisy worker's output is captured and
        # written by the supervisor's log writer as records of ~16 KiB, whose writes leave
        # partly used pages: a full pipe holds less than its size (58,024 of 65,536 bytes
        # seen), hence the margin; the worker itself writes on, into the capture.
        full = fcntl.fcntl(proc.stderr.fileno(), fcntl.F_GETPIPE_SZ) * 3 // 4
        flag.touch()
        wait_until(lambda: _unread_bytes(proc.stderr.fileno()) >= full, timeout=10,
                   message="the noisy worker to fill the stderr pipe")
        # Nobody reads the pipe from here on. Every crash logs a line (~100 bytes).
        before = len(crashes.read_text().split())
        for _ in range(10):
            assert _healthz(port) == 200
        wait_until(lambda: len(crashes.read_text().split()) >= before + 100, timeout=30,
                   message="100 more restarts of crashy while stderr is full")
        assert _healthz(port) == 200
        assert control.call(sock, "status", timeout=5)["state"] == "running"
        status, _, page = get(f"127.0.0.1:{port}", "/metrics", timeout=5)
        assert status == 200 and b"janus_supervisor_log_records_dropped_total " in page
        assert _unread_bytes(proc.stderr.fileno()) >= full  # still full: nothing read
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its writer may be stuck on the full pipe
        except ProcessLookupError:
            pass
        proc.wait(10)
        proc.stderr.close()
        wait_until(lambda: not tagged_pids(tag), timeout=5, message="the workers to go")
        kill_pids(tagged_pids(tag))

