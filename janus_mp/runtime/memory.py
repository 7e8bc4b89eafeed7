"""How much memory a worker uses, for ``max_memory`` recycling, and keeping its inherited
pages shared.

A worker's size is its whole process tree's (a command service's program is a child of the
worker: measuring the worker alone sees only the small Python wrapper), measured as:

- ``uss``: pages only that process has — what recycling it would give back. Pages it shares
  with the supervisor (a preloaded app, copy-on-write after fork) do not count, so a big
  preloaded app does not make every worker look too big. Summed over a tree, a page shared
  between two of its processes counts in neither: the measure errs low, never high.
- ``pss``: each page divided among the processes sharing it.
- ``rss``: every resident page in full, shared ones included (the old ``max_rss``).

uss and pss read /proc/PID/smaps_rollup (psutil), a few hundred microseconds a process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from janus_mp import osproc


def tree_memory(pid: int, measure: str) -> int | None:
    """Bytes of ``measure`` over ``pid`` and its descendants; None when ``pid`` is gone."""
    import psutil  # here: only supervisors with max_memory pay for it (and not their workers)

    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return None
    processes = [root]
    # Most workers start nothing: skip the whole-/proc scan that finding descendants costs.
    if osproc.children_of(pid):
        for child in osproc.descendants(pid):
            with contextlib.suppress(psutil.Error):
                processes.append(psutil.Process(child))
    total = 0
    for process in processes:
        try:
            if measure == "rss":
                total += int(process.memory_info().rss)
            else:
                total += int(getattr(process.memory_full_info(), measure))
        except psutil.NoSuchProcess:
            if process is root:
                return None
            continue  # a descendant that just exited uses nothing
        except psutil.AccessDenied:
            total += int(process.memory_info().rss) if process is not root else 0
    return total


def measure_workers(workers: Mapping[int, Any], ids: tuple[int, ...],
                    measure: str) -> tuple[tuple[int, int], ...]:
    """(worker id, bytes) of these workers (those still here) by their process trees."""
    samples = []
    for worker_id in ids:
        worker = workers.get(worker_id)
        if worker is None:
            continue
        used = tree_memory(worker.pid, measure)
        if used is not None:
            samples.append((worker_id, used))
    return tuple(samples)


