"""Worker processes: fork them, talk to them, signal them, reap them.

The policy names workers by number; this table maps a number to its process. Each worker gets
its own process group, a duplex pipe (bytes only: ready, recycle, cancel), a heartbeat double
in shared memory and a node of the cancellation tree. A forked worker closes every supervisor
fd it must not keep (they would hide EOFs and leak); the other workers' pipes and pidfds live in
a region of high fd numbers that it closes with one close_range(), so a spawn never walks the
other workers.

A worker's exit has one door: its pidfd (its multiprocess sentinel under forkserver, where the
worker is not our child). Reaping it never blocks: the pidfd is readable only once the process
is a zombie.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import signal
from dataclasses import dataclass, field
from typing import Any

import multiprocess.connection as mpc

from janus_mp import osproc
from janus_mp.core import events as ev
from janus_mp.core.actions import Spawn
from janus_mp.core.cancel import CancellationToken
from janus_mp.core.process_settings import ProcessSettings
from janus_mp.runtime.arena import Arena
from janus_mp.runtime.output_pipes import open_output_pipes
from janus_mp.runtime.worker import WorkerSpec, worker_main
from janus_mp.service import CANCEL, EXITING, PARKED, PROMOTE, READY, RECYCLE, JanusService


@dataclass(eq=False, slots=True)
class WorkerProcess:
    id: int
    service: str
    slot: int
    process: Any  # the multiprocess Process: kept only for a forkserver worker (its sentinel)
    pid: int
    pidfd: int | None
    conn: Any
    token: CancellationToken
    heartbeat: Any
    direct_child: bool
    fds: tuple[int, ...] = field(default=())
    #: Read ends of its stdout/stderr pipes, until the output capture takes them over.
    output_fds: dict[str, int] = field(default_factory=dict)
    lifeline: bool = False  # it holds its service's lifeline (runtime/lifelines.py)

    @property
    def exit_source(self) -> Any:
        return self.pidfd if self.pidfd is not None else self.process.sentinel

    def read_messages(self) -> tuple[list[bytes], bool]:
        """What the worker said since the last read (never blocks), and whether its pipe is
        closed (it is exiting)."""
        messages: list[bytes] = []
        try:
            while self.conn.poll():
                messages.append(self.conn.recv_bytes(64))
        except (EOFError, OSError):
            return messages, True
        return messages, False

    def event_for(self, message: bytes) -> ev.Event:
        """What a message from the worker means to the policy."""
        if message == READY:
            return ev.WorkerReady(self.id)
        if message == PARKED:
            return ev.WorkerParked(self.id)
        if message.startswith(EXITING) and message[1:].isdigit():
            return ev.WorkerExiting(self.id, int(message[1:]))
        if message.startswith(RECYCLE):
            return ev.RecycleAsked(self.id, message[1:].decode("utf-8", "replace") or "asked")
        return ev.RecycleAsked(-1, "")  # unknown message: an event about no worker, ignored

    def promote(self, slot: int, generation: int, max_requests: int | None,
                now: float) -> None:
        """A parked standby takes ``slot``: its watchdog clock starts now, then one message."""
        self.slot = slot
        self.heartbeat.value = now
        try:
            self.conn.send_bytes(PROMOTE + f"{slot} {generation} {max_requests or 0}".encode())
        except (OSError, ValueError):
            pass  # the worker is gone; its exit is on its way

    def send_cancel(self) -> None:
        try:
            self.conn.send_bytes(CANCEL)
        except (OSError, ValueError):
            pass  # the worker is gone; its exit is on its way


class Processes:
    def __init__(self, context: Any, start_method: str) -> None:
        self.context = context
        self.start_method = start_method
        if start_method == "forkserver":
            _preload_in_fork_server(context)
        self.by_id: dict[int, WorkerProcess] = {}
        # Every worker's pipe and pidfd, which a forked worker must close. They are moved up to
        # fd numbers >= _region (when the limit on open files leaves room), so a new worker
        # closes them all with one close_range() instead of one close() per worker; the few
        # that could not move are listed in _low_fds.
        self._region = _fd_region()
        self._low_fds: set[int] = set()
        self._heartbeats = Arena("d", context)
        self.gc_freeze = True  # the worker freezes what it inherited (SupervisorConfig)

    def spawn(self, action: Spawn, payload: JanusService | bytes, token: CancellationToken, *,
              now: float, wait_for_ready: bool, metrics: Any, listeners: tuple[Any, ...],
              other_fds: list[int], watchdog_timeout: float | None,
              extras: dict[str, Any] | None = None,
              process_settings: ProcessSettings | None = None) -> WorkerProcess:
        """Fork (or spawn) one worker; raises OSError when the system refuses a process.
        ``extras``: more WorkerSpec fields (dump_path, post_fork, worker_exit...)."""
        parent_conn, child_conn = self.context.Pipe(duplex=True)
        heartbeat = self._heartbeats.take(now)
        fork = self.start_method == "fork"
        direct_child = self.start_method != "forkserver"
        spec = WorkerSpec(
            service_name=action.service, index=action.slot, generation=action.generation,
            supervisor_pid=os.getpid(), token=token, conn=child_conn, heartbeat=heartbeat,
            service=payload, close_fds=(), wait_for_ready=wait_for_ready,
            direct_child=direct_child, metrics=metrics, standby=action.standby,
            title=(f"janus-mp: {action.service} standby" if action.standby else
                   f"janus-mp: {action.service} worker {action.slot} (gen {action.generation})"),
            listeners=listeners, max_requests=action.max_requests,
            stop_timeout=action.stop_timeout, watchdog_timeout=watchdog_timeout,
            **(extras or {}),
            process=process_settings, gc_freeze=self.gc_freeze,
        )
        process = self.context.Process(target=worker_main, args=(spec,), daemon=False,
                                       name=f"janus-mp:{action.service}[{action.slot}]")
        output = open_output_pipes()
        spec.output = output.write_ends
        try:
            if fork:  # the child closes them first thing (see WorkerSpec.close_fds)
                region = self._region or 1 << 30
                spec.close_fds = (*(fd for fd in other_fds if fd < region), *self._low_fds,
                                  parent_conn.fileno(), *output.parent_fds)
                spec.close_from = self._region
            process.start()
        except BaseException:
            parent_conn.close()
            child_conn.close()
            output.close()
            self._heartbeats.give_back(heartbeat)
            raise
        child_conn.close()
        output.close_write_ends()
        _forget_in_multiprocess(process)
        pid = int(process.pid)
        if fork:
            with contextlib.suppress(OSError):  # both sides set it: a kill right after
                os.setpgid(pid, pid)            # start cannot miss the group
        pidfd = self._move_up(osproc.pidfd_open(pid)) if direct_child else None
        parent_conn = self._move_conn_up(parent_conn)
        if pidfd is not None:
            # Our child, reaped through its pidfd: the Process object (its arguments, its
            # Popen, a sentinel pipe) is dead weight for as long as the worker lives.
            process = None
        worker = WorkerProcess(id=action.worker, service=action.service, slot=action.slot,
                               process=process, pid=pid, pidfd=pidfd, conn=parent_conn,
                               token=token, heartbeat=heartbeat, direct_child=direct_child,
                               output_fds={stream: self._move_up(fd) or fd
                                           for stream, fd in output.read_fds.items()})
        worker.fds = tuple(fd for fd in (parent_conn.fileno(), pidfd) if fd is not None)
        self._low_fds.update(fd for fd in worker.fds if self._region is None or
                             fd < self._region)
        self.by_id[worker.id] = worker
        return worker

    def _move_up(self, fd: int | None) -> int | None:
        """``fd`` renumbered into the region (the old number closed), or as it is."""
        if fd is None or self._region is None or fd >= self._region:
            return fd
        try:
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, self._region)
        except OSError:  # the region is full: the worker closes this one by its number
            return fd
        os.close(fd)
        return moved

    def _move_conn_up(self, conn: Any) -> Any:
        """The supervisor's end of a worker's pipe, renumbered into the region if it can be."""
        if self._region is None:
            return conn
        moved = self._move_up(os.dup(conn.fileno()))
        assert moved is not None
        if moved < self._region:
            os.close(moved)
            return conn
        conn.close()
        return mpc.Connection(moved)

    def of_pid(self, pid: int) -> WorkerProcess | None:
        """The live worker whose process is ``pid``, if any."""
        return next((worker for worker in self.by_id.values() if worker.pid == pid), None)

    def signal(self, worker: WorkerProcess, signum: int) -> None:
        """Signal the worker itself and its process group: a worker that left its group is
        still reached, and so is whatever it left behind in the group."""
        if worker.pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(worker.pidfd, signum)
        else:
            osproc.signal_process(worker.pid, signum)
        osproc.signal_group(worker.pid, signum)

    def signal_worker(self, worker: int, signum: int, *, group: bool = True) -> None:
        """Signal a worker not reaped yet: with its process group, or its process alone."""
        process = self.by_id.get(worker)
        if process is not None and group:
            self.signal(process, signum)
        elif process is not None:
            osproc.signal_process(process.pid, signum)

    def reap(self, worker: WorkerProcess) -> int:
        """The exit code of a worker whose exit source is readable (never blocks)."""
        # The zombie pins its pid as a group id: kill what is left of its group first.
        osproc.signal_group(worker.pid, signal.SIGKILL)
        code = None if worker.process is None else worker.process.exitcode
        if code is None and worker.direct_child:
            status = osproc.reap_nonblocking(worker.pid)
            if status is not None:
                code = os.waitstatus_to_exitcode(status)
        return int(code) if code is not None else -int(signal.SIGKILL)

    def forget(self, worker: WorkerProcess) -> None:
        """A reaped worker is no longer addressable (its fds wait for :meth:`release`)."""
        self.by_id.pop(worker.id, None)

    def release(self, worker: WorkerProcess) -> None:
        """Let a reaped worker go: its fds close, its node leaves the cancellation tree."""
        self.by_id.pop(worker.id, None)
        self._low_fds.difference_update(worker.fds)
        if worker.process is not None:
            with contextlib.suppress(Exception):
                worker.process.close()
        if worker.pidfd is not None:
            osproc.close_fds([worker.pidfd])
        worker.conn.close()
        worker.token.detach()
        self._heartbeats.give_back(worker.heartbeat)

    def kill_all_now(self) -> None:
        """Last resort (an exception escaped the loop): SIGKILL every worker and wait."""
        for worker in list(self.by_id.values()):
            self.signal(worker, signal.SIGKILL)
        for worker in list(self.by_id.values()):
            with contextlib.suppress(Exception):
                if worker.process is not None:
                    worker.process.join(5.0)
                else:
                    osproc.wait_for_exit(worker.pid, 5.0)
            self.release(worker)


def _fd_region() -> int | None:
    """Where worker fds are moved: the upper half of the open-file limit, if that is roomy."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft < 1024:
        return None  # too few fds to split (or no bound to split at)
    return int(soft // 2)


def _forget_in_multiprocess(process: Any) -> None:
    """multiprocess polls every child it started on each start() (O(n) per spawn) and would
    reap our workers behind our back; the supervisor owns their reaping, so it unlists them."""
    try:
        from multiprocess import process as mp_process

        mp_process._children.discard(process)
    except Exception:
        pass


#: What every worker imports: loaded once in the fork server (when janus-mp is the one to start
#: it), each worker it forks has them already instead of importing them again (~0.25 s each).
_WORKER_MODULES = ("janus_mp.runtime.worker", "janus_mp.pools.task_loop", "dill")


def _preload_in_fork_server(context: Any) -> None:
    """Add the worker's modules to the fork server's preload list (kept: ``__main__`` and what
    the program set itself). Without effect once the program's fork server is running."""
    from multiprocess import forkserver

    wanted = list(getattr(forkserver._forkserver, "_preload_modules", None) or ["__main__"])
    context.set_forkserver_preload(wanted + [m for m in _WORKER_MODULES if m not in wanted])
