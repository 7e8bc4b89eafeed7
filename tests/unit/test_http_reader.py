"""The request reader on a socket pair, no server: pipelined requests split where llhttp ends
each message — whatever the recv boundaries —, a refusal kept to the message it was met in,
the HTTP/2 preface refused without waiting, a chunked body's framing checked before the app;
and the head checks of RFC 9110 on their own."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from janus_mp.adapters.http_head import HttpError, ParsedHead, check_head, check_trailer
from janus_mp.adapters.http_request import RequestReader
from janus_mp.adapters.http_settings import HttpSettings

SETTINGS = HttpSettings(header_timeout=30.0, body_timeout=30.0)


@contextmanager
def _reader(data: bytes, *, close: bool = True) -> Iterator[RequestReader]:
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(data)
        if close:
            theirs.shutdown(socket.SHUT_WR)
        yield RequestReader(ours, SETTINGS, io_timeout=30.0)
    finally:
        ours.close()
        theirs.close()


def _request(kind: str, path: str, body: bytes) -> bytes:
    if kind == "get":
        return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    if kind == "length":
        return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
                .encode() + body)
    chunks = b"".join(b"%x;e=1\r\n%s\r\n" % (len(body[i:i + 3]), body[i:i + 3])
                      for i in range(0, len(body), 3))
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + chunks + b"0\r\nX-T: 1\r\n\r\n")


_REQUESTS = st.lists(st.tuples(st.sampled_from(["get", "length", "chunked"]),
                               st.from_regex(r"/[a-z]{1,6}", fullmatch=True),
                               st.binary(max_size=40)), min_size=1, max_size=6)


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(requests=_REQUESTS, cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=12))
def test_pipelined_requests_are_split_where_each_ends_whatever_the_recv_boundaries(requests,
                                                                                  cuts):
    wire = b"".join(_request(kind, path, body) for kind, path, body in requests)
    ours, theirs = socket.socketpair()
    reader = RequestReader(ours, SETTINGS, io_timeout=30.0)
    try:
        # Handed to llhttp in pieces cut anywhere (as recv may return them), all before the
        # first request is served: any split must give the same requests.
        at = 0
        for cut in [*cuts, len(wire)]:
            reader._feed(wire[at:at + cut])
            at += cut
        theirs.shutdown(socket.SHUT_WR)
        seen = []
        for _ in requests:
            head = reader.read_head(time.monotonic())
            seen.append((head.method, head.path.decode(), reader.read()))
            assert reader.reusable
            reader.next_request()
        expected = [("GET" if kind == "get" else "POST", path, b"" if kind == "get" else body)
                    for kind, path, body in requests]
        assert seen == expected
        assert not reader.pending
    finally:
        ours.close()
        theirs.close()


def test_a_refusal_stays_with_the_request_it_was_met_in():
    with _reader(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"GET /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                 b"Content-Length: 2\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n") as reader:
        assert reader.read_head(time.monotonic()).path == b"/a"
        assert reader.read() == b"" and reader.reusable
        reader.next_request()
        assert reader.pending
        with pytest.raises(HttpError) as info:
            reader.read_head(time.monotonic())
        assert info.value.status == 400 and reader.unread  # nothing after it is looked at


def test_the_http2_preface_is_refused_without_waiting_for_more():
    with _reader(b"PRI * HTTP/2.0\r\n\r\n", close=False) as reader:  # the peer stays open
        with pytest.raises(HttpError) as info:
            reader.read_head(time.monotonic())
        assert info.value.status == 505 and reader.method == "PRI"


def test_a_malformed_chunked_body_is_refused_before_the_app_reads_it():
    with _reader(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\nZZ\r\n\r\n") as reader:
        reader.read_head(time.monotonic())
        with pytest.raises(HttpError) as info:
            reader.preread_chunked()
        assert info.value.status == 400
        with pytest.raises(HttpError):  # and every later read says so again
            reader.read()


def _parsed(*headers: tuple[bytes, bytes]) -> ParsedHead:
    return ParsedHead(method=b"GET", version="1.1", target=b"/", headers=list(headers),
                      keep_alive=True, complete=True)


@pytest.mark.parametrize("name", [b"Content-Type", b"authorization", b"HOST", b"Range",
                                  b"If-Modified-Since", b"User-Agent"])
def test_a_singleton_field_twice_is_refused(name):
    with pytest.raises(HttpError) as info:
        check_head(_parsed((b"Host", b"x"), (name, b"a"), (name, b"a")) if name.lower() != b"host"
                   else _parsed((name, b"x"), (name, b"x")), SETTINGS)
    assert info.value.status == 400


def test_a_list_field_twice_is_joined_within_the_field_size():
    small = HttpSettings(limit_request_field_size=100)
    head = check_head(_parsed((b"Host", b"x"), (b"Accept", b"a" * 40), (b"Accept", b"b" * 40)),
                      small)
    assert len(head.headers) == 3
    with pytest.raises(HttpError) as info:
        check_head(_parsed((b"Host", b"x"), *[(b"Accept", b"a" * 40)] * 3), small)
    assert info.value.status == 431


@pytest.mark.parametrize("name, refused", [
    (b"Content-Length", True), (b"transfer-encoding", True), (b"Host", True),
    (b"Authorization", True), (b"Content-Type", True), (b"Trailer", True),
    (b"Server-Timing", False), (b"X-Checksum", False), (b"ETag", False)])
def test_trailer_fields(name, refused):
    if refused:
        with pytest.raises(HttpError):
            check_trailer(name)
    else:
        check_trailer(name)
