"""A pool's dispatcher: the supervisor-side end of the task transport, in the loop thread.

    submitter ─► submit(items) ─────► Submitted ─┐
    listening socket ─► accept, SO_PEERCRED check│
    worker frames: HELLO, RESULT, RAISED, ... ───┼─► core.tasks.handle ─► Send: TASK frame
    supervisor exit path (on_worker_exited) ─────┤                       Resolve: deliver()
    deadlines (call_later) ──────────────────────┘                       KillWorker, Interrupt:
                                                                           the supervisor signals
It decides nothing (``core/tasks.py`` does) and never unpickles: task bodies go from the
submitter to a worker and results back as opaque bytes. A worker is accepted only if the
peer's pid (SO_PEERCRED) is a worker of this pool's service in the supervisor's process table.
Before a dead worker's exit is fed to the policy, whatever it sent before dying is read: a
result that made it out counts.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import os
import signal
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from janus_mp.core import tasks
from janus_mp.core.task_messages import (
    CancelAsked,
    Closing,
    Drained,
    Ending,
    Interrupt,
    KillWorker,
    Released,
    Resolve,
    Retire,
    Schedule,
    Send,
    Skip,
    Submitted,
    TaskAction,
    TaskEnded,
    TaskEvent,
    TaskTimer,
    TimerDue,
    Unschedule,
    WorkerClosed,
    WorkerExit,
    WorkerJoined,
    WorkerLeaving,
    WorkerLost,
)
from janus_mp.pools.frames import FrameError, FrameReader, Kind, frame
from janus_mp.pools.outbox import Outbox
from janus_mp.runtime.supervisor import JanusSupervisor

log = logging.getLogger("janus_mp.pools")
_PEERCRED = struct.Struct("3i")


def accept_peers(supervisor: JanusSupervisor, listener: socket.socket,
                 label: str) -> Iterator[tuple[socket.socket, int]]:
    """Every connection waiting on ``listener``, with the pid of the process at its other end
    (SO_PEERCRED, from the kernel: the caller decides whom it accepts)."""
    while True:
        try:
            sock, _ = supervisor.private_fds.accept(listener)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("%s: accept failed: %s", label, exc)
            return
        pid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                               _PEERCRED.size))[0]
        yield sock, pid


@dataclass(frozen=True)
class Item:
    """One submission: ``body`` is the pickled call, opaque here."""

    task: int
    body: bytes
    timeout: float | None = None
    retries: int = 0


#: (resolve, body of the worker's last frame for it: RESULT/RAISED payload, or None)
Deliver = Callable[[Resolve, Kind | None, bytes], None]


class _Worker:
    def __init__(self, worker: int, sock: socket.socket, outbox: Outbox) -> None:
        self.id = worker
        self.sock = sock
        self.reader = FrameReader()
        self.outbox = outbox
        self.open = True


class Dispatcher:
    """Routes one pool's tasks. It runs in the supervisor's loop thread, except ``submit``,
    which a submitting thread may call itself (a task goes straight to an idle worker, without
    waking the loop first): ``lock`` serialises everything that feeds the policy or writes to
    a worker. What only the loop may do (signals, notices) is handed to it."""

    def __init__(self, supervisor: JanusSupervisor, service: str, rules: tasks.TaskRules,
                 directory: str, deliver: Deliver, released: Callable[[int], None],
                 drained: Callable[[], None]) -> None:
        self.supervisor = supervisor
        self.service = service
        self.book = tasks.TaskBook(rules)
        self.address = os.path.join(directory, f"{service}.sock")
        self._deliver = deliver
        self._released = released
        self._drained = drained
        self._bodies: dict[int, bytes] = {}
        self._answers: dict[int, tuple[Kind, bytes]] = {}
        self._workers: dict[int, _Worker] = {}
        self._listener: socket.socket | None = None
        self._due: dict[TaskTimer, float] = {}
        self._heap: list[tuple[float, int, TaskTimer]] = []
        self._seq = itertools.count()
        self._wake_at: float | None = None
        self.lock = threading.RLock()
        #: Called with how long each task that ran took (hosted pools' histogram).
        self.on_duration: Callable[[float], None] | None = None
        self._sent_at: dict[int, float] = {}

    # -- lifetime ----------------------------------------------------------------------------
    def bind(self) -> None:
        """Listen (any thread, before the loop runs): workers may connect from their start."""
        listener = self.supervisor.private_fds.new_socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.address)
        os.chmod(self.address, 0o600)
        listener.listen(1024)
        listener.setblocking(False)
        self._listener = listener

    def open(self) -> None:
        """In the loop thread: serve the listener, hear about worker exits."""
        assert self._listener is not None
        self.supervisor.add_reader(self._listener, self._accept)
        self.supervisor.on_worker_exited.append(self._on_exit)

    def close(self) -> None:
        with self.lock:
            for worker in list(self._workers.values()):
                self._disconnect(worker)
        if self._listener is not None:
            self.supervisor.remove_reader(self._listener)
            self.supervisor.private_fds.close_socket(self._listener)
            self._listener = None
            try:
                os.unlink(self.address)
            except OSError:
                pass

    # -- submitters ---------------------------------------------------------------------------
    def submit(self, items: list[Item]) -> None:
        with self.lock:
            for item in items:
                self._bodies[item.task] = item.body
                self._feed(Submitted(item.task, item.timeout, item.retries))

    def cancel(self, task: int) -> None:
        self._feed(CancelAsked(task))

    def closing(self, cancel_queued: bool) -> None:
        self._feed(Closing(cancel_queued))

    # -- feeding the policy, performing its actions -----------------------------------------
    def _feed(self, event: TaskEvent) -> None:
        with self.lock:
            for action in tasks.handle(self.book, event, self.supervisor.clock()):
                self._act(action)

    def _act(self, action: TaskAction) -> None:
        match action:
            case Send(worker=worker_id, task=task):
                if self.on_duration is not None:
                    self._sent_at[task] = self.supervisor.clock()
                self._send(worker_id, frame(Kind.TASK, task, self._bodies[task]))
            case Resolve(task=task):
                self._bodies.pop(task, None)
                sent_at = self._sent_at.pop(task, None)
                if sent_at is not None and self.on_duration is not None:
                    self.on_duration(self.supervisor.clock() - sent_at)
                notice = tasks.notice_for(self.service, action, self.supervisor.clock())
                if notice is not None:
                    self.supervisor.call_soon(functools.partial(self.supervisor.publish, notice))
                kind, body = self._answers.pop(task, (None, b""))
                self._deliver(action, kind, body)
            case Released(count=count):
                self._released(count)
            case Schedule(key=key, at=at):
                self._schedule(key, at)
            case Unschedule(key=key):
                self._due.pop(key, None)
            case KillWorker(worker=worker, why=why):
                log.warning("%s: killing worker %d: %s", self.service, worker, why)
                self.supervisor.call_soon(functools.partial(
                    self.supervisor.signal_worker, worker, signal.SIGKILL))
            case Interrupt(worker=worker_id, task=task):
                # The frame names the task: the worker's SIGINT handler reads it, so a signal
                # that arrives after that task ended stops nothing else.
                self._send(worker_id, frame(Kind.CANCEL, task))
                self.supervisor.call_soon(functools.partial(
                    self.supervisor.signal_worker, worker_id, signal.SIGINT, group=False))
            case Skip(worker=worker_id, task=task):
                self._send(worker_id, frame(Kind.CANCEL, task))
            case Retire(worker=worker_id):
                self._send(worker_id, frame(Kind.RETIRE))
            case Drained():
                self._drained()
            case _:
                raise TypeError(f"no way to perform {action!r}")

    def _send(self, worker_id: int, data: bytes) -> None:
        worker = self._workers.get(worker_id)
        if worker is not None and worker.open:  # else gone: its exit gives back what it held
            worker.outbox.write(data)

    # -- workers -----------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._listener is not None
        for sock, pid in accept_peers(self.supervisor, self._listener, self.service):
            owner = self.supervisor.worker_of_pid(pid)
            if owner is None or owner[0] != self.service or owner[1] in self._workers:
                log.warning("%s: refused a task connection from pid %d (not a worker of "
                            "this pool)", self.service, pid)
                self.supervisor.private_fds.close_socket(sock)
                continue
            sock.setblocking(False)
            worker = _Worker(owner[1], sock, Outbox(sock, self.supervisor, self.lock))
            self._workers[worker.id] = worker
            self.supervisor.add_reader(sock, functools.partial(self._readable, worker))

    def _readable(self, worker: _Worker) -> None:
        frames, eof = self._read(worker)
        for kind, task, body in frames:
            event = self._event(worker, kind, task, body)
            if event is not None:
                self._feed(event)
                self._answers.pop(task, None)  # not taken by a Resolve: decided already
        if eof:
            with self.lock:
                self._disconnect(worker)
                self._feed(WorkerClosed(worker.id))  # its exit, from the supervisor, decides more

    def _read(self, worker: _Worker) -> tuple[list[tuple[Kind, int, bytes]], bool]:
        """The complete frames waiting on the worker's connection, and whether it closed."""
        frames: list[tuple[Kind, int, bytes]] = []
        while True:
            wanted = worker.reader.wanted()
            try:
                data = worker.sock.recv(wanted)
            except (BlockingIOError, InterruptedError):
                return frames, False
            except OSError:
                data = b""
            if not data:
                return frames, True
            try:
                frames += worker.reader.feed(data)
            except FrameError as exc:
                log.warning("%s: worker %d: %s", self.service, worker.id, exc)
                return frames, True
            if len(data) < wanted:
                return frames, False

    def _event(self, worker: _Worker, kind: Kind, task: int, body: bytes) -> TaskEvent | None:
        if kind is Kind.RESULT or kind is Kind.RAISED:
            if task in self.book.tasks:
                self._answers[task] = (kind, body)  # taken by its Resolve (else: too late)
            return TaskEnded(worker.id, task, Ending.RETURNED if kind is Kind.RESULT
                             else Ending.RAISED)
        if kind is Kind.INTERRUPTED:
            return TaskEnded(worker.id, task, Ending.INTERRUPTED)
        if kind is Kind.HELLO:
            return WorkerJoined(worker.id)
        if kind is Kind.BYE:
            return WorkerLeaving(worker.id)
        return None

    def _disconnect(self, worker: _Worker) -> None:
        if worker.open:
            worker.open = False
            worker.outbox.close()
            self.supervisor.remove_reader(worker.sock)
            self.supervisor.private_fds.close_socket(worker.sock)

    def _on_exit(self, service: str, worker_id: int, returncode: int, oom_killed: bool) -> None:
        if service != self.service:
            return
        with self.lock:
            self._lost(worker_id, WorkerExit(returncode, oom_killed))

    def _lost(self, worker_id: int, exit_: WorkerExit) -> None:
        worker = self._workers.pop(worker_id, None)
        last_words: list[TaskEvent] = []
        if worker is not None and worker.open:
            frames, _ = self._read(worker)  # what it sent before dying counts
            self._disconnect(worker)
            for kind, task, body in frames:
                event = self._event(worker, kind, task, body)
                if event is not None and not isinstance(event, WorkerJoined):
                    last_words.append(event)
        self._feed(WorkerLost(worker_id, exit_, tuple(last_words)))
        for event in last_words:
            if isinstance(event, TaskEnded):
                self._answers.pop(event.task, None)  # not taken: decided already

    # -- deadlines ---------------------------------------------------------------------------
    def _schedule(self, key: TaskTimer, at: float) -> None:
        self._due[key] = at
        heapq.heappush(self._heap, (at, next(self._seq), key))
        if self._wake_at is None or at < self._wake_at:
            self._wake_at = at
            self.supervisor.call_later(max(0.0, at - self.supervisor.clock()), self._on_timers)

    def _on_timers(self) -> None:
        with self.lock:
            self._timers_due()

    def _timers_due(self) -> None:
        now = self.supervisor.clock()
        if self._wake_at is not None and now < self._wake_at:
            return  # a wake-up that an earlier deadline overtook: that one's is booked
        self._wake_at = None
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, key = heapq.heappop(heap)
            if self._due.get(key) == at:
                del self._due[key]
                self._feed(TimerDue(key))
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        if heap:
            self._wake_at = heap[0][0]
            self.supervisor.call_later(max(0.0, heap[0][0] - now), self._on_timers)
