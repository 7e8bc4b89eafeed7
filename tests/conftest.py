from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from janus_mp.osproc import children_of, process_state
from tests.support import kill_pids

# Reproducible: the same examples on every run and machine (derandomize), and no example
# database, so a failure found once is not replayed by later runs (results never depend on
# what ran before). Every @settings in the suite inherits these.
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow],
                          derandomize=True, database=None)
settings.load_profile("ci")


@pytest.fixture(autouse=True)
def no_leftover_children(request):
    """Fail a test that leaves a child of the test process running (and clean it up).

    Tests marked ``shares_supervisor`` run against a module-scoped supervisor whose workers
    come and go across tests; its fixture checks its own teardown instead.
    """
    if request.node.get_closest_marker("shares_supervisor"):
        yield
        return
    before = set(_children())
    yield
    helpers = _multiprocess_helpers()
    left = [pid for pid in _children()
            if pid not in before and pid not in helpers and _state(pid) not in (None, "Z")]
    for pid in _children():
        if _state(pid) == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
    if left:
        kill_pids(left)
        pytest.fail(f"test left child processes running: {left}")


def _multiprocess_helpers() -> set[int]:
    """multiprocess's resource tracker and fork server live for the whole session, by design."""
    from multiprocess import forkserver, resource_tracker

    pids = {getattr(resource_tracker._resource_tracker, "_pid", None),
            getattr(forkserver._forkserver, "_forkserver_pid", None)}
    return {p for p in pids if p}


def _children() -> list[int]:
    return children_of(os.getpid())


def _state(pid: int) -> str | None:
    return process_state(pid)
