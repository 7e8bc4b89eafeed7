"""A worker's stdout and stderr as pipes the supervisor reads (see :mod:`.output_capture`).

    supervisor                                   worker process
    ──────────                                   ──────────────
    read end "out" ◄──── pipe (1 MiB buffer) ─── fd 1: print(), os.write(1), C printf, children
    read end "err" ◄──── pipe (1 MiB buffer) ─── fd 2: tracebacks, logging, C stderr, children

The write ends stay blocking: a non-blocking stdout makes ``print`` raise BlockingIOError and
C stdio lose data. The worker is never slowed by where its lines end up — the supervisor's
reader thread only reads and queues (or drops, counted); a worker can only wait when it writes
faster than that thread reads, and the enlarged pipe buffer absorbs the reader's pauses.

A third pipe, "crash", carries what faulthandler writes when a fatal signal (SIGSEGV, SIGBUS,
SIGABRT, SIGFPE, SIGILL) hits the worker, from its C-level handler, before the signal's default
action tears the process down. Its lines are shown as the worker's stderr; its first line
("Fatal Python error: Segmentation fault") also tells the supervisor which signal is killing
the worker (:func:`fatal_signal`) — before the teardown, which grows with the worker's size.

Under spawn and forkserver the write ends travel in the pickled ``WorkerSpec`` as multiprocess
Connections (multiprocess duplicates their fds into the child).
"""

from __future__ import annotations

import contextlib
import faulthandler
import fcntl
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from multiprocess.connection import Connection

STREAMS = ("out", "err")
#: The pipe faulthandler writes to (see the module docstring); shown as the worker's stderr.
CRASH = "crash"
#: faulthandler's names of the fatal signals it handles (the first line it writes).
_FATAL_SIGNALS = {b"Segmentation fault": signal.SIGSEGV, b"Bus error": signal.SIGBUS,
                  b"Aborted": signal.SIGABRT, b"Floating-point exception": signal.SIGFPE,
                  b"Illegal instruction": signal.SIGILL}
_FATAL_PREFIX = b"Fatal Python error: "
#: Bytes a worker may write ahead of the reader before write() waits (F_SETPIPE_SZ: capped by
#: /proc/sys/fs/pipe-max-size; the default 64 KiB is kept where the kernel refuses).
PIPE_SIZE = 1024 * 1024


@dataclass
class OutputPipes:
    """The supervisor's read ends by stream, and the write ends the child takes over."""

    read_fds: dict[str, int]
    write_ends: dict[str, Any]  # Connection objects: picklable into a spawned child

    @property
    def parent_fds(self) -> tuple[int, ...]:
        """fds the new child must close (the supervisor's read ends)."""
        return tuple(self.read_fds.values())

    def close_write_ends(self) -> None:
        """The child has its copies: the supervisor must not hold them (EOF comes when the
        worker's tree closes the last copy)."""
        for end in self.write_ends.values():
            with contextlib.suppress(OSError):
                end.close()

    def close(self) -> None:
        """Spawning failed: nothing will read them."""
        self.close_write_ends()
        for fd in self.read_fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)


def open_output_pipes() -> OutputPipes:
    read_fds: dict[str, int] = {}
    write_ends: dict[str, Any] = {}
    try:
        for stream in (*STREAMS, CRASH):
            read_fd, write_fd = os.pipe()
            read_fds[stream] = read_fd
            write_ends[stream] = Connection(write_fd, readable=False, writable=True)
            if stream != CRASH:  # a crash report is a few KiB
                with contextlib.suppress(OSError):
                    fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except BaseException:
        OutputPipes(read_fds, write_ends).close()
        raise
    return OutputPipes(read_fds, write_ends)


def redirect_output(write_ends: dict[str, Any]) -> None:
    """In the worker, before service code runs: fd 1 and fd 2 become the pipes, and Python's
    stdout is line-buffered so a ``print`` reaches the log as it happens, not at exit."""
    for stream, target in (("out", 1), ("err", 2)):
        end = write_ends.get(stream)
        if end is None:
            continue
        with contextlib.suppress(OSError):
            sys.stdout.flush() if target == 1 else sys.stderr.flush()
        os.dup2(end.fileno(), target)
        end.close()
    for name, fd in (("stdout", 1), ("stderr", 2)):
        current = getattr(sys, name, None)
        if current is not None and _writes_to(current, fd):
            with contextlib.suppress(Exception):
                current.reconfigure(line_buffering=True)
        else:  # None, or replaced (a test runner's capture): print() must still reach fd 1/2
            setattr(sys, name, open(fd, "w", buffering=1, closefd=False,  # noqa: SIM115
                                    errors="backslashreplace"))


def _writes_to(stream: Any, fd: int) -> bool:
    try:
        return bool(stream is not None and stream.fileno() == fd
                    and hasattr(stream, "reconfigure"))
    except (OSError, ValueError, AttributeError):
        return False


#: The worker's end of its crash pipe, open for as long as the worker lives.
_crash_end: Any = None


def report_fatal_signals(write_ends: dict[str, Any]) -> None:
    """In the worker: faulthandler writes its report of a fatal signal to the crash pipe.

    A process the worker forks (without exec) gets faulthandler as it was before, on its own
    stderr: the crash pipe speaks for the worker alone."""
    global _crash_end
    end = write_ends.get(CRASH)
    if end is None:
        return
    was_enabled = faulthandler.is_enabled()
    try:
        faulthandler.enable(file=end.fileno(), all_threads=True)
    except (OSError, ValueError, RuntimeError):
        end.close()
        return
    _crash_end = end

    def in_child() -> None:
        global _crash_end
        if was_enabled:
            with contextlib.suppress(Exception):
                faulthandler.enable(file=sys.stderr, all_threads=True)
        else:
            faulthandler.disable()
        with contextlib.suppress(OSError):
            end.close()
        _crash_end = None

    os.register_at_fork(after_in_child=in_child)


def fatal_signal(line: bytes) -> int | None:
    """The signal a crash pipe's first line names ("Fatal Python error: Bus error"), if any."""
    if not line.startswith(_FATAL_PREFIX):
        return None
    name = line[len(_FATAL_PREFIX):].strip()
    found = _FATAL_SIGNALS.get(name)
    return None if found is None else int(found)
