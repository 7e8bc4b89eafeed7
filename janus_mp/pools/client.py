"""``janus_mp.pool("NAME")``: submit to a pool the supervisor hosts, from a service's worker.

One connection per process to the supervisor's submit socket (found through ``JANUS_MP_POOLS``),
shared by every thread and every pool; a reader thread settles the futures. A process forked
from a worker makes its own connection.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from janus_mp.errors import JanusError
from janus_mp.pools import outcomes, payloads
from janus_mp.pools.executor import TaskFuture, results_in_order
from janus_mp.pools.frames import SUBMIT_HEAD, FrameError, FrameReader, Kind, frame
from janus_mp.pools.hosted import ENV, SUBMIT_SOCKET

_lock = threading.Lock()
_connection: _Connection | None = None


def pool(name: str) -> PoolHandle:
    """The hosted pool ``name`` (``[pools.NAME]`` in the supervisor's config)."""
    return PoolHandle(name, None, 0)


class PoolHandle:
    """Submits to one hosted pool; ``options(timeout=, retries=)`` gives per-task settings."""

    def __init__(self, name: str, timeout: float | None, retries: int) -> None:
        self.name = name
        self._timeout = timeout
        self._retries = retries

    def options(self, *, timeout: float | None = None, retries: int | None = None) -> PoolHandle:
        return PoolHandle(self.name, self._timeout if timeout is None else timeout,
                          self._retries if retries is None else retries)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """Run ``fn(*args, **kwargs)`` in the pool. A full queue (``max_queued``) fails the
        future with QueueFull at once: a web worker should answer 503, not wait."""
        try:
            body = payloads.call(fn, args, kwargs)
        except Exception as exc:  # an unpicklable argument fails this future only
            future = TaskFuture()
            future.set_exception(exc)
            return future
        return _connect().submit(self.name, self._timeout, self._retries, body)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: float | None = None, chunksize: int = 1) -> Iterator[Any]:
        end = None if timeout is None else time.monotonic() + timeout
        calls = zip(*iterables, strict=False)
        futures: list[TaskFuture] = []
        if chunksize <= 1:
            futures = [self.submit(fn, *args) for args in calls]
        else:
            while chunk := list(itertools.islice(calls, chunksize)):
                futures.append(self.submit(payloads.run_chunk, fn, chunk))
        return results_in_order(futures, end, chunksize > 1)

    async def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        import asyncio  # here: asyncio is ~6 MB that every worker would map

        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def cancel(self, future: concurrent.futures.Future[Any]) -> bool:
        return future.cancel()


def _connect() -> _Connection:
    global _connection
    with _lock:
        if _connection is None or _connection.pid != os.getpid() or _connection.closed:
            directory = os.environ.get(ENV)
            if not directory:
                raise JanusError("janus_mp.pool(): no hosted pools here (run under `janus-mp "
                                 "run -c` with a [pools.NAME] table)")
            _connection = _Connection(os.path.join(directory, SUBMIT_SOCKET))
        return _connection


class _Connection:
    def __init__(self, path: str) -> None:
        self.pid = os.getpid()
        self.closed = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            raise JanusError(f"janus_mp.pool(): cannot reach the supervisor's pools: "
                             f"{exc.strerror or exc}") from None
        self._send_lock = threading.Lock()
        self._futures: dict[int, TaskFuture] = {}
        self._ids = itertools.count(1)
        threading.Thread(target=self._read, name="janus-mp pool client", daemon=True).start()

    def submit(self, name: str, timeout: float | None, retries: int, body: bytes) -> TaskFuture:
        future = TaskFuture()
        future.task = task = next(self._ids)
        self._futures[task] = future
        encoded = name.encode()
        head = SUBMIT_HEAD.pack(-1.0 if timeout is None else timeout, retries, len(encoded))
        self._send(frame(Kind.SUBMIT, task, head + encoded + body))
        future.add_done_callback(self._done)
        return future

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        task = getattr(future, "task", -1)
        if future.cancelled() and self._futures.pop(task, None) is not None:
            self._send(frame(Kind.CANCEL, task))

    def _send(self, data: bytes) -> None:
        try:
            with self._send_lock:
                self._sock.sendall(data)
        except OSError as exc:
            self._fail_all(JanusError(f"lost the supervisor's pools: {exc}"))

    def _read(self) -> None:
        reader = FrameReader()
        try:
            while data := self._sock.recv(reader.wanted()):
                for kind, task, body in reader.feed(data):
                    future = self._futures.pop(task, None)
                    if future is None or future.done():
                        continue
                    try:
                        _settle(future, kind, body)
                    except concurrent.futures.InvalidStateError:
                        pass  # cancelled meanwhile
        except (OSError, FrameError):
            pass
        self._fail_all(JanusError("the supervisor's pools are gone (shutting down?)"))

    def _fail_all(self, error: BaseException) -> None:
        self.closed = True
        left, self._futures = list(self._futures.values()), {}
        for future in left:
            if not future.done():
                try:
                    future.set_exception(error)
                except concurrent.futures.InvalidStateError:
                    pass


def _settle(future: TaskFuture, kind: Kind, body: bytes) -> None:
    if kind is Kind.RESULT or kind is Kind.RAISED:
        outcomes.settle_answer(future, kind, body)
        return
    error = outcomes.decode(body)
    if isinstance(error, concurrent.futures.CancelledError):
        future.cancel()
    else:
        future.set_exception(error)
