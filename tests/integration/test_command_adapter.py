"""CommandAdapter: external programs as workers — exit codes, output, stop signal, process group."""

from __future__ import annotations

import signal
import sys

import pytest

from janus_mp import CommandAdapter, ServiceLoadError
from janus_mp.errors import ConfigError
from tests.harness import SupervisorProcess
from tests.support import alive, wait_until

pytestmark = pytest.mark.timeout(60)

HEADER = f"""
import sys
from janus_mp import *
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=2.0)
FAST = BackoffConfig(initial_delay=0.01, max_delay=0.05, max_retries=0)
PY = {sys.executable!r}
"""


def test_exit_codes_drive_restarts_and_output_is_logged_with_a_prefix(tmp_path):
    counter = tmp_path / "runs"
    scenario = HEADER + f"""
SCRIPT = '''
import os, sys
path = {str(counter)!r}
runs = int(open(path).read()) if os.path.exists(path) else 0
open(path, "w").write(str(runs + 1))
print("run", runs + 1, "of", os.environ["JANUS_SERVICE"], os.environ["JANUS_WORKER_INDEX"], flush=True)
print("complaint", runs + 1, file=sys.stderr, flush=True)
sys.exit([7, 7, 78][runs] if runs < 3 else 0)
'''
def build(sup):
    sup.spawn_service(CommandAdapter([PY, "-c", SCRIPT], name="job"),
                      SpawnOptions(backoff=FAST))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        assert sup.wait_exit() == 1  # its only service ended unrecoverably
        assert counter.read_text() == "3"  # 7 and 7 restarted; 78 is a no-restart code
        log = sup.log_text()
        assert log.count("exited: failed (exit code 7)") == 2
        assert "exited: unrecoverable: exit code 78 is a no-restart code" in log
        assert "job[0] out| run 1 of job 0" in log
        assert "job[0] err| complaint 3" in log


def test_a_program_killed_by_a_signal_is_restarted_as_killed(tmp_path):
    scenario = HEADER + """
def build(sup):
    sup.spawn_service(CommandAdapter("sleep 300", name="sleeper"), SpawnOptions(backoff=FAST))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        worker = wait_until(lambda: sup.service("sleeper")["workers"][0]["pids"])[0]
        program = wait_until(lambda: _children(worker))[0]
        import os
        os.kill(program, signal.SIGKILL)
        wait_until(lambda: sup.exits("sleeper"))
        assert sup.exits("sleeper")[0]["reason"] == "killed by signal 9 (SIGKILL)"
        assert sup.exits("sleeper")[0]["pid"] == worker
        wait_until(lambda: (w := sup.service("sleeper")["workers"][0])["generation"] == 2
                   and w["phase"] == "running")
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def test_stop_signal_reaches_the_program_and_grandchildren_die_with_it(tmp_path):
    pids = tmp_path / "pids"
    scenario = HEADER + f"""
SCRIPT = '''
import os, signal, subprocess, sys, time
child = subprocess.Popen(["sleep", "300"])
escapee = subprocess.Popen(["setsid", "sh", "-c", "sleep 301 & echo $!; wait"], stdout=subprocess.PIPE)
far = escapee.stdout.readline().decode().strip()
open({str(pids)!r}, "w").write(f"{{child.pid}} {{escapee.pid}} {{far}}")
def on_int(signum, frame):
    print("got SIGINT: draining", flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, on_int)
while True:
    time.sleep(1)
'''
def build(sup):
    sup.spawn_service(CommandAdapter([PY, "-c", SCRIPT], name="daemon", stop_signal="INT"),
                      SpawnOptions())
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 3)
        descendants = [int(p) for p in pids.read_text().split()]
        assert all(alive(p) for p in descendants)
        sup.request("stop", service="daemon")
        wait_until(lambda: sup.exits("daemon"))
        exit_ = sup.exits("daemon")[0]
        assert exit_["reason"] == "stopped"
        assert exit_["uptime_secs"] < 30
        assert "daemon[0] out| got SIGINT: draining" in sup.log_text()
        assert "sending SIGTERM" not in sup.log_text()  # the stop signal sufficed
        wait_until(lambda: not any(alive(p) for p in descendants), timeout=5)
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def test_grandchildren_die_when_the_program_exits_by_itself(tmp_path):
    pids = tmp_path / "pids"
    scenario = HEADER + f"""
def build(sup):
    sup.spawn_service(CommandAdapter(["sh", "-c", "setsid sleep 300 & echo $! >> {pids}; sleep 0.3; exit 5"],
                                     name="leaky"),
                      SpawnOptions(backoff=BackoffConfig(initial_delay=30, max_delay=30)))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        wait_until(lambda: sup.exits("leaky"))
        orphan = int(pids.read_text().split()[0])
        wait_until(lambda: not alive(orphan), timeout=5)
        assert sup.exits("leaky")[0]["exit_code"] == 5
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def test_bad_commands_are_refused_in_one_line(tmp_path):
    with pytest.raises(ServiceLoadError, match="command 'no-such-program-xyz': not found"):
        CommandAdapter("no-such-program-xyz --flag")
    with pytest.raises(ConfigError, match="stop_signal: unknown signal 'SIGNOPE'"):
        CommandAdapter("sleep 1", stop_signal="SIGNOPE")
    with pytest.raises(ConfigError, match="cwd: .* is not a directory"):
        CommandAdapter("sleep 1", cwd=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="command: must name a program"):
        CommandAdapter("")
    assert CommandAdapter("sleep 1").name == "sleep"


def _children(pid: int) -> list[int]:
    from janus_mp.osproc import children_of

    return children_of(pid)


def test_a_watchdog_is_refused_for_programs_that_cannot_heartbeat():
    from janus_mp import JanusSupervisor, ModuleAdapter, SpawnOptions

    sup = JanusSupervisor()
    for service in (CommandAdapter("sleep 1"), ModuleAdapter(lambda: None, name="m")):
        with pytest.raises(ConfigError, match="watchdog_timeout: .* cannot call "
                                              r"ctx.heartbeat\(\)"):
            sup.spawn_service(service, SpawnOptions(watchdog_timeout=5))
    assert sup.service_names == []
