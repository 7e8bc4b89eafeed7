"""Reading one request from a connection. llhttp (through httptools) parses the wire; this
module feeds it under the deadlines and limits of :class:`HttpSettings`, checks what RFC 9112
asks of a server beyond the grammar (one Host, no Content-Length beside Transfer-Encoding, a
known transfer coding, a supported version), and serves the decoded body to the app.

    socket ──recv (head deadline)──► llhttp ──callbacks──► RequestHead  (then _check_head)
           ──recv (body deadline)──► llhttp ──on_body────► body buffer ──► RequestBody.read()

Any refusal is an :class:`HttpError` carrying the status to answer. One request per
connection: parsing stops at the end of the first message, nothing after it is looked at.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httptools

from janus_mp.adapters.http_settings import HttpSettings

_RECV_SIZE = 64 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# RFC 3986 host (IP-literal, IPv4 or reg-name, percent-encoded allowed) and an optional port.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?\Z")


class HttpError(Exception):
    """The request cannot be served: answer ``status`` and close."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ClientGone(Exception):
    """Nobody to answer: the client closed or reset the connection, stayed silent until the
    head deadline without sending a byte, or stopped reading what we send."""


class _NextMessage(Exception):
    """Raised from llhttp's callback at a second message: parsing stops there."""


@dataclass
class RequestHead:
    method: str
    target: bytes
    version: str  # "1.0" or "1.1"
    headers: list[tuple[bytes, bytes]]  # as received; names keep their case
    path: bytes
    query: bytes
    content_length: int | None
    chunked: bool
    expect_continue: bool

    def request_line(self) -> str:
        return f"{self.method} {self.target.decode('latin-1')} HTTP/{self.version}"


