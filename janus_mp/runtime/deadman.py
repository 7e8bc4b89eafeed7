"""A dead man's switch: a tiny process that outlives a killed supervisor only to clean up.

Workers notice their supervisor's death themselves (a pidfd watched by a thread), but a worker
stuck in C code holding the GIL cannot run that thread. So the supervisor forks this guard at
start and tells it, over a pipe, each worker it spawns and reaps. When the pipe reaches EOF
without a clean goodbye, the supervisor is gone: the guard freezes every tracked worker and its
descendants (SIGSTOP, so nothing forks past the sweep), SIGKILLs them all, and exits.

A pid is acted on only if its kernel start time still matches, so a reused pid is never hit.
The guard is forked, not spawned: it runs only the code below (no imports, no locks, no logging)
and closes every fd it inherited but its pipe.
"""

from __future__ import annotations

import gc
import os
import signal
import struct

from janus_mp import osproc
from janus_mp.runtime.worker import (
    _set_title,  # at import time: the forked guard must import nothing
)

_RECORD = struct.Struct("=BiQ")  # op, pid, start time
_TRACK, _UNTRACK, _GOODBYE = 1, 2, 3


class DeadMansSwitch:
    def __init__(self) -> None:
        self.pid: int | None = None
        self._write_fd = -1
        self._broken = False
        #: What the guard must know, kept here so a new guard can be told everything again.
        self._tracked: dict[int, int] = {}

    def start(self) -> int:
        """Fork the guard and tell it every worker tracked so far."""
        if self._write_fd >= 0:
            os.close(self._write_fd)
        self._write_fd = -1
        self._broken = False
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the guard
            try:
                _guard(read_fd)
            finally:
                os._exit(0)
        os.close(read_fd)
        os.set_blocking(write_fd, False)
        self.pid, self._write_fd = pid, write_fd
        for tracked, start in self._tracked.items():
            self._send(_TRACK, tracked, start)
        return pid

    @property
    def broken(self) -> bool:
        """The guard stopped reading (dead or wedged): it needs replacing."""
        return self._broken

    @property
    def fileno(self) -> int:
        return self._write_fd

    def track(self, pid: int) -> None:
        start = osproc.start_time(pid) or 0
        self._tracked[pid] = start
        self._send(_TRACK, pid, start)

    def untrack(self, pid: int) -> None:
        self._tracked.pop(pid, None)
        self._send(_UNTRACK, pid, 0)

    def close(self) -> None:
        """Clean exit: say goodbye so the guard leaves everything alone, and reap it."""
        if self._write_fd < 0:
            return
        self._send(_GOODBYE, 0, 0)
        os.close(self._write_fd)
        self._write_fd = -1
        if self.pid is not None:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass  # already reaped (it died, and the orphan reaper took it)

    def _send(self, op: int, pid: int, start: int) -> None:
        if self._write_fd < 0 or self._broken:
            return
        try:
            os.write(self._write_fd, _RECORD.pack(op, pid, start))
        except BlockingIOError:
            self._broken = True  # the guard is not reading: degrade to the workers' own check
        except OSError:
            self._broken = True


def _guard(read_fd: int) -> None:
    # Its collector must never walk what it inherited: writing to those objects' headers
    # would copy their pages (the whole preloaded app) into this process.
    gc.disable()
    gc.freeze()
    os.setpgid(0, 0)  # out of the terminal's group: Ctrl-C is for the supervisor
    _set_title(f"janus-mp: guard of supervisor {os.getppid()}")
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT, signal.SIGTTIN,
                signal.SIGTTOU, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)
    os.closerange(3, read_fd)
    os.closerange(read_fd + 1, 65536)
    tracked: dict[int, int] = {}
    buffer = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        buffer += chunk
        usable = len(buffer) - len(buffer) % _RECORD.size
        for offset in range(0, usable, _RECORD.size):
            op, pid, start = _RECORD.unpack_from(buffer, offset)
            if op == _TRACK:
                tracked[pid] = start
            elif op == _UNTRACK:
                tracked.pop(pid, None)
            elif op == _GOODBYE:
                return
        buffer = buffer[usable:]
    _kill_trees(tracked)


def _kill_trees(tracked: dict[int, int]) -> None:
    workers = [pid for pid, start in tracked.items() if osproc.start_time(pid) == start]
    # Freeze every worker first: its own clean-up thread would otherwise race this one, and a
    # worker killed before its descendants would hand them over to init, out of reach.
    osproc.kill_all(workers, signal.SIGSTOP)
    for worker in workers:
        osproc.kill_descendants(worker)
    osproc.kill_all(workers, signal.SIGKILL)
