"""Helpers that scenario scripts (run inside the supervisor process tree) import."""

from __future__ import annotations

import os
import time


def record(*words: object) -> None:
    """Append one event line for the test to read: atomic with O_APPEND for short lines."""
    line = " ".join(str(w) for w in words) + "\n"
    fd = os.open(os.environ["JANUS_TEST_EVENTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def started(ctx: object) -> None:
    record("start", ctx.service, ctx.index, ctx.generation, os.getpid(),  # type: ignore[attr-defined]
           time.monotonic())
