"""``janus_mp.TaskPool``: a ``concurrent.futures.Executor`` whose workers janus-mp supervises.

    caller threads                         supervisor loop thread (background)      workers
    ──────────────                         ───────────────────────────────────      ───────
    submit/map ─► pickle the call ─► inbox ─► Dispatcher.submit ─► core.tasks ─► TASK ─► run
    Future ◄─── set_result / set_exception ◄─ deliver (unpickle) ◄─ RESULT/RAISED ◄──────┘
    future.cancel() ─► done callback ─────► Dispatcher.cancel ─► SIGINT, then SIGKILL

The pool's supervisor is a :class:`JanusSupervisor` running in a background thread of the
calling program; it installs no signal handlers, freezes nothing of the caller's heap and makes
no subreaper of it. Workers are forked by the ``forkserver`` start method by default: forking
the caller itself, which may have threads holding locks, is unsafe, and the fork server is a
single-threaded process started once. Submissions go to the loop through one inbox and one
wake-up per batch (a ``map`` hands over all its chunks at once).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import itertools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from janus_mp.core.backoff import BackoffConfig
from janus_mp.core.config import SupervisorConfig
from janus_mp.core.pool_config import POOL_BACKOFF, PoolConfig
from janus_mp.core.process_settings import ProcessSettings
from janus_mp.core.task_messages import Outcome, Resolve
from janus_mp.errors import ConfigError, JanusError, QueueFull
from janus_mp.osproc import usable_cpus
from janus_mp.pools import outcomes, payloads
from janus_mp.pools.dispatcher import Dispatcher, Item
from janus_mp.pools.frames import Kind
from janus_mp.pools.task_loop import TaskLoop
from janus_mp.runtime.supervisor import JanusSupervisor


class TaskFuture(concurrent.futures.Future[Any]):
    """A pool task's future. It stays pending until the task ends, so ``cancel()`` works on a
    running task too: the pool stops it cooperatively (SIGINT in the worker), then kills."""

    task: int = -1


class TaskPool(concurrent.futures.Executor):
    """Run functions in supervised worker processes; see README "Task pools"."""

    def __init__(self, workers: int | None = None, *, standby: int = 0,
                 task_timeout: float | None = None, retries: int = 0,
                 max_worker_deaths: int = 3, max_tasks_per_worker: int | None = None,
                 max_memory: int | str | None = None, memory_measure: str = "uss",
                 max_queued: int | None = None,
                 initializer: Callable[..., Any] | None = None, initargs: tuple[Any, ...] = (),
                 process: ProcessSettings | None = None, start_method: str = "forkserver",
                 cancel_grace: float = 1.0, prefetch: int = 1,
                 backoff: BackoffConfig | None = None,
                 name: str = "pool", start_timeout: float = 60.0) -> None:
        config = PoolConfig(
            workers=usable_cpus() if workers is None else workers, standby=standby,
            task_timeout=task_timeout, retries=retries, max_worker_deaths=max_worker_deaths,
            max_tasks_per_worker=max_tasks_per_worker, max_memory=max_memory,
            memory_measure=memory_measure, max_queued=max_queued, cancel_grace=cancel_grace,
            prefetch=prefetch,
            initializer=initializer, initargs=initargs, backoff=backoff or POOL_BACKOFF,
            process=process or ProcessSettings())
        options = config.spawn_options(name)
        rules = config.rules()
        self.name = name
        self.config = config
        self._timeout = config.task_timeout
        self._retries = config.retries
        self._places = None if max_queued is None else threading.Semaphore(max_queued)
        self._ids = itertools.count(1)
        self._futures: dict[int, TaskFuture] = {}
        self._outcomes: list[tuple[TaskFuture, Resolve, Kind | None, bytes]] = []
        self._inbox: list[Item] = []
        self._inbox_lock = threading.Lock()
        self._wake_pending = False
        self._closed = False
        self._started = threading.Event()
        #: One byte here wakes the loop to take the inbox (caller threads write, once a batch).
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._opened = False
        self._loop_thread = -1
        self.supervisor = JanusSupervisor(SupervisorConfig(
            install_signal_handlers=False, start_method=start_method, reap_orphans=False,
            gc_freeze=False, name=f"janus-mp pool {name}"))
        for fd in (self._wake_r, self._wake_w):
            self.supervisor.private_fds.add(fd)
        self._directory = tempfile.mkdtemp(prefix="janus-mp-pool-")  # 0700
        self._dispatcher = Dispatcher(self.supervisor, name, rules, self._directory,
                                      self._deliver, self._release, self.supervisor.shutdown)
        try:
            self._dispatcher.bind()
            self.supervisor.spawn_service(
                TaskLoop(name, self._dispatcher.address, config.initializer, config.initargs),
                options)
        except BaseException:
            self._dispatcher.close()
            for fd in (self._wake_r, self._wake_w):
                self.supervisor.private_fds.close(fd)
            shutil.rmtree(self._directory, ignore_errors=True)
            raise
        self.supervisor.on_turn.append(self._on_turn)
        self._thread = threading.Thread(target=self._serve, name=f"janus-mp pool {name}",
                                        daemon=True)
        self._thread.start()
        if not self._started.wait(start_timeout) or not self._opened:
            self.supervisor.shutdown(fast=True)
            self._thread.join(start_timeout)
            raise JanusError(f"task pool {name!r}: its supervisor did not start (see the "
                             f"log) within {start_timeout:g} s")
        atexit.register(self.shutdown)

    # -- concurrent.futures.Executor ---------------------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, block: bool = True,  # type: ignore[override]
               **kwargs: Any) -> TaskFuture:
        """Run ``fn(*args, **kwargs)`` in a worker. With ``max_queued`` set and the queue full,
        wait for room (``block=False``: raise QueueFull)."""
        return self._submit(fn, args, kwargs, self._timeout, self._retries, block)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: float | None = None, chunksize: int = 1) -> Iterator[Any]:
        return self._map(fn, iterables, timeout, chunksize, self._timeout, self._retries)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submissions; the tasks submitted run to their outcome (with
        ``cancel_futures``, those still queued are cancelled), then the workers stop."""
        with self._inbox_lock:
            first = not self._closed
            self._closed = True
        if first:
            atexit.unregister(self.shutdown)
            self._wake()
            self.supervisor.call_soon(lambda: self._dispatcher.closing(cancel_futures))
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    # -- beyond the Executor ------------------------------------------------------------------
    def options(self, *, timeout: float | None = None, retries: int | None = None) -> _Options:
        """Per-task overrides: ``pool.options(timeout=5, retries=1).submit(fn, x)``."""
        _check_options(timeout, 0 if retries is None else retries)
        return _Options(self, self._timeout if timeout is None else timeout,
                        self._retries if retries is None else retries)

    async def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``await pool.run(fn, *args)``: the result, without blocking the event loop."""
        import asyncio  # here: asyncio is ~6 MB that every worker would map

        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def cancel(self, future: concurrent.futures.Future[Any]) -> bool:
        """Cancel a task: a queued one is removed, a running one is stopped (SIGINT in its
        worker: ``TaskInterrupted`` in the task) and killed after ``cancel_grace``."""
        return future.cancel()

    def stats(self) -> dict[str, Any]:
        """Queued and running tasks, busy workers, outcomes so far (counts)."""
        def read() -> dict[str, Any]:
            with self._dispatcher.lock:
                return counts(self._dispatcher.book)

        def counts(book: Any) -> dict[str, Any]:
            return {"queued": book.queued, "busy": book.busy, "workers": len(book.workers),
                    "outcomes": {str(k): v for k, v in book.outcomes.items()}}
        return self.supervisor.call_in_loop(read)

    # -- submitting ---------------------------------------------------------------------------
    def _submit(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                timeout: float | None, retries: int, block: bool) -> TaskFuture:
        return self._enqueue(lambda: payloads.call(fn, args, kwargs), timeout, retries, block,
                             direct=True)

    def _map(self, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...],
             timeout: float | None, chunksize: int, task_timeout: float | None,
             retries: int) -> Iterator[Any]:
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise ConfigError("chunksize", "must be an integer >= 1")
        end = None if timeout is None else time.monotonic() + timeout
        calls = zip(*iterables, strict=False)  # as Executor.map: the shortest ends it
        futures: list[TaskFuture] = []
        if chunksize == 1:
            for args in calls:
                futures.append(self._enqueue(lambda a=args: payloads.call(fn, a, {}),  # type: ignore[misc]
                                             task_timeout, retries, True, direct=False))
        else:
            while chunk := list(itertools.islice(calls, chunksize)):
                futures.append(self._enqueue(lambda c=chunk: payloads.chunk_call(fn, c),  # type: ignore[misc]
                                             task_timeout, retries, True, direct=False))
        self._wake()
        return results_in_order(futures, end, chunksize > 1)

    def _enqueue(self, body: Callable[[], bytes], timeout: float | None, retries: int,
                 block: bool, *, direct: bool) -> TaskFuture:
        """Pickle the call, take a queue place, register the future; then hand the task to the
        dispatcher from this thread (``direct``: one submission, no loop wake-up on its way)
        or leave it in the inbox for the loop (a ``map`` wakes it once for all)."""
        future = TaskFuture()
        future.task = task = next(self._ids)
        try:
            data = body()
        except Exception as exc:  # an unpicklable argument fails this future only
            future.set_exception(exc)
            return future
        if self._places is not None and not self._places.acquire(blocking=False):
            if not block:
                raise QueueFull(f"task pool {self.name!r}: the queue is full (max_queued)")
            self._wake()  # hand over what waits here, then wait for room
            self._places.acquire()
        future.add_done_callback(self._future_done)
        item = Item(task, data, timeout, retries)
        with self._inbox_lock:
            if self._closed:
                if self._places is not None:
                    self._places.release()
                raise RuntimeError("cannot submit to a task pool after shutdown")
            self._futures[task] = future
            if not direct:
                self._inbox.append(item)
                return future
        self._dispatcher.submit([item])
        return future

    def _wake(self) -> None:
        with self._inbox_lock:
            if self._wake_pending or not self._inbox:
                return
            self._wake_pending = True
            os.write(self._wake_w, b"!")

    # -- in the loop thread -------------------------------------------------------------------
    def _drain(self) -> None:
        try:
            os.read(self._wake_r, 64)
        except BlockingIOError:
            pass
        with self._inbox_lock:
            items, self._inbox = self._inbox, []
            self._wake_pending = False
        self._dispatcher.submit(items)

    def _future_done(self, future: concurrent.futures.Future[Any]) -> None:
        task = getattr(future, "task", -1)
        if future.cancelled() and task in self._futures:  # the caller cancelled it
            self.supervisor.call_soon(lambda: self._dispatcher.cancel(task))

    def _deliver(self, resolve: Resolve, kind: Kind | None, body: bytes) -> None:
        future = self._futures.pop(resolve.task, None)
        if future is None:
            return
        if threading.get_ident() != self._loop_thread:  # a submission ended at once
            self._outcomes_now([(future, resolve, kind, body)])
        else:
            self._outcomes.append((future, resolve, kind, body))

    def _settle_outcomes(self) -> None:
        """Settle the turn's futures last thing in the turn: a caller woken by one gets the
        GIL as soon as the loop goes back to waiting, not after the turn's bookkeeping."""
        outcomes, self._outcomes = self._outcomes, []
        self._outcomes_now(outcomes)

    @staticmethod
    def _outcomes_now(outcomes: list[tuple[TaskFuture, Resolve, Kind | None, bytes]]) -> None:
        for future, resolve, kind, body in outcomes:
            if not future.done():
                try:
                    _settle(future, resolve, kind, body)
                except concurrent.futures.InvalidStateError:
                    pass  # cancelled by the caller in the meantime

    def _release(self, count: int) -> None:
        if self._places is not None:
            self._places.release(count)

    def _on_turn(self) -> None:
        if self._outcomes:
            self._settle_outcomes()
        if not self._opened:
            self._opened = True
            self._loop_thread = threading.get_ident()
            self.supervisor.add_reader(self._wake_r, self._drain)
            self._dispatcher.open()
            self._started.set()

    def _serve(self) -> None:
        try:
            self.supervisor.run_until_shutdown()
        finally:
            self._settle_outcomes()
            self._dispatcher.close()
            with self._inbox_lock:  # no more wake-ups: the pipe closes
                self._closed = self._wake_pending = True
            self.supervisor.remove_reader(self._wake_r)
            for fd in (self._wake_r, self._wake_w):
                self.supervisor.private_fds.close(fd)
            shutil.rmtree(self._directory, ignore_errors=True)
            left, self._futures = list(self._futures.values()), {}
            for future in left:  # the pool stopped under them
                future.cancel()
            self._started.set()


