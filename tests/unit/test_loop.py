"""The loop's cross-thread calls: queued only while the loop can run them, never lost."""

from __future__ import annotations

import threading
import time

from janus_mp.runtime.loop import Loop
from tests.support import wait_until


def test_a_call_from_another_thread_runs_in_the_loop_thread():
    loop = Loop(time.monotonic)
    loop.open()
    try:
        seen: list[int] = []
        caller = threading.Thread(target=lambda: seen.append(
            loop.call(threading.get_ident, timeout=5)))
        caller.start()
        deadline = time.monotonic() + 5
        while caller.is_alive() and time.monotonic() < deadline:
            loop.turn(lambda key: None)
            loop.call_at(time.monotonic() + 0.01, lambda: None)  # turn again soon
        caller.join(5)
        assert seen == [threading.get_ident()]
    finally:
        loop.close()


def test_calls_around_open_and_close_run_at_once_in_their_caller():
    loop = Loop(time.monotonic)
    assert loop.call(lambda: 1) == 1            # before open: the caller runs it
    loop.open()
    queued: list[str] = []
    waiter = threading.Thread(target=lambda: queued.append(loop.call(lambda: "ran")))
    waiter.start()
    wait_until(lambda: loop._calls, timeout=5)  # queued, not yet run
    loop.close()                                # a pending call is run by close, not lost
    waiter.join(5)
    assert queued == ["ran"]
    assert loop.call(lambda: 2) == 2            # after close: the caller runs it
