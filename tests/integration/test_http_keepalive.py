"""Persistent connections of the WSGI engine, over real sockets against a real supervisor:
requests one after another and pipelined on one connection (RFC 9112 §9.3), answered in
order and never read out of step, idle connections parked off the request threads until
``keepalive`` seconds pass, and one request per connection for a single-threaded worker."""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import threading
import time

import pytest

from tests.harness import SupervisorProcess
from tests.http_client import get
from tests.support import wait_until

pytestmark = [pytest.mark.timeout(90), pytest.mark.shares_supervisor]

SCENARIO = """
from janus_mp import *
from tests.http_apps import conformance_app
CONFIG = SupervisorConfig(shutdown_timeout=10.0, kill_timeout=2.0, metrics_port=0)

def build(sup):
    sup.spawn_service(ApiModuleAdapter(conformance_app, bind="127.0.0.1:0", name="ka",
                                       threads=2, keepalive=60.0),
                      SpawnOptions(workers=1))
    sup.spawn_service(ApiModuleAdapter(conformance_app, bind="127.0.0.2:0", name="brief",
                                       threads=2, keepalive=0.5),
                      SpawnOptions(workers=1))
    sup.spawn_service(ApiModuleAdapter(conformance_app, bind="127.0.0.3:0", name="single",
                                       threads=1, keepalive=60.0),
                      SpawnOptions(workers=1))
    sup.spawn_service(ApiModuleAdapter(conformance_app, bind="127.0.0.4:0", name="off",
                                       threads=2, keepalive=0),
                      SpawnOptions(workers=1))
    sup.spawn_service(ApiModuleAdapter(conformance_app, bind="127.0.0.5:0", name="drain",
                                       threads=2, keepalive=60.0),
                      SpawnOptions(workers=1, stop_timeout=30.0))
    sup.spawn_service(ApiModuleAdapter(conformance_app, bind="127.0.0.6:0", name="busy",
                                       threads=2, keepalive=60.0),
                      SpawnOptions(workers=1))
    sup.spawn_service(ApiModuleAdapter(conformance_app, bind="127.0.0.7:0", name="watched",
                                       threads=2, keepalive=60.0),
                      SpawnOptions(workers=1, watchdog_timeout=1.0))
"""

SERVICES = ("ka", "brief", "single", "off", "drain", "busy", "watched")


@pytest.fixture(scope="module")
def sup(tmp_path_factory):
    with SupervisorProcess(tmp_path_factory.mktemp("keepalive"), SCENARIO) as process:
        wait_until(lambda: all(process.service(name)["ready"] == 1 for name in SERVICES),
                   timeout=20)
        yield process


def _address(sup: SupervisorProcess, service: str) -> tuple[str, int]:
    host, _, port = sup.listening(service)[0].rpartition(":")
    return host, int(port)


class _Unclosable(io.BytesIO):
    def close(self) -> None:  # http.client closes its file after each body: keep reading
        pass


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.file = _Unclosable(data)

    def makefile(self, mode: str) -> io.BytesIO:
        return self.file


def responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split what a connection received into responses, by their own framing (http.client
    reads each one's Content-Length or chunks and stops there)."""
    stream = _Bytes(data)
    out = []
    while stream.file.tell() < len(data):
        response = http.client.HTTPResponse(stream)  # type: ignore[arg-type]
        response.begin()
        out.append((response.status, {k.lower(): v for k, v in response.getheaders()},
                    response.read()))
    return out


def _read_until_closed(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def _read_one(conn: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response of a connection that stays open (a Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", data).group(1))
    while len(data.partition(b"\r\n\r\n")[2]) < length:
        chunk = conn.recv(65536)
        assert chunk, f"closed inside the body: {data!r}"
        data += chunk
    [answer] = responses(data)
    return answer


def _get(path: str, extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


def test_requests_follow_each_other_on_one_connection(sup):
    host, port = _address(sup, "ka")
    client = http.client.HTTPConnection(host, port, timeout=10)
    try:
        ports = set()
        for i in range(5):
            client.request("POST", f"/r{i}", body=b"x" * i)
            response = client.getresponse()
            seen = json.loads(response.read())
            assert response.status == 200 and response.getheader("Connection") is None
            assert (seen["PATH_INFO"], seen["body"]) == (f"/r{i}", "x" * i)
            ports.add(seen["REMOTE_PORT"])
        assert len(ports) == 1  # one connection served all five
    finally:
        client.close()


def test_pipelined_requests_are_answered_in_order(sup):
    with socket.create_connection(_address(sup, "ka"), timeout=10) as conn:
        conn.sendall(_get("/a") +
                     b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nx=1" +
                     b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\n" +
                     _get("/d", b"Connection: close\r\n"))
        answers = responses(_read_until_closed(conn))
    seen = [json.loads(body) for _, _, body in answers]
    assert [(s["PATH_INFO"], s["body"]) for s in seen] == \
        [("/a", ""), ("/b", "x=1"), ("/c", "hello"), ("/d", "")]
    assert [headers.get("connection") for _, headers, _ in answers] == \
        [None, None, None, "close"]


def test_a_malformed_pipelined_request_ends_the_connection_after_the_good_ones(sup):
    with socket.create_connection(_address(sup, "ka"), timeout=10) as conn:
        conn.sendall(_get("/a") + _get("/b", b"Content-Length: 1\r\nContent-Length: 2\r\n") +
                     _get("/c"))
        answers = responses(_read_until_closed(conn))
    assert [status for status, _, _ in answers] == [200, 400]
    assert json.loads(answers[0][2])["PATH_INFO"] == "/a"
    assert answers[1][1]["connection"] == "close"


@pytest.mark.parametrize("body_at_once", [True, False])
def test_a_body_the_app_did_not_read_is_never_read_as_a_request(sup, body_at_once):
    """The body carries a request line: read whole and framed by llhttp, it is skipped as a
    body (the connection may stay); still arriving when the app answered, the connection
    closes (nothing after it is read). Either way /smuggled is never served."""
    smuggled = _get("/smuggled")
    head = (b"POST /ignore-body HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            % len(smuggled))
    with socket.create_connection(_address(sup, "ka"), timeout=10) as conn:
        if body_at_once:
            conn.sendall(head + smuggled + _get("/after", b"Connection: close\r\n"))
            answers = responses(_read_until_closed(conn))
        else:
            conn.sendall(head)
            status, headers, body = _read_one(conn)
            assert (status, body, headers["connection"]) == (200, b"ignored\n", "close")
            try:
                conn.sendall(smuggled)
            except OSError:
                pass  # closed already
            answers = [(status, headers, body)] + responses(_read_until_closed(conn))
    assert answers[0][:1] == (200,) and answers[0][2] == b"ignored\n"
    paths = [json.loads(body)["PATH_INFO"] for _, _, body in answers[1:]]
    assert paths == (["/after"] if body_at_once else [])


def test_a_malformed_streamed_chunked_body_closes_the_connection(sup):
    """Past the part read before the app runs, a chunked body streams to the app: a framing
    error then reaches the app as an error from wsgi.input, the client gets 400 and the
    connection closes — the request pipelined after it is not read."""
    chunk = b"a" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20)) + b"ZZ\r\n\r\n"
    raw = (b"POST /swallow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body +
           _get("/after"))
    with socket.create_connection(_address(sup, "ka"), timeout=20) as conn:
        sender = threading.Thread(target=lambda: _send_quietly(conn, raw))
        sender.start()
        data = _read_until_closed(conn)
        sender.join(20)
    answers = responses(data)
    assert [status for status, _, _ in answers] == [400]
    assert answers[0][1]["connection"] == "close"


def _send_quietly(conn: socket.socket, data: bytes) -> None:
    try:
        conn.sendall(data)
    except OSError:
        pass  # the server closed after its answer: the rest is not read


def _busy(sup: SupervisorProcess, service: str) -> str | None:
    text = get(f"127.0.0.1:{sup.request('port')}", "/metrics")[2].decode()
    match = re.search(rf'janus_http_busy_workers\{{service="{service}"\}} (\S+)', text)
    return match.group(1) if match else None


def test_idle_connections_do_not_hold_request_threads(sup):
    """Ten idle persistent connections on a worker of two request threads (keepalive 60 s):
    no thread is held, a new client is served at once, and every idle connection still
    serves its next request."""
    address = _address(sup, "ka")
    idle = []
    try:
        for _ in range(10):
            conn = socket.create_connection(address, timeout=10)
            idle.append(conn)
            conn.sendall(_get("/first"))
            status, headers, _ = _read_one(conn)
            assert status == 200 and "connection" not in headers
        wait_until(lambda: _busy(sup, "ka") == "0.0", message="no request thread held")
        status, _, body = get(f"{address[0]}:{address[1]}", "/new", timeout=10)
        assert status == 200 and json.loads(body)["PATH_INFO"] == "/new"
        for conn in idle:
            conn.sendall(_get("/again"))
            status, _, body = _read_one(conn)
            assert status == 200 and json.loads(body)["PATH_INFO"] == "/again"
    finally:
        for conn in idle:
            conn.close()


def test_an_idle_connection_is_closed_after_keepalive(sup):
    with socket.create_connection(_address(sup, "brief"), timeout=20) as conn:
        asked = time.monotonic()  # the server parks the connection after this
        conn.sendall(_get("/"))
        status, headers, _ = _read_one(conn)
        assert status == 200 and "connection" not in headers
        assert conn.recv(1) == b""  # the server closed it, without a word
        assert time.monotonic() - asked >= 0.45  # not before keepalive (0.5 s) passed


@pytest.mark.parametrize("service", ["single", "off"])
def test_one_thread_or_keepalive_off_is_one_request_per_connection(sup, service):
    with socket.create_connection(_address(sup, service), timeout=10) as conn:
        conn.sendall(_get("/a") + _get("/b"))
        answers = responses(_read_until_closed(conn))
    assert [(status, headers["connection"]) for status, headers, _ in answers] == \
        [(200, "close")]


def test_http10_keep_alive_and_connection_close(sup):
    with socket.create_connection(_address(sup, "ka"), timeout=10) as conn:
        for path in ("/one", "/two"):
            conn.sendall(b"GET " + path.encode() + b" HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, body = _read_one(conn)
            assert (status, headers["connection"]) == (200, "keep-alive")
            assert json.loads(body)["PATH_INFO"] == path
        conn.sendall(b"GET /plain HTTP/1.0\r\n\r\n")  # HTTP/1.0 without keep-alive: closes
        answers = responses(_read_until_closed(conn))
    assert [(s, h["connection"]) for s, h, _ in answers] == [(200, "close")]
    with socket.create_connection(_address(sup, "ka"), timeout=10) as conn:
        conn.sendall(_get("/bye", b"Connection: close\r\n") + _get("/never"))
        answers = responses(_read_until_closed(conn))
    assert [(s, h["connection"]) for s, h, _ in answers] == [(200, "close")]


def test_a_stop_closes_parked_connections_at_once(sup):
    """A worker asked to stop closes its idle connections (keepalive 60 s) and exits by
    itself, well inside its 30 s stop timeout."""
    conns = [socket.create_connection(_address(sup, "drain"), timeout=25) for _ in range(3)]
    try:
        for conn in conns:
            conn.sendall(_get("/"))
            assert _read_one(conn)[0] == 200
        wait_until(lambda: _busy(sup, "drain") == "0.0", message="all three parked")
        began = time.monotonic()
        sup.request("stop", service="drain")
        for conn in conns:
            assert conn.recv(1) == b""
        assert time.monotonic() - began < 20  # not the 60 s keepalive, nor the stop timeout
        exit_ = wait_until(lambda: sup.exits("drain"), timeout=20)[0]
        assert "SIG" not in exit_["reason"], exit_  # it left by itself, nobody killed it
    finally:
        for conn in conns:
            conn.close()


def test_kept_connections_do_not_starve_a_new_one(sup):
    """Four clients keep both request threads busy for good (0.2 s requests back to back on
    persistent connections). A fifth client, waiting in the listen backlog, is still served
    (the poller accepts while fewer requests wait than there are threads, and a saturated
    worker closes a kept connection rather than keep a newcomer waiting)."""
    address = _address(sup, "busy")
    stop = threading.Event()

    def hammer() -> None:
        client = http.client.HTTPConnection(*address, timeout=20)
        try:
            while not stop.is_set():
                client.request("GET", "/sleep?0.2")
                client.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass  # the test is over
        finally:
            client.close()

    clients = [threading.Thread(target=hammer) for _ in range(4)]
    try:
        for thread in clients:
            thread.start()
        wait_until(lambda: _busy(sup, "busy") == "2.0", message="both threads busy")
        status, _, body = get(f"{address[0]}:{address[1]}", "/newcomer", timeout=20)
        assert status == 200 and json.loads(body)["PATH_INFO"] == "/newcomer"
    finally:
        stop.set()
        for thread in clients:
            thread.join(30)


def test_a_saturated_worker_closes_a_kept_connection_while_a_client_waits(sup):
    """Two requests hold both threads (their apps wait for a body byte we hold back); two
    more connections fill the work queue (as many as threads), so a fifth waits in the listen
    backlog. The first request's response then says Connection: close: its client reconnects
    behind the waiting one, and everyone is served."""
    address = _address(sup, "busy")
    wait_until(lambda: _busy(sup, "busy") == "0.0", message="the previous test's load gone")
    held = b"POST /first-byte HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n%s\r\n"
    conns = [socket.create_connection(address, timeout=30) for _ in range(2)]
    try:
        conns[0].sendall(held % b"")  # this one leaves the choice to the server
        conns[1].sendall(held % b"Connection: close\r\n")
        wait_until(lambda: _busy(sup, "busy") == "2.0", message="both threads held")
        for path in ("/queued-1", "/queued-2", "/waiting"):
            conns.append(socket.create_connection(address, timeout=30))
            conns[-1].sendall(_get(path, b"Connection: close\r\n"))
        conns[0].sendall(b"a")
        [(status, headers, body)] = responses(_read_until_closed(conns[0]))
        assert (status, headers["connection"], body) == (200, "close", b"app ran, first byte a\n")
        conns[1].sendall(b"b")
        for conn in conns[1:]:  # everyone is served in the end
            assert [answer[0] for answer in responses(_read_until_closed(conn))] == [200]
    finally:
        for conn in conns:
            conn.close()


class _Answers:
    """The responses of one connection, read one at a time by their own framing."""

    class _Unclosing(io.BufferedReader):
        def close(self) -> None:  # http.client closes it after each body: keep reading
            pass

    def __init__(self, conn: socket.socket) -> None:
        self.file = self._Unclosing(socket.SocketIO(conn, "rb"))

    def makefile(self, mode: str) -> io.BufferedReader:
        return self.file

    def next(self) -> tuple[int, dict[str, str], bytes]:
        response = http.client.HTTPResponse(self)  # type: ignore[arg-type]
        response.begin()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())


def _random_request(rng, path: str) -> tuple[bytes, bytes]:
    body = bytes(rng.randrange(97, 123) for _ in range(rng.randint(1, 300)))
    kind = rng.choice(["get", "length", "chunked"])
    if kind == "get":
        return _get(path), b""
    if kind == "length":
        return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                % (path.encode(), len(body)) + body), body
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x;n=1\r\n%s\r\n0\r\n\r\n" % (path.encode(), len(body), body)), body


def test_many_clients_pipelining_at_random_never_get_an_answer_out_of_step(sup):
    """Eight clients, each on a persistent connection, send batches of 1 to 4 pipelined
    requests (GET, Content-Length and chunked bodies, chosen by a fixed seed) to a worker of
    two threads: every answer is the echo of the request in its place. When an answer closes
    the connection (a saturated worker makes room for a newcomer), the requests it left
    unanswered were not served and are sent again on a new connection, as clients do."""
    import random

    address = _address(sup, "ka")
    failures: list[str] = []
    closes = [0]

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = socket.create_connection(address, timeout=20)
        try:
            for batch in range(12):
                todo = [_random_request(rng, f"/c{seed}/b{batch}/r{i}") + (f"/c{seed}/b{batch}/r{i}",)
                        for i in range(rng.randint(1, 4))]
                while todo:
                    conn.sendall(b"".join(wire for wire, _, _ in todo))
                    answers = _Answers(conn)
                    while todo:
                        status, headers, answer = answers.next()
                        _, body, path = todo.pop(0)
                        seen = json.loads(answer)
                        if (status, seen["PATH_INFO"], seen["body"]) != (200, path,
                                                                         body.decode()):
                            failures.append(f"{path}: got {status} {seen['PATH_INFO']}")
                            return
                        if headers.get("connection") == "close":
                            closes[0] += 1
                            conn.close()
                            conn = socket.create_connection(address, timeout=20)
                            break
        except Exception as exc:  # reported below, with the client it happened to
            failures.append(f"client {seed}: {exc!r}")
        finally:
            conn.close()

    clients = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(60)
    assert failures == []


def test_a_worker_with_idle_connections_keeps_feeding_its_watchdog(sup):
    """Idle connections parked for several 1 s watchdog periods: the worker is not taken for
    stuck (its poller beats while it waits), and the connection still serves."""
    with socket.create_connection(_address(sup, "watched"), timeout=10) as conn:
        conn.sendall(_get("/"))
        assert _read_one(conn)[0] == 200
        with pytest.raises(AssertionError):  # nobody exits within three watchdog periods
            wait_until(lambda: sup.exits("watched"), timeout=3.0)
        conn.sendall(_get("/later"))
        status, _, body = _read_one(conn)
        assert status == 200 and json.loads(body)["PATH_INFO"] == "/later"


def test_an_upgrade_request_is_answered_as_http_and_ends_the_connection(sup):
    """No protocol switch here (RFC 9110 §7.8 lets a server ignore Upgrade): the request is
    served as HTTP/1.1, and since what follows it on the wire may be another protocol, the
    connection closes — the bytes after it are not read as a request."""
    with socket.create_connection(_address(sup, "ka"), timeout=10) as conn:
        conn.sendall(_get("/up", b"Connection: Upgrade\r\nUpgrade: websocket\r\n") +
                     _get("/after"))
        answers = responses(_read_until_closed(conn))
    assert [(s, h["connection"], json.loads(b)["PATH_INFO"]) for s, h, b in answers] == \
        [(200, "close", "/up")]


def test_expect_100_continue_on_a_kept_connection(sup):
    """The interim 100 goes out when the app reads; the body read whole, the connection is
    kept and serves the next request."""
    with socket.create_connection(_address(sup, "ka"), timeout=10) as conn:
        conn.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += conn.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(b"hello")
        status, headers, body = _read_one(conn)
        assert (status, json.loads(body)["body"]) == (200, "hello")
        assert "connection" not in headers
        conn.sendall(_get("/next"))
        status, _, body = _read_one(conn)
        assert status == 200 and json.loads(body)["PATH_INFO"] == "/next"
