"""The supervisor's log, written by a thread of its own so that no log call ever blocks.

    any thread (the loop, control, http) --record--> bounded queue --> writer thread --> stderr
                                            | full: dropped, counted          or the log file

A log call formats its record and queues it without waiting: when the reader of stderr (a
pipe) stalls, only the writer thread blocks in ``write``; the loop goes on turning. Records
that find the queue full are dropped and counted; once the writer gets through again it first
logs how many were lost. The count is also served as ``janus_supervisor_log_records_dropped``.

A forked worker inherits this handler but not the writer thread: there, records are written
directly (a worker that shares a stalled stderr may block itself, never the supervisor).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily

#: Records waiting for the writer, at most; a burst beyond this is dropped.
CAPACITY = 10_000
#: Seconds ``stop()`` gives the writer to flush what is queued (stderr may never drain).
STOP_GRACE = 2.0

log = logging.getLogger("janus_mp.log")


class LogWriter(logging.handlers.QueueHandler):
    """Install as the root logger's only handler; ``target`` does the actual writing."""

    #: A worker removes it from its loggers first thing: the supervisor's log is not the
    #: app's, so an app's own ``logging.basicConfig`` in the worker takes effect.
    supervisor_only = True

    def __init__(self, target: logging.Handler, capacity: int = CAPACITY) -> None:
        self._records: queue.Queue[logging.LogRecord | None] = queue.Queue(capacity)
        super().__init__(self._records)
        self.target = target
        self._pid = os.getpid()
        self._dropped = 0
        self._reported = 0
        self._count_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def dropped(self) -> int:
        """Records lost so far because the queue was full."""
        return self._dropped

    def start(self) -> None:
        self._thread = threading.Thread(target=self._write, name="janus-mp-log-writer",
                                        daemon=True)
        self._thread.start()

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Write what is queued, waiting ``grace`` seconds at most; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            self._records.put(None, timeout=grace)
        except queue.Full:
            return  # the writer is stuck on a stalled stream: leave it, it is a daemon
        thread.join(grace)

    def emit(self, record: logging.LogRecord) -> None:
        if os.getpid() != self._pid or self._thread is None:
            self.target.handle(record)  # a forked worker, or not started / stopped: direct
            return
        super().emit(record)

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self._records.put_nowait(record)
        except queue.Full:
            with self._count_lock:
                self._dropped += 1

    def _write(self) -> None:
        while (record := self._records.get()) is not None:
            lost = self._dropped - self._reported
            if lost:
                self._reported += lost
                self.target.handle(log.makeRecord(
                    log.name, logging.WARNING, __file__, 0,
                    "%d log records dropped: the log was not written fast enough "
                    "(a stalled reader of stderr?)", (lost,), None))
            if record.levelno >= self.target.level:
                self.target.handle(record)


class LogDropsCollector:
    """``janus_supervisor_log_records_dropped_total`` from a :class:`LogWriter`."""

    def __init__(self, writer: LogWriter) -> None:
        self._writer = writer

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        yield CounterMetricFamily("janus_supervisor_log_records_dropped",
                                  "Log records the supervisor dropped because its log was not "
                                  "written fast enough.", value=self._writer.dropped)
