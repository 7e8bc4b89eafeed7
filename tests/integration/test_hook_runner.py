"""Hook commands are bounded: in time (killed with their process group, then reaped) and in
number (extra ones dropped and counted); they never run in the caller's thread."""

from __future__ import annotations

import os
import sys

import pytest

from janus_mp import osproc
from janus_mp.core.hooks_config import HooksConfig
from janus_mp.core.notices import LifecycleNotice, NoticeKind
from janus_mp.private_fds import PrivateFds
from janus_mp.runtime.helper_children import HelperChildren
from janus_mp.runtime.hooks import HookRunner
from janus_mp.runtime.notice_hub import NoticeHub
from tests.support import wait_until

pytestmark = pytest.mark.timeout(30)

EXITED = LifecycleNotice(NoticeKind.EXITED, 1.0, service="a", slot=0, pid=123, exit_code=1,
                         reason="failed", reason_text="failed (exit code 1)")


def _runner(tmp_path, **hooks):
    hub = NoticeHub(lambda: 0.0)
    children = HelperChildren(PrivateFds())
    runner = HookRunner(HooksConfig(**hooks), hub, children)
    runner.start()
    return hub, children, runner


def _no_zombies() -> bool:
    return all(osproc.process_state(pid) != "Z" for pid in osproc.children_of(os.getpid()))


def test_a_hook_past_its_timeout_is_killed_with_its_group_and_reaped(tmp_path):
    started = tmp_path / "started"
    script = ("import os, subprocess, sys, time; "
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"open({str(started)!r}, 'w').write(str(child.pid)); time.sleep(60)")
    # 3 s: the hook (a Python start, then a fork) must have written its file before it is
    # killed, on a loaded machine too.
    hub, children, runner = _runner(tmp_path, on_exit=[sys.executable, "-c", script],
                                    timeout=3.0)
    try:
        hub.publish(EXITED)
        wait_until(lambda: started.exists() and started.read_text(), message="the hook")
        grandchild = int(started.read_text())
        wait_until(lambda: runner.timed_out == 1, message="the hook's timeout")
        assert runner.ran == 1 and children.pids() == set()
        wait_until(lambda: osproc.process_state(grandchild) in (None, "Z"),
                   message="the hook's own child killed with its group")
        assert _no_zombies()
    finally:
        runner.close()
        children.close()


def test_hooks_beyond_max_concurrent_are_dropped_and_counted(tmp_path):
    gate = tmp_path / "gate"
    script = ("import os, sys, time\n"
              f"while not os.path.exists({str(gate)!r}): time.sleep(0.01)\n")
    hub, children, runner = _runner(tmp_path, on_exit=[sys.executable, "-c", script],
                                    on_ready=["true"], max_concurrent=1, timeout=20)
    try:
        for _ in range(3):
            hub.publish(EXITED)
        hub.publish(LifecycleNotice(NoticeKind.SPAWNED, 2.0, service="a"))  # no hook for it
        wait_until(lambda: runner.dropped == 2, message="two dropped runs")
        gate.touch()
        wait_until(lambda: runner.ran == 1 and not children.pids(), message="the one run")
        assert runner.dropped == 2 and _no_zombies()
    finally:
        runner.close()
        children.close()


def test_hooks_for_the_last_notices_still_run_at_close(tmp_path):
    out = tmp_path / "out"
    hub, children, runner = _runner(tmp_path, on_exit=[
        sys.executable, "-c", f"import os; open({str(out)!r}, 'w').write(os.environ['JANUS_PID'])"])
    hub.publish(EXITED)
    hub.close()      # the supervisor stops right after its workers' exits
    runner.close()   # the dispatcher starts what was pending, then ends
    assert runner.wait_idle(20)
    children.close()
    assert out.read_text() == "123" and runner.ran == 1 and _no_zombies()
