"""Every worker's stdout and stderr, read off the supervision loop, line by line, in bounded memory.

    worker pipes ──► reader thread ──────────► pending chunks ──► sink thread ──► OutputSink
    (all of them,     one selector; reads,      (at most BUDGET     splits lines,   (log files,
     out and err)     cuts at the last "\\n"     bytes: past it a    calls the sink  `logs -f`,
                      of each read              chunk is DROPPED,                   the log)
                                                lines counted)

Why two threads: the reader must never wait for anything but the pipes, so a worker is never
held up by a slow disk or a stalled stderr; the sink thread does the slow part. What is
dropped, when the sink falls behind (a worker writing 50 MB/s, a disk that stalls): whole
chunks of complete lines that find the pending budget full — counted per service
(``janus_supervisor_log_lines_dropped_total{service}``) and announced in that service's output
once the sink catches up. The supervisor's memory for output is BUDGET plus one unfinished
line (at most MAX_LINE) per pipe. The loop never touches any of this: spawning only hands the
read ends over (``attach``), a thread-safe append.

A worker's crash pipe (see :mod:`.output_pipes`) is read like its stderr; the first line of
it, when it names a fatal signal, is also handed to ``on_fatal_signal`` (from the reader
thread: the supervisor passes it on to its loop).

The read ends are registered in the supervisor's PrivateFds while open, so a worker forked
meanwhile closes them; the reader closes one (under that registry's lock) at its EOF, which
comes when the worker and everything it started have exited.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from janus_mp.private_fds import PrivateFds
from janus_mp.runtime.output_pipes import CRASH, fatal_signal

#: Bytes of complete lines waiting for the sink, at most, over all workers.
BUDGET = 4 * 1024 * 1024
#: Longest line kept whole; a longer one is cut into pieces of this size.
MAX_LINE = 16 * 1024
READ_SIZE = 64 * 1024
#: Bytes handed to the sink in one call at most: the sink's work on one group (joins,
#: decoding) holds the GIL, and the supervision loop must get it back within a millisecond.
_GROUP = 128 * 1024
#: Seconds ``close`` waits for the last lines of workers that already exited.
CLOSE_GRACE = 2.0

log = logging.getLogger("janus_mp.output")


@dataclass(frozen=True, slots=True)  # slots: three per worker live in the supervisor
class OutputSource:
    service: str
    slot: int
    pid: int
    stream: str  # "out" or "err"

    @property
    def prefix(self) -> str:
        return f"{self.service}[{self.slot}] {self.stream}|"


#: Control characters a worker's output may not put on a terminal or into a text log: C0
#: but tab and newline (lines never hold one; a batch joins lines with it), DEL and C1. A
#: ``\r`` or an ANSI escape would let a worker's line pass for the supervisor's own.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7f, 0xa0))
            if code not in (0x09, 0x0a)}


def printable(text: str) -> str:
    """``text`` with its control characters shown as ``\\xNN``."""
    return text.translate(_ESCAPES)


def decode_line(line: bytes) -> str:
    """A captured line as text for a log: UTF-8 (bad bytes replaced), controls escaped."""
    return printable(line.decode("utf-8", "replace"))


class OutputSink(Protocol):
    """Where captured lines go; called from the sink thread only."""

    def write(self, source: OutputSource, lines: list[bytes], when: float) -> None:
        """Complete lines (without their newline), read at wall-clock time ``when``."""

    def dropped(self, service: str, lines: int, when: float) -> None:
        """``lines`` of ``service``'s output were dropped since the last call."""


class LoggingSink:
    """The default (the Python API): every line onto the supervisor's own stdout or stderr,
    as the worker wrote it after one prefix, ``name[i] out| text``.

    Not through ``logging``: a handler's format would put a second timestamp and a level of
    ours before the app's own line (which often has both). Set ``output.sink`` to send the
    lines elsewhere."""

    def write(self, source: OutputSource, lines: list[bytes], when: float) -> None:
        stream = sys.stdout if source.stream == "out" else sys.stderr
        stream.write("".join(f"{source.prefix} {decode_line(line)}\n"
                             for line in lines))
        stream.flush()

    def dropped(self, service: str, lines: int, when: float) -> None:
        log.warning("%s: %d output lines dropped (written faster than they could be logged)",
                    service, lines)


