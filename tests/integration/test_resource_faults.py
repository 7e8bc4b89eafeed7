"""Resource faults: fork failing, no thread able to start, a control socket out of file
descriptors — the supervisor logs, backs off and keeps supervising; nothing crashes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import SupervisorProcess
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)


def _pids_controller() -> Path | None:
    """A writable cgroup pids controller (v1 or v2), or None."""
    candidates = [Path("/sys/fs/cgroup/pids")]
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        try:
            if "pids" in (root / "cgroup.controllers").read_text().split():
                candidates.append(root)
        except OSError:
            pass
    for path in candidates:
        if (path / "cgroup.procs").exists() and os.access(path, os.W_OK):
            return path
    return None


@contextlib.contextmanager
def pids_limited(pid: int) -> Iterator[Path]:
    """Move ``pid`` into a fresh pids cgroup whose limit is what it uses now: its next fork
    fails with EAGAIN, as under RLIMIT_NPROC (which root ignores) or a container's pids.max."""
    controller = _pids_controller()
    if controller is None:
        pytest.skip("no writable cgroup pids controller here (needs root and cgroups)")
    group = controller / f"janus-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "pids.max").write_text("max")
        (group / "cgroup.procs").write_text(str(pid))
        (group / "pids.max").write_text((group / "pids.current").read_text().strip())
        yield group
    finally:
        with contextlib.suppress(OSError):
            (group / "pids.max").write_text("max")
        with contextlib.suppress(OSError):
            for task in (group / "cgroup.procs").read_text().split():
                (controller / "cgroup.procs").write_text(task)
        wait_until(lambda: _rmdir(group), timeout=5, message=f"removing {group}")


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def test_fork_failure_backs_off_logs_and_recovers(tmp_path):
    scenario = """
from janus_mp import *
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=2.0)

def crunch(ctx):
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(crunch, SpawnOptions(workers=2, restart="always", backoff=BackoffConfig(
        initial_delay=0.2, max_delay=0.4, max_retries=1000, window=600)))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.service("crunch")["ready"] == 2)
        victim = sup.service("crunch")["pids"][0]
        with pids_limited(sup.pid) as group:
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: sup.log_text().count("cannot start a worker") >= 3, timeout=20)
            first = sup.log_text().count("cannot start a worker")
            assert "Resource temporarily unavailable" in sup.log_text()
            # Backing off, not spinning: the supervisor answers, and attempts stay rare.
            snapshot = sup.service("crunch")
            assert snapshot["ready"] == 1 and sup.snapshot()["state"] == "running"
            wait_until(lambda: sup.log_text().count("cannot start a worker") >= first + 2,
                       timeout=10)
            failed_attempts = sup.log_text().count("cannot start a worker")
            (group / "pids.max").write_text("max")
            wait_until(lambda: sup.service("crunch")["ready"] == 2, timeout=20,
                       message="the pool to recover once forks succeed again")
        assert victim not in sup.service("crunch")["pids"]
        # Attempts were spaced by the backoff (>= 0.2 s): far fewer than a hot loop would make.
        assert failed_attempts < 60
        assert sup.metrics()["services"]["crunch"]["terminated_total"].get("killed", 0) == 1
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def test_control_socket_out_of_fds_refuses_then_recovers(tmp_path):
    """More control connections than the supervisor has descriptors: it serves a bounded number
    at once (the rest wait in the backlog), so it keeps the descriptors a respawn needs and
    keeps supervising, and the socket answers again once the flood is gone."""
    import resource

    control = tmp_path / "ctl.sock"
    scenario = f"""
import resource
from janus_mp import *
from janus_mp.app.control import ControlServer
from janus_mp.app.deploy import Deployment
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=2.0)
resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))

def crunch(ctx):
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(crunch, SpawnOptions(workers=2, backoff=BackoffConfig(initial_delay=0.05)))
    ControlServer({str(control)!r}, Deployment(sup, socket_path=None).handle,
                  sup.private_fds).start()
