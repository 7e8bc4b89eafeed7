"""The task transport's frames: a fixed struct header, then opaque bytes.

    ┌────────┬──────────┬──────────┬──────────────────────┐
    │ kind 1B│ task 8B  │ length 4B│ body (length bytes)  │   little-endian, no padding
    └────────┴──────────┴──────────┴──────────────────────┘

Bodies are pickles made by the submitting side and read only by the other end (the pool's
worker for a TASK, the submitter for a RESULT or RAISED): whoever routes frames — the pool's
dispatcher in the supervisor — reads headers, never bodies.
"""

from __future__ import annotations

import struct
from enum import IntEnum

HEADER = struct.Struct("<BQI")
#: A SUBMIT body starts with: timeout (< 0: none), retries, length of the pool's name.
SUBMIT_HEAD = struct.Struct("<dIH")
MAX_BODY = 2**32 - 1
#: What one recv asks for between frames. Asking for much more costs a fresh mmap'd buffer per
#: call (CPython allocates the whole size, glibc maps anything past 128 KiB): ~15 µs each.
RECV_SIZE = 1 << 16
#: The most one recv asks for while a large frame comes in.
RECV_SIZE_MAX = 1 << 24


class Kind(IntEnum):
    TASK = 1         # dispatcher → worker: run this (body: a pickled call)
    RESULT = 2       # worker → dispatcher: it returned (body: the pickled value)
    RAISED = 3       # worker → dispatcher: it raised (body: pickled exception + traceback)
    INTERRUPTED = 4  # worker → dispatcher: the cooperative stop reached it
    HELLO = 5        # worker → dispatcher: connected and ready for tasks
    BYE = 6          # worker → dispatcher: it runs nothing more (stopping, recycled)
    RETIRE = 7       # dispatcher → worker: enough tasks, have yourself recycled
    # between a hosted pool and the service workers that submit to it
    SUBMIT = 8       # submitter → supervisor: SUBMIT_HEAD, the pool's name, the pickled call
    CANCEL = 9       # submitter → supervisor, dispatcher → worker: cancel this task
    OUTCOME = 10     # supervisor → submitter: how a task ended without a result (JSON)


class FrameError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def frame(kind: Kind, task: int = 0, body: bytes = b"") -> bytes:
    if len(body) > MAX_BODY:
        raise FrameError(f"a frame body of {len(body)} bytes is over the 4 GiB limit")
    return HEADER.pack(kind, task, len(body)) + body


class FrameReader:
    """Bytes in, complete frames out (a peer's bytes may arrive cut anywhere)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Kind, int, bytes]]:
        buffer = self._buffer
        buffer += data
        frames: list[tuple[Kind, int, bytes]] = []
        start, size, header = 0, len(buffer), HEADER.size
        while size - start >= header:
            kind, task, length = HEADER.unpack_from(buffer, start)
            end = start + header + length
            if end > size:
                break
            try:
                frames.append((Kind(kind), task, bytes(buffer[start + header:end])))
            except ValueError:
                raise FrameError(f"unknown frame kind {kind}") from None
            start = end
        if start:
            del buffer[:start]
        return frames

    def wanted(self) -> int:
        """How much the next recv should ask for: the rest of a large frame that has begun
        arriving (so it comes in few calls), else RECV_SIZE."""
        buffer = self._buffer
        if len(buffer) < HEADER.size:
            return RECV_SIZE
        length: int = HEADER.unpack_from(buffer)[2]
        rest = HEADER.size + length - len(buffer)
        return min(max(rest, RECV_SIZE), RECV_SIZE_MAX)

    @property
    def pending(self) -> int:
        return len(self._buffer)