@dataclass(eq=False, slots=True)
class _Pipe:
    fd: int
    source: OutputSource
    partial: bytes = b""
    announces: bool = False  # a crash pipe whose first line is still to come


class OutputCapture:
    def __init__(self, private_fds: PrivateFds, sink: OutputSink | None = None,
                 budget: int = BUDGET) -> None:
        self.sink: OutputSink = sink or LoggingSink()
        self._private_fds = private_fds
        self._budget = budget
        self._lock = threading.Condition()
        self._pending: deque[tuple[OutputSource, bytes, float]] = deque()
        self._pending_bytes = 0
        self._attaching: list[_Pipe] = []
        self._dropped: dict[str, int] = {}
        self._reported: dict[str, int] = {}
        self._closing = False
        self._reading_done = False
        self._wake_r = self._wake_w = -1
        self._reader: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        #: Called with (pid, signal number) when a worker's crash pipe names a fatal signal.
        self.on_fatal_signal: Callable[[int, int], None] | None = None

    # -- loop side ------------------------------------------------------------------------------
    def open(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._private_fds.add(self._wake_r)
        self._private_fds.add(self._wake_w)
        self._reader = threading.Thread(target=self._read_all, name="janus-mp-output-reader",
                                        daemon=True)
        self._writer = threading.Thread(target=self._write_all, name="janus-mp-output-sink",
                                        daemon=True)
        self._reader.start()
        self._writer.start()

    def attach(self, service: str, slot: int, pid: int, read_fds: dict[str, int]) -> None:
        """Start reading a new worker's pipes (they are registered as private at once)."""
        pipes = []
        sources: dict[str, OutputSource] = {}  # the crash pipe's lines are shown as stderr's
        for stream, fd in read_fds.items():
            self._private_fds.add(fd)
            crash = stream == CRASH
            shown = "err" if crash else stream
            source = sources.get(shown)
            if source is None:
                source = sources[shown] = OutputSource(service, slot, pid, shown)
            pipes.append(_Pipe(fd, source, announces=crash))
        if self._reader is None:  # not open (a bare Processes user): nobody reads, close
            for pipe in pipes:
                self._close_pipe(pipe)
            return
        with self._lock:
            self._attaching.extend(pipes)
            self._dropped.setdefault(service, 0)  # the metric shows 0, not nothing
        self._wake()

    def dropped_lines(self) -> dict[str, int]:
        """Lines dropped so far, by service."""
        with self._lock:
            return dict(self._dropped)

    def close(self, grace: float = CLOSE_GRACE) -> None:
        """Read what exited workers left in their pipes (``grace`` at most), hand it to the
        sink, then stop both threads."""
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            return
        self._reader = self._writer = None
        deadline = time.monotonic() + grace
        self._closing = True
        self._wake()
        reader.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            self._reading_done = True
            self._lock.notify_all()
        writer.join(max(deadline - time.monotonic(), 0.0))
        for fd in (self._wake_r, self._wake_w):
            self._private_fds.discard(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- reader thread -------------------------------------------------------------------------
    def _read_all(self) -> None:
        # A bare epoll and a dict by fd: a selector would also keep a SelectorKey per pipe
        # (~80 bytes each, three per worker, for as long as the worker lives).
        epoll = select.epoll()
        pipes: dict[int, _Pipe] = {}
        epoll.register(self._wake_r, select.EPOLLIN)
        try:
            self._select(epoll, pipes)
        finally:
            for pipe in pipes.values():
                self._close_pipe(pipe)
            epoll.close()

    def _select(self, epoll: select.epoll, pipes: dict[int, _Pipe]) -> None:
        deadline: float | None = None
        while True:
            if self._closing and deadline is None:
                deadline = time.monotonic() + CLOSE_GRACE
            with self._lock:
                attaching, self._attaching = self._attaching, []
            for new in attaching:
                epoll.register(new.fd, select.EPOLLIN)
                pipes[new.fd] = new
            if deadline is not None and not pipes:
                return  # closing, and every pipe reached its EOF
            timeout = -1.0 if deadline is None else max(deadline - time.monotonic(), 0.0)
            if timeout == 0.0:
                return
            try:
                ready = epoll.poll(timeout)
            except InterruptedError:
                continue
            for fd, _events in ready:
                if fd == self._wake_r:
                    with contextlib.suppress(OSError):
                        while os.read(self._wake_r, 4096):
                            pass
                    continue
                pipe = pipes.get(fd)
                if pipe is None:
                    continue  # closed earlier in this batch
                try:
                    data = os.read(pipe.fd, READ_SIZE)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    self._take(pipe, data)
                else:
                    if pipe.partial:  # a last line without its newline
                        self._queue(pipe.source, pipe.partial + b"\n")
                        pipe.partial = b""
                    epoll.unregister(pipe.fd)
                    del pipes[pipe.fd]
                    self._close_pipe(pipe)

    def _take(self, pipe: _Pipe, data: bytes) -> None:
        """Queue the complete lines; keep the unfinished one (cut at MAX_LINE)."""
        if pipe.partial:
            data = pipe.partial + data
        end = data.rfind(b"\n") + 1
        rest = data[end:]
        while len(rest) >= MAX_LINE:
            self._queue(pipe.source, data[:end] + rest[:MAX_LINE] + b"\n")
            data, end, rest = b"", 0, rest[MAX_LINE:]
        pipe.partial = rest
        if end and pipe.announces:
            pipe.announces = False
            signum = fatal_signal(data[:data.find(b"\n")])
            if signum is not None and self.on_fatal_signal is not None:
                self.on_fatal_signal(pipe.source.pid, signum)
        if end:
            self._queue(pipe.source, data[:end])

    def _queue(self, source: OutputSource, chunk: bytes) -> None:
        with self._lock:
            if self._pending_bytes + len(chunk) > self._budget:
                self._dropped[source.service] = (self._dropped.get(source.service, 0)
                                                 + chunk.count(b"\n"))
                return
            self._pending.append((source, chunk, time.time()))
            self._pending_bytes += len(chunk)
            self._lock.notify()

    def _close_pipe(self, pipe: _Pipe) -> None:
        self._private_fds.close(pipe.fd)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"w")

    # -- sink thread ---------------------------------------------------------------------------
    def _write_all(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._reading_done:
                    self._lock.wait()
                if not self._pending and self._reading_done:
                    return
                batch, self._pending = self._pending, deque()
                self._pending_bytes = 0
                lost = {service: count - self._reported.get(service, 0)
                        for service, count in self._dropped.items()
                        if count > self._reported.get(service, 0)}
                self._reported.update(self._dropped)
            for source, lines, when in _by_source(batch):
                try:
                    self.sink.write(source, lines, when)
                except Exception:  # a broken sink must not end the capture
                    log.exception("writing captured output of %s failed", source.prefix)
            for service, count in lost.items():
                with contextlib.suppress(Exception):
                    self.sink.dropped(service, count, time.time())


def _by_source(batch: deque[tuple[OutputSource, bytes, float]]
               ) -> Iterator[tuple[OutputSource, list[bytes], float]]:
    """Consecutive chunks of one pipe as one list of lines (fewer sink calls)."""
    source: OutputSource | None = None
    lines: list[bytes] = []
    when = 0.0
    size = 0
    for item_source, chunk, item_when in batch:
        if source is not None and (item_source != source or size >= _GROUP):
            yield source, lines, when
            lines, size = [], 0
        size += len(chunk)
        source, when = item_source, item_when
        parts = chunk[:-1].split(b"\n")
        if len(chunk) > MAX_LINE:  # may hold a line too long to keep whole
            parts = [part[i:i + MAX_LINE] for part in parts
                     for i in range(0, max(len(part), 1), MAX_LINE)]
        lines.extend(parts)
    if source is not None:
        yield source, lines, when


class OutputDropsCollector:
    """``janus_supervisor_log_lines_dropped_total{service}`` for /metrics."""

    def __init__(self, capture: OutputCapture) -> None:
        self._capture = capture

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily("janus_supervisor_log_lines_dropped",
                                     "Lines of workers' output dropped because they were "
                                     "written faster than the supervisor could log them.",
                                     labels=["service"])
        for service, count in sorted(self._capture.dropped_lines().items()):
            family.add_metric([service], count)
        yield family
