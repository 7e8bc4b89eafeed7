"""The control socket's limits over real unix sockets, against a server whose handler streams
or answers at once: followers are capped and never take one-shot commands' places, a client
that stops reading is dropped, a request must arrive whole within the deadline, and JSON nested
too deep is refused in one line."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from janus_mp.app import control, control_wire
from janus_mp.app.control import ControlServer, StreamReply
from tests.support import wait_until

pytestmark = pytest.mark.timeout(120)


class Handler:
    """``status`` answers at once; ``events`` streams until closed (big items, as fast as
    the socket takes them, when ``flood``)."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.open_streams = 0
        self.lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Any:
        if request["command"] == "status":
            return {"state": "running"}
        if request["command"] == "history":
            return StreamReply(iter([{"n": 1}, {"n": 2}]), lambda: None, finite=True)
        if request["command"] == "tail":  # a result first, as `logs -f` answers
            return StreamReply(iter([None, {"lines": ["c"]}]), self.closed.set,
                               first=["a", "b"])
        if request["command"] == "events":
            flood = bool(request.get("flood"))
            stop = threading.Event()
            with self.lock:
                self.open_streams += 1

            def items() -> Iterator[Any]:
                while not stop.is_set():
                    if flood:
                        yield {"line": "x" * 4096}
                    else:
                        stop.wait(0.2)
                        yield None

            def close() -> None:
                stop.set()
                with self.lock:
                    self.open_streams -= 1
                self.closed.set()

            return StreamReply(items(), close)
        raise ValueError(f"unknown command {request['command']!r}")


@pytest.fixture
def server(tmp_path):
    handler = Handler()
    srv = ControlServer(str(tmp_path / "ctl.sock"), handler)
    srv.start()
    yield srv, handler
    srv.stop()


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(path)
    return sock


def test_followers_are_capped_and_one_shot_commands_still_answer(server):
    srv, handler = server
    followers = []
    try:
        for _ in range(control.MAX_CONNECTIONS):  # as many as there are connection places
            sock = _connect(srv.path)
            sock.sendall(b'{"command": "events", "follow": true}\n')
            followers.append((sock, sock.makefile("rb")))
        replies = [json.loads(reader.readline()) for _sock, reader in followers]
        accepted = [r for r in replies if r.get("ok")]
        refused = [r for r in replies if not r.get("ok")]
        assert len(accepted) == control.MAX_FOLLOWERS
        assert {r["error"] for r in refused} == \
            {f"too many followers ({control.MAX_FOLLOWERS}): try again later"}
        wait_until(lambda: handler.open_streams == control.MAX_FOLLOWERS, timeout=10)
        # Every follower place is taken, and still: one-shot commands answer at once, a stream
        # that ends by itself (`events` without -f) among them.
        for _ in range(5):
            assert control.call(srv.path, "status", timeout=5) == {"state": "running"}
        assert list(control.follow(srv.path, "history", timeout=5)) == [None, {"n": 1},
                                                                         {"n": 2}]
    finally:
        for sock, reader in followers:
            reader.close()
            sock.close()
    wait_until(lambda: handler.open_streams == 0, timeout=20, message="streams closed")


def test_a_stream_opens_with_its_result_then_sends_its_items_and_closes(server):
    srv, handler = server
    sock = _connect(srv.path)
    try:
        sock.sendall(b'{"command": "tail"}\n')
        reader = sock.makefile("rb")
        assert json.loads(reader.readline()) == {"ok": True, "result": ["a", "b"],
                                                 "stream": True}
        assert json.loads(reader.readline()) == {"lines": ["c"]}
        assert reader.readline() == b""  # the items ended: so did the connection
        assert handler.closed.wait(10)
        reader.close()
    finally:
        sock.close()
    assert list(control.follow(srv.path, "tail", timeout=5)) == [["a", "b"], {"lines": ["c"]}]


def test_a_follower_that_never_reads_is_dropped(server, monkeypatch):
    srv, handler = server
    monkeypatch.setattr(control, "SEND_DEADLINE", 0.5)
    sock = _connect(srv.path)
    try:
        sock.sendall(b'{"command": "events", "follow": true, "flood": true}\n')
        # Never reads: the server's sends fill the socket, then block; it gives up.
        assert handler.closed.wait(30), "the stream to a client that never reads was not closed"
        assert control.call(srv.path, "status", timeout=5) == {"state": "running"}
    finally:
        sock.close()


def test_a_request_must_arrive_whole_within_the_deadline(server):
    srv, _handler = server
    clients = [_connect(srv.path) for _ in range(70)]  # more than the connection places
    stop = threading.Event()

    def drip() -> None:
        """One byte a client every 0.3 s: a per-read deadline never fires for them."""
        while not stop.wait(0.3):
            for sock in clients:
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        for _ in range(5):
            assert control.call(srv.path, "status", timeout=15) == {"state": "running"}
        stop.set()
        dripper.join(10)
        for sock in clients[:10]:  # the first ones were cut off, with a one-line reason
            sock.settimeout(15)
            reply = json.loads(sock.makefile("rb").readline())
            assert reply == {"ok": False, "error": "request not received in time"}
    finally:
        stop.set()
        for sock in clients:
            sock.close()


def test_deeply_nested_json_is_refused_in_one_line(server, caplog):
    srv, _handler = server
    caplog.set_level(logging.DEBUG, logger="janus_mp.control")
    for payload in (b"[" * 100_000, b'{"command": "status", "x": ' + b"[" * 50_000 + b"]" *
                    50_000 + b"}"):
        sock = _connect(srv.path)
        with sock:
            sock.sendall(payload[:control_wire.MAX_REQUEST - 1] + b"\n")
            reply = json.loads(sock.makefile("rb").readline())
        assert reply["ok"] is False
        assert reply["error"] == f"request nests deeper than {control_wire.MAX_NESTING} levels"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert control.call(srv.path, "status", timeout=5) == {"state": "running"}
