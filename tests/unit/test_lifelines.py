"""A service's lifeline: cutting it is end-of-file for every reader at once; a new worker is
told which ends to close; a service started again gets a new one."""

from __future__ import annotations

import os
import select

from janus_mp.runtime.lifelines import Lifelines


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_cutting_a_lifeline_is_end_of_file_for_its_readers_only():
    lines = Lifelines()
    try:
        lines.open("a")
        lines.open("b")
        a, b = lines.read_end("a"), lines.read_end("b")
        assert a is not None and b is not None
        reader = os.dup(a)  # a worker's copy
        assert not readable(reader)
        assert lines.cut("a") and lines.is_cut("a") and not lines.is_cut("b")
        assert readable(reader) and os.read(reader, 1) == b""  # end of file
        assert not readable(b)
        assert lines.read_end("a") is None  # a worker forked now has nothing to wait for
        os.close(reader)
    finally:
        lines.close()


def test_a_new_worker_closes_every_write_end_and_the_other_services_read_ends():
    lines = Lifelines()
    try:
        lines.open("a")
        lines.open("b")
        own = lines.read_end("a")
        closing = lines.fds_except("a")
        assert own not in closing and lines.read_end("b") in closing
        assert len(closing) == 3  # b's read end, both write ends
        lines.cut("b")
        assert len(lines.fds_except("a")) == 2  # b's write end is closed already
    finally:
        lines.close()


def test_a_service_started_again_gets_a_fresh_lifeline():
    lines = Lifelines()
    try:
        lines.open("a")
        old = os.dup(lines.read_end("a"))
        lines.cut("a")
        lines.open("a")
        assert not lines.is_cut("a") and lines.read_end("a") is not None
        assert not readable(lines.read_end("a"))
        assert readable(old)
        os.close(old)
    finally:
        lines.close()
    assert not lines.fds_except("x")