class RequestReader:
    """Read the head of one request from ``sock``, then its body on demand.

    ``began`` is when the connection was accepted: the head deadline counts from there. The
    body deadline counts from the app's first read of the body. ``io_timeout`` bounds each
    single recv. While it waits, ``heartbeat`` is called every ``heartbeat_interval``.
    """

    def __init__(self, sock: socket.socket, settings: HttpSettings, *, began: float,
                 io_timeout: float, heartbeat: Callable[[], None] = lambda: None,
                 heartbeat_interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sock = sock
        sock.settimeout(io_timeout)
        self._settings = settings
        self._clock = clock
        self._io_timeout = io_timeout
        self._heartbeat = heartbeat
        self._beat = heartbeat_interval
        self._head_deadline = began + settings.header_timeout
        self._body_deadline: float | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = bytearray()
        self._headers: list[tuple[bytes, bytes]] = []
        self._trailers = 0
        self._received = 0
        self._line_done = False
        self._head_done = False
        self._began = False
        self.complete = False
        self._body = bytearray()
        self._body_seen = 0
        self._expect_continue = False
        self.error: HttpError | None = None  # a refusal met while the app read the body
        self.head: RequestHead | None = None

    @property
    def received_anything(self) -> bool:
        return self._received > 0

    def read_head(self) -> RequestHead:
        while not self._head_done:
            data = self._recv(self._head_deadline, "request head")
            if not data:
                if not self._received:
                    raise ClientGone("closed before sending a request")
                raise HttpError(400, "connection closed inside the request head")
            self._received += len(data)
            self._feed(data)
            if not self._head_done and self._received > self._settings.max_head_bytes():
                if not self._line_done:
                    raise HttpError(414, "request line too long")
                raise HttpError(431, "request head too large")
        self.head = _check_head(self._parser, bytes(self._url), self._headers,
                                complete=self.complete, settings=self._settings)
        self._expect_continue = self.head.expect_continue
        return self.head

    # -- the body, as the app reads it --------------------------------------------------------
    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` body bytes (all that remain if negative); b"" at the end."""
        if self.error is not None:  # the body was refused: every later read says so again
            raise self.error
        while (size < 0 or len(self._body) < size) and not self.complete:
            self._receive_body()
        take = len(self._body) if size < 0 else min(size, len(self._body))
        data = bytes(self._body[:take])
        del self._body[:take]
        return data

    def readline(self, size: int = -1) -> bytes:
        if self.error is not None:
            raise self.error
        while True:
            end = self._body.find(b"\n")
            if end >= 0:
                return self.read(end + 1 if size < 0 else min(size, end + 1))
            if self.complete or 0 <= size <= len(self._body):
                return self.read(size)
            self._receive_body()

    def _receive_body(self) -> None:
        try:
            if self._expect_continue:  # the app wants the body: now the client may send it
                self._expect_continue = False
                self._sock.sendall(_CONTINUE)
            if self._body_deadline is None:
                self._body_deadline = self._clock() + self._settings.body_timeout
            data = self._recv(self._body_deadline, "request body")
            if not data:
                raise HttpError(400, "connection closed inside the request body")
            self._feed(data)
        except HttpError as exc:
            self.error = exc
            raise
        except OSError as exc:  # sending 100 Continue failed: the client left
            raise ClientGone(f"sending 100 Continue failed: {exc}") from None

    # -- feeding llhttp -------------------------------------------------------------------------
    def _recv(self, deadline: float, what: str) -> bytes:
        """One recv, bounded by ``deadline`` and by ``io_timeout`` of silence. Waiting for a
        slow client is not a stuck handler: the wait is cut in beats that feed the watchdog."""
        silent_until = self._clock() + self._io_timeout
        try:
            while True:
                remaining = min(deadline, silent_until) - self._clock()
                if remaining <= 0:
                    if not self._received and what == "request head":
                        raise ClientGone("sent nothing before the head deadline")
                    raise HttpError(408, f"{what} not received in time")
                wait = remaining
                if self._beat is not None:  # a trickling client never lets a wait time out
                    self._heartbeat()
                    wait = min(remaining, self._beat)
                if wait != self._io_timeout:
                    self._sock.settimeout(wait)
                try:
                    return self._sock.recv(_RECV_SIZE)
                except TimeoutError:
                    pass  # one beat of silence: beat, then wait again
                except OSError as exc:  # reset by the client: nobody to answer
                    raise ClientGone(f"reading the {what} failed: {exc}") from None
        finally:
            # Outside this call the socket keeps io_timeout: the response's sends rely on it.
            self._sock.settimeout(self._io_timeout)

    def _feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HttpError):
                raise exc.__context__ from None
            if not self.complete:
                raise HttpError(400, f"malformed request: {exc}") from None
        except httptools.HttpParserUpgrade:
            self.complete = True  # no protocol switch here: the request is served as HTTP
        except httptools.HttpParserError as exc:
            if not self.complete:  # bytes after the one message we serve are not looked at
                raise HttpError(400, f"malformed request: {exc}") from None

    # llhttp's callbacks (httptools calls them by name) ---------------------------------------
    def on_message_begin(self) -> None:
        if self._began:
            raise _NextMessage
        self._began = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        method = self._parser.get_method()
        if len(method) + len(self._url) + len(" HTTP/1.1") + 1 > \
                self._settings.limit_request_line:
            raise HttpError(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._line_done = True
        settings = self._settings
        if len(name) + 2 + len(value) > settings.limit_request_field_size:
            raise HttpError(431, "header field line too large")
        if self._head_done:  # a trailer of a chunked body: bounded, not passed on
            self._trailers += 1
            if self._trailers > settings.limit_request_fields:
                raise HttpError(431, "too many trailer fields")
            return
        if len(self._headers) >= settings.limit_request_fields:
            raise HttpError(431, "too many header fields")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._line_done = self._head_done = True

    def on_body(self, data: bytes) -> None:
        self._body_seen += len(data)
        limit = self._settings.limit_request_body
        if limit and self._body_seen > limit:
            raise HttpError(413, "request body too large")
        self._body += data

    def on_message_complete(self) -> None:
        self.complete = True


class RequestBody:
    """``wsgi.input``: the decoded body (Content-Length or chunked), ending where it ends."""

    def __init__(self, reader: RequestReader) -> None:
        self._reader = reader

    def read(self, size: int | None = -1) -> bytes:
        return self._reader.read(-1 if size is None else size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._reader.readline(-1 if size is None else size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def _check_head(parser: httptools.HttpRequestParser, target: bytes,
                headers: list[tuple[bytes, bytes]], *, complete: bool,
                settings: HttpSettings) -> RequestHead:
    """What RFC 9112 asks of a server beyond the grammar llhttp checks."""
    version = parser.get_http_version()
    if version == "0.9":
        raise HttpError(400, "HTTP/0.9 requests are not served")
    if version not in ("1.0", "1.1"):
        raise HttpError(505, f"HTTP/{version} is not supported")
    hosts, codings, length, expect = [], [], None, None
    for name, raw in headers:
        lower, value = name.lower(), raw.strip(b" \t")
        if lower == b"host":
            hosts.append(value)
        elif lower == b"transfer-encoding":
            codings.append(value)
        elif lower == b"content-length":
            length = int(value)  # llhttp accepts digits only, and one value
        elif lower == b"expect":
            expect = value.lower()
    if len(hosts) > 1:
        raise HttpError(400, "more than one Host field")
    if version == "1.1" and not hosts:
        raise HttpError(400, "HTTP/1.1 request without Host")
    if hosts and not _HOST.match(hosts[0]):
        raise HttpError(400, "invalid Host")
    if codings:
        if version == "1.0":
            raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if length is not None:
            raise HttpError(400, "both Content-Length and Transfer-Encoding")
        if len(codings) != 1 or codings[0].strip().lower() != b"chunked":
            raise HttpError(501, "only the chunked transfer coding is supported")
    limit = settings.limit_request_body
    if limit and length is not None and length > limit:
        raise HttpError(413, "request body too large")
    if expect is not None and expect != b"100-continue":
        raise HttpError(417, "unsupported expectation")
    path, query = _split_target(parser.get_method(), target)
    return RequestHead(method=parser.get_method().decode("ascii"), target=target,
                       version=version, headers=headers, path=path, query=query,
                       content_length=length, chunked=bool(codings),
                       expect_continue=expect is not None and version == "1.1" and
                       not complete)


def _split_target(method: bytes, target: bytes) -> tuple[bytes, bytes]:
    """(path, query) of origin-form or absolute-form; the fragment is dropped."""
    if target == b"*" and method == b"OPTIONS":
        return b"*", b""
    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        raise HttpError(400, "invalid request target") from None
    if url.schema is None and not target.startswith(b"/"):
        raise HttpError(400, "invalid request target")
    if url.schema is not None and url.schema.lower() not in (b"http", b"https"):
        raise HttpError(400, "invalid request target")
    return url.path or b"/", url.query or b""
