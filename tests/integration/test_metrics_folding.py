"""Dead workers' metrics are folded into the archive a moment after their deaths, many at once:
a crash loop does not rewrite the archive once per death, and no count is lost or doubled."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import Counter

from janus_mp import BackoffConfig, JanusSupervisor, RestartPolicy, SpawnOptions, SupervisorConfig
from janus_mp.runtime.worker_plumbing import FOLD_DELAY
from tests.support import wait_until

RUNS = Counter("fold_test_runs", "Runs of a worker that dies right after counting itself")


def count_and_die(ctx: Any) -> None:
    RUNS.inc()
    os._exit(1)  # a real crash: nothing announced, nothing flushed but the mmap'ed count


@pytest.fixture
def supervisor() -> Iterator[JanusSupervisor]:
    sup = JanusSupervisor(SupervisorConfig(install_signal_handlers=False, shutdown_timeout=5))
    sup.spawn_service(count_and_die, SpawnOptions(
        name="crashy", workers=2, restart=RestartPolicy.ALWAYS,
        backoff=BackoffConfig(initial_delay=0.0, max_delay=0.0, max_retries=0)))
    thread = threading.Thread(target=sup.run_until_shutdown)
    thread.start()
    try:
        yield sup
    finally:
        sup.shutdown()
        thread.join(30)
        assert not thread.is_alive()


def test_a_crash_loop_is_folded_in_batches_and_every_count_survives(supervisor):
    store = wait_until(lambda: supervisor._observability.store, message="the metrics store")
    batches: list[list[int]] = []
    fold = store.processes_dead

    def recording(pids: list[int]) -> None:
        batches.append(list(pids))
        fold(pids)

    store.processes_dead = recording
    wait_until(lambda: sum(len(b) for b in batches) >= 60, timeout=60,
               message="60 dead workers folded")
    supervisor.stop_service("crashy")
    wait_until(lambda: supervisor.snapshot().services[0].service.phase.value == "terminated",
               timeout=30, message="crashy stopped")
    deaths = supervisor.metrics_snapshot().services["crashy"].terminated  # every start died
    # Every death is folded, each exactly once, at most FOLD_DELAY after it...
    wait_until(lambda: sum(len(b) for b in batches) == deaths, timeout=10 * FOLD_DELAY + 5,
               message=f"all {deaths} deaths folded")
    folded = [pid for batch in batches for pid in batch]
    assert len(folded) == len(set(folded)) == deaths
    # ...many at once: the archive was rewritten far fewer times than workers died.
    assert len(batches) * 3 <= deaths, [len(b) for b in batches]
    # Nothing lost, nothing counted twice: one count per worker that ever ran.
    total = next(s.value for family in store.collector().collect() for s in family.samples
                 if s.name == "fold_test_runs_total")
    assert total == deaths
