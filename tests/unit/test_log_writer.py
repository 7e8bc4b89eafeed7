"""The supervisor's log writer: log calls never wait on the stream; drops are counted and told."""

from __future__ import annotations

import logging
import threading
import uuid

from janus_mp.app.log_writer import LogDropsCollector, LogWriter
from tests.support import wait_until


class StalledStream(logging.Handler):
    """A target whose writes block until ``unblock`` is set, like a pipe nobody reads."""

    def __init__(self) -> None:
        super().__init__()
        self.unblock = threading.Event()
        self.entered = threading.Event()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        self.unblock.wait()
        self.lines.append(record.getMessage())


def _logger(writer: LogWriter) -> logging.Logger:
    logger = logging.getLogger(f"test.log_writer.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(writer)
    return logger


def test_a_stalled_stream_drops_counts_and_reports_once_writes_resume():
    stream = StalledStream()
    writer = LogWriter(stream, capacity=3)
    writer.start()
    logger = _logger(writer)
    try:
        logger.info("first")
        assert stream.entered.wait(5)  # the writer thread is now stuck in the stream
        for n in range(10):
            logger.warning("line %d", n)  # returns at once: 3 queued, 7 dropped
        assert writer.dropped == 7
        (family,) = LogDropsCollector(writer).collect()
        assert family.samples[0].value == 7
        stream.unblock.set()
        wait_until(lambda: len(stream.lines) == 5, timeout=5)
        assert stream.lines == ["first",
                                "7 log records dropped: the log was not written fast enough "
                                "(a stalled reader of stderr?)",
                                "line 0", "line 1", "line 2"]
        logger.info("later")
        wait_until(lambda: stream.lines[-1] == "later", timeout=5)
        assert writer.dropped == 7 and len(stream.lines) == 6  # reported once
    finally:
        stream.unblock.set()
        writer.stop()


def test_stop_flushes_and_then_writes_directly():
    stream = StalledStream()
    stream.unblock.set()
    writer = LogWriter(stream)
    writer.start()
    logger = _logger(writer)
    logger.info("queued")
    writer.stop()
    assert stream.lines == ["queued"]
    logger.info("after stop")  # no writer thread any more: written in the caller
    assert stream.lines == ["queued", "after stop"]


def test_stop_gives_up_on_a_stream_that_never_drains():
    stream = StalledStream()
    writer = LogWriter(stream, capacity=1)
    writer.start()
    logger = _logger(writer)
    logger.info("stuck")
    assert stream.entered.wait(5)
    logger.info("fills the queue")
    writer.stop(grace=0.05)  # returns: the queue is full and the writer stuck
    stream.unblock.set()
