"""cgroup v2 limits (memory_max, cpu_max, pids_max) with real processes: enforced and reported
where this machine delegates the controllers to the supervisor's cgroup, refused in one line
where it does not (the test then says which of the two it could check, and why)."""

from __future__ import annotations

import pytest

from janus_mp.runtime.cgroups import CgroupError, ServiceCgroups, own_cgroup
from tests.harness import SupervisorProcess
from tests.integration.test_cli import Cli
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)


def cgroup_refusal(wanted: set[str]) -> str | None:
    """Why a supervisor started from this test could not apply limits, or None."""
    try:
        return ServiceCgroups(own_cgroup()).refusal(wanted)
    except CgroupError as exc:
        return str(exc)


CONFIG = """
[services.capped]
target = "svcmod:helper"
memory_max = "64MiB"
pids_max = 32
"""


def test_limits_this_machine_cannot_apply_refuse_the_start_in_one_line(tmp_path):
    reason = cgroup_refusal({"memory", "pids"})
    if reason is None:
        pytest.skip("this machine can apply cgroup limits: the refusal is not reachable here")
    cli = Cli(tmp_path)
    try:
        (tmp_path / "janus.toml").write_text(CONFIG)
        result = cli.janus("run", "-c", "janus.toml", "--metrics-bind", "off",
                           "--socket", cli.socket)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith("janus-mp: error: service 'capped': cgroup ")
        assert reason.split(";")[0] in lines[0]  # the same reason, naming the cgroup
    finally:
        cli.close()  # and nothing was left running


def test_a_worker_past_memory_max_is_oom_killed_and_reported_so(tmp_path):
    reason = cgroup_refusal({"memory"})
    if reason is not None:
        pytest.skip(f"cgroup v2 limits cannot be applied on this machine: {reason}")
    scenario = """
from janus_mp import *
from tests.scenario_lib import started
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=2.0)

def hog(ctx):
    started(ctx)
    blocks = []
    while True:
        blocks.append(bytearray(8 * 2**20))  # touched: resident

def build(sup):
    sup.spawn_service(hog, SpawnOptions(memory_max="48MiB", backoff=BackoffConfig(
        initial_delay=1.0, max_delay=1.0, max_retries=0)))
"""
    with SupervisorProcess(tmp_path, scenario) as sup:
        exit_ = wait_until(lambda: next(iter(sup.exits("hog")), None), timeout=30,
                           message="the hog's first exit")
        assert exit_["reason"].startswith("killed by the kernel's OOM killer")
        assert exit_["exit_code"] == -9
        terminated = sup.metrics()["services"]["hog"]["terminated_total"]
        assert terminated.get("oom_killed", 0) >= 1