"""
    del resource
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.service("crunch")["ready"] == 2 and control.exists())
        assert _status(control) is not None
        hogs = []
        try:
            for _ in range(120):  # far past the supervisor's 96 descriptors
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    conn.connect(str(control))
                except OSError:
                    conn.close()
                    break
                hogs.append(conn)
            # Flooded: the supervisor still supervises (a killed worker is replaced)...
            victim = sup.service("crunch")["pids"][0]
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: sup.service("crunch")["ready"] == 2 and
                       victim not in sup.service("crunch")["pids"], timeout=20)
        finally:
            for conn in hogs:
                conn.close()
        # ...and the control socket answers again once they are closed.
        wait_until(lambda: _status(control) is not None, timeout=20)
        assert "Traceback" not in sup.log_text()
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def test_no_thread_to_start_refuses_then_recovers(tmp_path):
    """A pids limit reached (no thread can start): the control socket refuses that connection
    and lives on, /healthz keeps answering, and both serve normally once the limit is lifted."""
    control = tmp_path / "ctl.sock"
    scenario = f"""
from janus_mp import *
from janus_mp.app.control import ControlServer
from janus_mp.app.deploy import Deployment
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=2.0, metrics_port=0)

def crunch(ctx):
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(crunch, SpawnOptions(workers=1))
    ControlServer({str(control)!r}, Deployment(sup, socket_path=None).handle,
                  sup.private_fds).start()
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.service("crunch")["ready"] == 1 and control.exists())
        port = sup.request("port")
        with pids_limited(sup.pid) as group:
            # No /healthz or status request before this point: nothing has started the
            # threads that would serve them.
            assert _status(control, timeout=3) is None
            wait_until(lambda: "control socket refused a connection: can't start new thread"
                       in sup.log_text(), timeout=10)
            assert _healthz(port) == 200
            (group / "pids.max").write_text("max")
            wait_until(lambda: _status(control) is not None, timeout=20,
                       message="the control socket to answer again")
            wait_until(lambda: _healthz(port) == 200, timeout=20, message="/healthz")
        assert "Traceback" not in sup.log_text()
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def _healthz(port: int) -> int | None:
    """/healthz's status code, None if the endpoint does not answer within 3 s."""
    from tests.http_client import get

    try:
        return get(f"127.0.0.1:{port}", "/healthz", timeout=3)[0]
    except OSError:
        return None


def _status(path: Path, timeout: float = 5) -> dict | None:
    """One status request over the control socket; None if refused, closed or garbled."""
    import json

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(path))
            conn.sendall(b'{"command": "status"}\n')
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    return None
                data += chunk
        reply = json.loads(data)
        return reply if reply.get("ok") else None
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def full_filesystem(path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at ``path``, filled to the last block."""
    import subprocess

    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        with open(path / "filler", "wb", buffering=0) as filler, \
                contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 4096)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_metrics_directory_is_logged_and_supervision_continues(tmp_path):
    with full_filesystem(tmp_path / "metrics") as metrics:
        scenario = f"""
from prometheus_client import Counter
from janus_mp import *
from tests.scenario_lib import record
CONFIG = SupervisorConfig(shutdown_timeout=5.0, metrics_dir={str(metrics)!r}, metrics_port=0)
UNITS = Counter("units_total", "work done")

def crunch(ctx):
    while not ctx.shutdown.wait(0.02):
        UNITS.inc()
        record("counted", ctx.index, ctx.generation)

def build(sup):
    sup.spawn_service(crunch, SpawnOptions(workers=2))
"""
        with SupervisorProcess(tmp_path, scenario) as sup:
            wait_until(lambda: len(sup.events_list()) >= 10)
            assert {e[2] for e in sup.events_list()} == {"1"}  # no worker died: generation 1
            assert sup.log_text().count("own metrics stay in its memory") == 2
            assert "has 0 KiB free" in sup.log_text()
            from tests.http_client import get

            status, _, body = get(f"127.0.0.1:{sup.request('port')}", "/metrics")
            assert status == 200 and b'janus_supervisor_workers{phase="running"' in body
            sup.signal(signal.SIGTERM)
            assert sup.wait_exit() == 0