class _Options:
    """``pool.options(timeout=..., retries=...)``: the same calls with other task settings."""

    def __init__(self, pool: TaskPool, timeout: float | None, retries: int) -> None:
        self._pool, self._timeout, self._retries = pool, timeout, retries

    def submit(self, fn: Callable[..., Any], /, *args: Any, block: bool = True,
               **kwargs: Any) -> TaskFuture:
        return self._pool._submit(fn, args, kwargs, self._timeout, self._retries, block)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: float | None = None, chunksize: int = 1) -> Iterator[Any]:
        return self._pool._map(fn, iterables, timeout, chunksize, self._timeout, self._retries)

    async def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        import asyncio  # here: asyncio is ~6 MB that every worker would map

        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))


def results_in_order(futures: list[TaskFuture], end: float | None,
                     chunked: bool) -> Iterator[Any]:
    """map's iterator: results in submission order; what is left is cancelled if the caller
    stops early (or a result raises)."""
    futures.reverse()
    try:
        while futures:
            future = futures[-1]
            value = future.result() if end is None else future.result(end - time.monotonic())
            futures.pop()
            if chunked:
                yield from value
            else:
                yield value
    finally:
        for future in futures:
            future.cancel()


def _settle(future: TaskFuture, resolve: Resolve, kind: Kind | None, body: bytes) -> None:
    outcome = resolve.outcome
    if kind is not None and (outcome, kind) in ((Outcome.DONE, Kind.RESULT),
                                                (Outcome.RAISED, Kind.RAISED)):
        outcomes.settle_answer(future, kind, body)
    elif outcome is Outcome.CANCELLED:
        future.cancel()
    else:
        future.set_exception(outcomes.error_for(outcome, resolve.exit, resolve.deaths))


def _check_options(timeout: float | None, retries: int) -> None:
    """Per-task overrides follow the pool's own rules (PoolConfig checks them)."""
    PoolConfig(task_timeout=timeout, retries=retries)
