"""Each pool library behind one small interface, with its own facility for each scenario.

    submit(fn, *args) -> Future   one task; a concurrent.futures.Future for every library
                                  (multiprocess's AsyncResult is bridged by its callbacks)
    map(fn, items, chunksize)     the library's own map, all results as a list
    call(fn, x)                   one task, waited for: the round trip

Runs inside a scenario process (pool_run.py), never in the harness: a library that hangs
takes only that process with it. Every library runs at its defaults (start method included)
except for what a scenario asks for, and only through the facility that library has:

    scenario   janus-mp                   pebble              loky                  others
    kill9      retries=0 (1: the /retry   –                   –                     –
               row, which uses map)
    hang       task_timeout=T             submit(fn, T, …)    –                     –
    poison     retries=5,                 –                   –                     –
               max_worker_deaths=3
    memory     max_memory=L               –                   LOKY_MAX_MEMORY_       –
                                                              LEAK_SIZE=L (growth)

"–": the library has no such facility; the caller's timed wait is then all there is, and a
task it gives up on is reported hung.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: key → (label, the import that says it is installed)
LIBRARIES: dict[str, tuple[str, str]] = {
    "janus-mp": ("janus-mp TaskPool", "from janus_mp import TaskPool"),
    "janus-mp/retry": ("janus-mp TaskPool, retries=1", "from janus_mp import TaskPool"),
    "ppe": ("concurrent.futures ProcessPoolExecutor", "import concurrent.futures.process"),
    "multiprocess": ("multiprocess.Pool", "import multiprocess.pool"),
    "loky": ("loky ProcessPoolExecutor", "import loky"),
    "pebble": ("pebble ProcessPool", "import pebble"),
}
ANCHORS = ("ppe", "multiprocess", "loky", "pebble")


@dataclass(frozen=True)
class Facility:
    """What a scenario asks of a pool: only the library's own facilities honour it."""

    task_timeout: float | None = None  # hang: T
    retries: int = 0  # kill9 (retry row) and poison
    max_worker_deaths: int | None = None  # poison
    max_memory_mib: int | None = None  # memory


def facility_text(key: str, scenario: str, f: Facility) -> str:
    """How ``key`` was set up for ``scenario``: the table's facility column."""
    if key.startswith("janus-mp"):
        parts = []
        if f.task_timeout is not None:
            parts.append(f"task_timeout={f.task_timeout:g}")
        if f.retries:
            parts.append(f"retries={f.retries}")
        if f.max_worker_deaths is not None:
            parts.append(f"max_worker_deaths={f.max_worker_deaths}")
        if f.max_memory_mib is not None:
            parts.append(f'max_memory="{f.max_memory_mib}MiB"')
        text = ", ".join(parts) or "defaults (retries=0)"
        return text + (" — map()" if key == "janus-mp/retry" else "")
    if key == "pebble" and scenario == "hang":
        return f"submit(fn, timeout={f.task_timeout:g})"
    if key == "loky" and scenario == "memory":
        return f"LOKY_MAX_MEMORY_LEAK_SIZE={f.max_memory_mib}MiB"
    if scenario == "hang":
        return "none: caller's timed wait only"
    return "none"


def version(key: str) -> str:
    """Run inside a scenario process (it has the PYTHONPATH the pools run with)."""
    import importlib.metadata
    import platform

    if key.startswith("janus-mp"):
        import janus_mp

        where = os.path.dirname(os.path.dirname(os.path.abspath(janus_mp.__file__)))
        return f"janus-mp {janus_mp.__version__} ({where})"
    if key == "ppe":
        return f"Python {platform.python_version()} stdlib"
    return f"{key} {importlib.metadata.version(key)}"


class Pool:
    """The interface; one subclass per library family."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        raise NotImplementedError

    def map(self, fn: Callable[..., Any], items: Sequence[Any], chunksize: int) -> list[Any]:
        raise NotImplementedError

    def call(self, fn: Callable[..., Any], x: Any) -> Any:
        return self.submit(fn, x).result()

    def submit_untimed(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        """A task exempt from the scenario's task timeout (the capacity probe's)."""
        return self.submit(fn, *args)


class ExecutorPool(Pool):
    """ProcessPoolExecutor, loky and janus-mp: concurrent.futures Executors already."""

    def __init__(self, executor: Any) -> None:
        self.executor = executor

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        return self.executor.submit(fn, *args)  # type: ignore[no-any-return]

    def map(self, fn: Callable[..., Any], items: Sequence[Any], chunksize: int) -> list[Any]:
        return list(self.executor.map(fn, items, chunksize=chunksize))

    def map_many(self, fn: Callable[..., Any], *iterables: Sequence[Any], chunksize: int,
                 timeout: float) -> Any:
        """The map() iterator itself (janus-mp's retry row counts what it yields)."""
        return self.executor.map(fn, *iterables, chunksize=chunksize, timeout=timeout)


class JanusPool(ExecutorPool):
    def submit_untimed(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        return self.executor.options(timeout=3600).submit(fn, *args)  # type: ignore[no-any-return]


class PebblePool(Pool):
    def __init__(self, pool: Any, task_timeout: float | None) -> None:
        self.pool = pool
        self.task_timeout = task_timeout

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        return self.pool.submit(fn, self.task_timeout, *args)  # type: ignore[no-any-return]

    def submit_untimed(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        return self.pool.submit(fn, None, *args)  # type: ignore[no-any-return]

    def map(self, fn: Callable[..., Any], items: Sequence[Any], chunksize: int) -> list[Any]:
        return list(self.pool.map(fn, items, chunksize=chunksize).result())


class MultiprocessPool(Pool):
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        future.set_running_or_notify_cancel()
        self.pool.apply_async(fn, args, callback=future.set_result,
                              error_callback=future.set_exception)
        return future

    def map(self, fn: Callable[..., Any], items: Sequence[Any], chunksize: int) -> list[Any]:
        return list(self.pool.map(fn, items, chunksize=chunksize))

    def call(self, fn: Callable[..., Any], x: Any) -> Any:
        return self.pool.apply(fn, (x,))


def open_pool(key: str, workers: int, f: Facility) -> Pool:
    """A started pool of ``workers`` processes. Never shut down: the scenario process exits
    with os._exit and the harness kills whatever is left (a shutdown can hang on a stuck
    worker, which is one of the things measured)."""
    if key.startswith("janus-mp"):
        from janus_mp import TaskPool

        options: dict[str, Any] = {"workers": workers, "retries": f.retries}
        if f.task_timeout is not None:
            options["task_timeout"] = f.task_timeout
        if f.max_worker_deaths is not None:
            options["max_worker_deaths"] = f.max_worker_deaths
        if f.max_memory_mib is not None:
            options["max_memory"] = f"{f.max_memory_mib}MiB"
        return JanusPool(TaskPool(**options))
    if key == "ppe":
        return ExecutorPool(cf.ProcessPoolExecutor(max_workers=workers))
    if key == "loky":
        if f.max_memory_mib is not None:
            # Read by loky's workers from the environment they inherit, at their import.
            os.environ["LOKY_MAX_MEMORY_LEAK_SIZE"] = str(f.max_memory_mib << 20)
        import loky

        return ExecutorPool(loky.ProcessPoolExecutor(max_workers=workers))
    if key == "pebble":
        import pebble

        return PebblePool(pebble.ProcessPool(max_workers=workers), f.task_timeout)
    if key == "multiprocess":
        import multiprocess

        return MultiprocessPool(multiprocess.Pool(processes=workers))
    raise ValueError(f"unknown pool library {key!r}")
