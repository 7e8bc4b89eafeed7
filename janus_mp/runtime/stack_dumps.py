"""Stack dumps of stuck workers, the supervisor's side: one file per worker, a signal, a read.

Each worker arms ``faulthandler`` on :data:`DUMP_SIGNAL` with its own file in a private (0700)
directory made when the supervisor opens (see ``worker._arm_stack_dumps``); faulthandler writes
every thread's Python stack from the signal handler itself, so even a worker stuck in C code
or holding the GIL in a loop answers. The signal goes to the worker's pid only, never its group:
programs a worker runs (the command adapter) are not asked, and would die of it. The policy
waits for the answer with a timer (``core/dumps.py``); the file is read then and removed when
the worker is released.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import tempfile

from janus_mp import osproc

DUMP_SIGNAL = signal.SIGUSR2
#: A dump longer than this is cut: it travels in status replies (50 recent exits at most).
MAX_DUMP = 64 * 1024


class StackDumps:
    def __init__(self) -> None:
        self._dir: str | None = None

    def open(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="janus-mp-dumps-")

    def close(self) -> None:
        directory, self._dir = self._dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def path_for(self, worker: int) -> str | None:
        return os.path.join(self._dir, f"{worker}.txt") if self._dir is not None else None

    def request(self, pid: int, pidfd: int | None) -> None:
        if pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(pidfd, DUMP_SIGNAL)
        else:
            osproc.signal_process(pid, DUMP_SIGNAL)

    def read(self, worker: int) -> str:
        """The dump, cut at MAX_DUMP. Never blocks the loop whatever the worker left at the
        path: opened non-blocking without following a link, read only if a regular file."""
        path = self.path_for(worker)
        if path is None:
            return ""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY |
                         os.O_CLOEXEC)
        except OSError:
            return ""
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return "(not a regular file at the dump path: not read)"
            data = b""
            while len(data) <= MAX_DUMP:
                chunk = os.read(fd, MAX_DUMP + 1 - len(data))
                if not chunk:
                    break
                data += chunk
        except OSError:
            return ""
        finally:
            os.close(fd)
        text = data[:MAX_DUMP].decode("utf-8", "replace")
        return text + ("\n... (cut)" if len(data) > MAX_DUMP else "")

    def forget(self, worker: int) -> None:
        path = self.path_for(worker)
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
