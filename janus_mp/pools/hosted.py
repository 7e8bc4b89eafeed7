"""Pools hosted by a supervisor (``[pools.NAME]``): any service's worker submits to them.

    service worker                 supervisor loop thread                     pool worker
    ──────────────                 ──────────────────────                     ───────────
    janus_mp.pool("crunch")        submit socket (SO_PEERCRED: a worker of
      .submit(fn, x) ─ SUBMIT ───►  this supervisor) ─► Dispatcher("crunch") ─ TASK ─► run
    future ◄── RESULT/RAISED/OUTCOME ◄─ route by task id ◄─────────── RESULT/RAISED ◄┘

Bodies pass through as opaque bytes: the supervisor reads frame headers and the SUBMIT head
(timeout, retries, pool name), never a pickle. Outcomes without a result (a death, a timeout,
a cancel) go back as JSON. A submitter that goes away has its tasks cancelled.

The submit socket's directory reaches the workers in the ``JANUS_MP_POOLS`` environment
variable (``expose``), set before any worker exists, whatever forks them.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import logging
import os
import shutil
import socket
import struct
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

from janus_mp.core.pool_config import PoolConfig
from janus_mp.core.task_messages import Outcome, Resolve
from janus_mp.pools import outcomes
from janus_mp.pools.dispatcher import Dispatcher, Item, accept_peers
from janus_mp.pools.frames import SUBMIT_HEAD, FrameError, FrameReader, Kind, frame
from janus_mp.pools.outbox import Outbox
from janus_mp.pools.task_loop import TaskLoop
from janus_mp.runtime.supervisor import JanusSupervisor

log = logging.getLogger("janus_mp.pools")
ENV = "JANUS_MP_POOLS"
SUBMIT_SOCKET = "submit.sock"
#: janus_pool_task_duration_seconds buckets.
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0)


@dataclass
class _Pool:
    name: str
    config: PoolConfig
    dispatcher: Dispatcher
    buckets: list[int]
    duration_sum: float = 0.0
    queue_full: int = 0


class _Submitter:
    def __init__(self, sock: socket.socket, pid: int, outbox: Outbox) -> None:
        self.sock = sock
        self.pid = pid
        self.outbox = outbox
        self.reader = FrameReader()
        self.tasks: dict[int, tuple[_Pool, int]] = {}  # their id -> (pool, our id)
        self.open = True


class HostedPools:
    """The supervisor's pools; ``open`` runs in the loop thread, ``snapshot`` from any."""

    def __init__(self, supervisor: JanusSupervisor) -> None:
        self.supervisor = supervisor
        self.directory = tempfile.mkdtemp(prefix="janus-mp-pools-")  # 0700
        self._pools: dict[str, _Pool] = {}
        self._routes: dict[int, tuple[_Submitter, int]] = {}  # our id -> submitter, their id
        self._ids = itertools.count(1)
        self._listener: socket.socket | None = None
        self._published: dict[str, dict[str, Any]] = {}
        self._send_lock = threading.RLock()  # replies are written in the loop thread only

    def add(self, name: str, config: PoolConfig) -> None:
        """Register the pool's workers as a service (before the supervisor runs)."""
        dispatcher = Dispatcher(self.supervisor, name, config.rules(), self.directory,
                                functools.partial(self._deliver, name), lambda _n: None,
                                lambda: None)
        pool = _Pool(name, config, dispatcher, [0] * (len(BUCKETS) + 1))
        dispatcher.on_duration = functools.partial(self._observe, pool)
        dispatcher.bind()
        self.supervisor.spawn_service(
            TaskLoop(name, dispatcher.address, config.initializer, config.initargs),
            config.spawn_options(name))
        self._pools[name] = pool

    def expose(self) -> None:
        """Bind the submit socket and tell future workers where it is (environment)."""
        listener = self.supervisor.private_fds.new_socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = os.path.join(self.directory, SUBMIT_SOCKET)
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(1024)
        listener.setblocking(False)
        self._listener = listener
        os.environ[ENV] = self.directory

    @property
    def names(self) -> list[str]:
        return list(self._pools)

    def open(self) -> None:
        """In the loop thread, once: serve the sockets; publish counts every turn."""
        for pool in self._pools.values():
            pool.dispatcher.open()
        if self._listener is not None:
            self.supervisor.add_reader(self._listener, self._accept)
        self.supervisor.on_turn.append(self._publish)
        self.supervisor.on_shutdown.append(self._closing)
        self._publish()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.dispatcher.close()
        if self._listener is not None:
            self.supervisor.remove_reader(self._listener)
            self.supervisor.private_fds.close_socket(self._listener)
            self._listener = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per pool: queued, running, busy workers, outcomes, durations (as of the last turn)."""
        return self._published

    # -- the loop thread ------------------------------------------------------------------------
    def _publish(self) -> None:
        published = {}
        for name, pool in self._pools.items():
            book = pool.dispatcher.book
            published[name] = {
                "queued": book.queued, "running": book.busy, "busy_workers": book.busy,
                "workers": len(book.workers),
                "outcomes": {**{str(k): v for k, v in book.outcomes.items()},
                             "queue_full": pool.queue_full},
                "duration_buckets": list(zip(BUCKETS, itertools.accumulate(pool.buckets),
                                             strict=False)),
                "duration_count": sum(pool.buckets), "duration_sum": pool.duration_sum}
        self._published = published

    def _closing(self) -> None:
        for pool in self._pools.values():
            pool.dispatcher.closing(cancel_queued=True)

    def _observe(self, pool: _Pool, seconds: float) -> None:
        pool.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        pool.duration_sum += seconds

    def _accept(self) -> None:
        assert self._listener is not None
        for sock, pid in accept_peers(self.supervisor, self._listener, "pools"):
            if self.supervisor.worker_of_pid(pid) is None:
                log.warning("pools: refused a submitter, pid %d (not a worker of this "
                            "supervisor)", pid)
                self.supervisor.private_fds.close_socket(sock)
                continue
            sock.setblocking(False)
            submitter = _Submitter(sock, pid, Outbox(sock, self.supervisor, self._send_lock))
            self.supervisor.add_reader(sock, functools.partial(self._readable, submitter))

    def _readable(self, submitter: _Submitter) -> None:
        try:
            data = submitter.sock.recv(submitter.reader.wanted())
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        try:
            frames = submitter.reader.feed(data) if data else None
        except FrameError as exc:
            log.warning("pools: submitter pid %d: %s", submitter.pid, exc)
            frames = None
        if frames is None:
            self._gone(submitter)
            return
        for kind, task, body in frames:
            if kind is Kind.SUBMIT:
                self._submit(submitter, task, body)
            elif kind is Kind.CANCEL and task in submitter.tasks:
                pool, ours = submitter.tasks[task]
                pool.dispatcher.cancel(ours)

    def _submit(self, submitter: _Submitter, theirs: int, body: bytes) -> None:
        try:
            timeout, retries, length = SUBMIT_HEAD.unpack_from(body)
            name = body[SUBMIT_HEAD.size:SUBMIT_HEAD.size + length].decode()
        except (struct.error, UnicodeDecodeError):
            self._reply(submitter, frame(Kind.OUTCOME, theirs, outcomes.encode(
                "malformed submission")))
            return
        pool = self._pools.get(name)
        if pool is None:
            self._reply(submitter, frame(Kind.OUTCOME, theirs, outcomes.encode(
                f"no pool named {name!r} (pools: {', '.join(sorted(self._pools)) or 'none'})")))
            return
        limit = pool.config.max_queued
        if limit is not None and pool.dispatcher.book.queued >= limit:
            pool.queue_full += 1
            self._reply(submitter, frame(Kind.OUTCOME, theirs, outcomes.encode("queue_full")))
            return
        ours = next(self._ids)
        submitter.tasks[theirs] = (pool, ours)
        self._routes[ours] = (submitter, theirs)
        call = body[SUBMIT_HEAD.size + length:]
        pool.dispatcher.submit([Item(ours, call, None if timeout < 0 else timeout, retries)])

    def _deliver(self, _name: str, resolve: Resolve, kind: Kind | None, body: bytes) -> None:
        route = self._routes.pop(resolve.task, None)
        if route is None:
            return
        submitter, theirs = route
        submitter.tasks.pop(theirs, None)
        if resolve.outcome in (Outcome.DONE, Outcome.RAISED) and kind is not None:
            self._reply(submitter, frame(kind, theirs, body))
        else:
            self._reply(submitter, frame(Kind.OUTCOME, theirs, outcomes.encode(
                resolve.outcome, resolve.exit, resolve.deaths)))

    def _reply(self, submitter: _Submitter, data: bytes) -> None:
        if submitter.open:
            submitter.outbox.write(data)
            if submitter.outbox.broken:
                self._gone(submitter)

    def _gone(self, submitter: _Submitter) -> None:
        """The submitter closed or died: nobody waits for its tasks any more."""
        if not submitter.open:
            return
        submitter.open = False
        submitter.outbox.close()
        self.supervisor.remove_reader(submitter.sock)
        self.supervisor.private_fds.close_socket(submitter.sock)
        for pool, ours in list(submitter.tasks.values()):
            self._routes.pop(ours, None)
            pool.dispatcher.cancel(ours)
        submitter.tasks.clear()
