"""The loop's cross-thread calls: queued only while the loop can run them, never lost; an
fd watched for reading and writing at once; an outbox that never waits on its peer."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

from janus_mp.pools.outbox import Outbox
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


def test_an_outbox_sends_what_the_socket_did_not_take_as_the_peer_reads():
    loop = Loop(time.monotonic)
    loop.open()
    ours, peer = socket.socketpair()
    try:
        ours.setblocking(False)
        peer.setblocking(False)
        heard: list[bytes] = []
        loop.add_reader(ours, lambda: heard.append(ours.recv(100)))  # reads and writes, one fd
        box = Outbox(ours, _LoopCalls(loop), threading.RLock())
        frames = [os.urandom(3 << 20), b"second", os.urandom(1 << 20)]
        for data in frames:
            box.write(data)  # never waits for the peer
        assert 0 < box.waiting < sum(map(len, frames))
        got = bytearray()
        deadline = time.monotonic() + 10
        while len(got) < sum(map(len, frames)) and time.monotonic() < deadline:
            loop.call_at(time.monotonic() + 0.01, lambda: None)
            loop.turn(lambda key: None)
            with contextlib.suppress(BlockingIOError):
                while chunk := peer.recv(1 << 16):
                    got += chunk
        assert bytes(got) == b"".join(frames) and box.waiting == 0
        peer.sendall(b"hi")
        wait_until(lambda: loop.turn(lambda key: None) or heard, timeout=5)
        assert heard == [b"hi"]  # the reader outlived the writer
        peer.close()
        box.write(os.urandom(3 << 20))  # the peer is gone: dropped, no error
        assert box.broken and box.waiting == 0
        box.close()
    finally:
        ours.close()
        loop.close()


class _LoopCalls:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def call_soon(self, fn):
        self.loop.call(fn, wait=False)

    def add_writer(self, fileobj, callback):
        self.loop.add_writer(fileobj, callback)

    def remove_writer(self, fileobj):
        self.loop.remove_writer(fileobj)
