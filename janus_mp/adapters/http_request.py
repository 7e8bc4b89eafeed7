"""Reading requests from a connection, one after the other. llhttp (through httptools) parses
the wire — one parser per connection, so pipelined requests are split where llhttp says one
message ends; this module feeds it under the deadlines and limits of :class:`HttpSettings`,
hands each head to :func:`check_head`, and serves the decoded body to the app.

    socket ──recv (head deadline)──► llhttp ──callbacks──► _Message (head, body, error) ─┐
           ──recv (body deadline)──►   (one parser, every message of the connection)     │
    RequestReader.read_head ◄── the oldest message not served yet ◄──────────────────────┘
    RequestReader.read      ◄── its body

A recv may carry the end of one message and the start of the next: llhttp reports both, and
the next one waits in its own :class:`_Message`. A refusal belongs to the message it was met
in (a malformed second request never spoils the answer to the first); after it llhttp parses
nothing more, so the connection closes after that message. Any refusal is an
:class:`HttpError` carrying the status to answer.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import httptools

from janus_mp.adapters.http_head import (
    HttpError,
    ParsedHead,
    RequestHead,
    check_head,
    check_trailer,
)
from janus_mp.adapters.http_settings import HttpSettings

__all__ = ["ClientGone", "HttpError", "RequestBody", "RequestHead", "RequestReader"]

_RECV_SIZE = 64 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: A chunked body is read this far before the app is called, so a malformed one is refused
#: before the app runs; a longer one streams to the app (see RequestReader.preread_chunked).
PREREAD_BYTES = 1024 * 1024


class ClientGone(Exception):
    """Nobody to answer: the client closed or reset the connection, stayed silent until the
    head deadline without sending a byte, or stopped reading what we send."""


@dataclass
class _Message:
    """What llhttp reported of one message so far."""

    url: bytearray = field(default_factory=bytearray)
    method: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    trailers: int = 0
    parsed: ParsedHead | None = None  # set when the head ended
    body: bytearray = field(default_factory=bytearray)
    body_seen: int = 0
    complete: bool = False
    upgrade: bool = False
    error: HttpError | None = None


class RequestReader:
    """Read the heads of the requests on ``sock`` in turn, and each one's body on demand.

    The head deadline counts from ``began`` given to :meth:`read_head`; the body deadline from
    the first read of the body. ``io_timeout`` bounds each single recv. While it waits,
    ``heartbeat`` is called every ``heartbeat_interval``.
    """

    def __init__(self, sock: socket.socket, settings: HttpSettings, *,
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
        self._parser = httptools.HttpRequestParser(self)
        # RFC 9112 §7.1.1 allows whitespace before a chunk extension's ";" (`5 ;a=b`).
        self._parser.set_dangerous_leniencies(lenient_spaces_after_chunk_size=True)
        self._messages: deque[_Message] = deque()  # begun, not served yet; [0] is current
        self._dead = False  # llhttp stopped (an error or an upgrade): nothing more is parsed
        self._received_for_head = 0
        self._body_deadline: float | None = None
        self._expect_continue = False
        self.head: RequestHead | None = None

    # -- the connection, between requests -------------------------------------------------------
    @property
    def pending(self) -> bool:
        """Whether the next request has begun arriving already (pipelined)."""
        return bool(self._messages)

    @property
    def pipelined(self) -> bool:
        """Whether the request after the current one has begun arriving already."""
        return len(self._messages) > 1

    @property
    def method(self) -> str:
        """The current request's method, as soon as it is known ("" before)."""
        return self._messages[0].method.decode("latin-1") if self._messages else ""

    @property
    def complete(self) -> bool:
        return bool(self._messages) and self._messages[0].complete

    @property
    def error(self) -> HttpError | None:
        """A refusal met in the current request (while the app read its body, say)."""
        return self._messages[0].error if self._messages else None

    @property
    def reusable(self) -> bool:
        """Whether the next request may be read here: this one was read to its end, without
        a refusal, and was not a protocol switch."""
        current = self._messages[0] if self._messages else None
        return (current is not None and current.complete and current.error is None
                and not current.upgrade)

    @property
    def unread(self) -> bool:
        """Whether request bytes were left unread (a body, a refused or a pipelined request)."""
        return bool(self._messages) and (not self.reusable or len(self._messages) > 1)

    def next_request(self) -> None:
        """Forget the request just served; the next one (maybe begun already) is current."""
        self._messages.popleft()
        self.head = None
        self._body_deadline = None
        self._expect_continue = False

    # -- the head ---------------------------------------------------------------------------------
    def read_head(self, began: float) -> RequestHead:
        deadline = began + self._settings.header_timeout
        self._received_for_head = 0
        while True:
            current = self._messages[0] if self._messages else None
            if current is not None and current.parsed is not None:
                break
            if current is not None and current.error is not None:
                raise current.error
            if self._dead:  # an upgrade ended parsing: nothing after it is a request
                raise ClientGone("nothing more to read after a protocol switch")
            data = self._recv(deadline, "request head")
            if not data:
                if current is None:
                    raise ClientGone("closed before sending a request")
                raise HttpError(400, "connection closed inside the request head")
            self._received_for_head += len(data)
            self._feed(data)
            current = self._messages[0] if self._messages else None
            if self._received_for_head > self._settings.max_head_bytes():
                if current is None:  # llhttp skips empty lines before a request: bound them
                    raise HttpError(400, "no request line")
                if current.parsed is None and current.error is None:
                    raise HttpError(414 if not current.headers else 431,
                                    "request line too long" if not current.headers else
                                    "request head too large")
        assert current is not None and current.parsed is not None
        self.head = check_head(current.parsed, self._settings)
        self._expect_continue = self.head.expect_continue
        return self.head

    def preread_chunked(self) -> None:
        """Read a chunked body before the app runs, up to :data:`PREREAD_BYTES`, so that its
        framing is checked (and a malformed one refused) before the app sees a byte of it.
        A longer body streams: a framing error past that point reaches the app as an
        :class:`HttpError` from ``wsgi.input``, and the connection closes after the answer.
        A client that asked for 100-continue waits for the app's first read, as it asked."""
        current = self._messages[0]
        if self.head is None or not self.head.chunked or self._expect_continue:
            return
        while not current.complete and current.error is None and \
                len(current.body) < PREREAD_BYTES:
            self._receive_body()
        if current.error is not None:
            raise current.error

    # -- the body, as the app reads it ------------------------------------------------------------
    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` body bytes (all that remain if negative); b"" at the end."""
        current = self._messages[0]
        if current.error is not None:  # the body was refused: every later read says so again
            raise current.error
        while (size < 0 or len(current.body) < size) and not current.complete:
            self._receive_body()
        body = current.body
        take = len(body) if size < 0 else min(size, len(body))
        data = bytes(body[:take])
        del body[:take]
        return data

    def readline(self, size: int = -1) -> bytes:
        current = self._messages[0]
        if current.error is not None:
            raise current.error
        while True:
            end = current.body.find(b"\n")
            if end >= 0:
                return self.read(end + 1 if size < 0 else min(size, end + 1))
            if current.complete or 0 <= size <= len(current.body):
                return self.read(size)
            self._receive_body()

    def _receive_body(self) -> None:
        current = self._messages[0]
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
            current.error = exc
            raise
        except OSError as exc:  # sending 100 Continue failed: the client left
            raise ClientGone(f"sending 100 Continue failed: {exc}") from None
        if current.error is not None:
            raise current.error

    # -- feeding llhttp -------------------------------------------------------------------------
    def _recv(self, deadline: float, what: str) -> bytes:
        """One recv, bounded by ``deadline`` and by ``io_timeout`` of silence. Waiting for a
        slow client is not a stuck handler: the wait is cut in beats that feed the watchdog."""
        silent_until = self._clock() + self._io_timeout
        try:
            while True:
                remaining = min(deadline, silent_until) - self._clock()
                if remaining <= 0:
                    if not self._messages and what == "request head":
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
        if self._dead:
            return  # bytes after a refused message or a protocol switch are not looked at
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(cause if isinstance(cause, HttpError) else
                       HttpError(400, f"malformed request: {exc}"))
        except httptools.HttpParserUpgrade:
            # No protocol switch here: the request is served as HTTP, then the connection
            # closes (what follows is not HTTP/1.1 any more).
            self._dead = True
            if self._messages:
                last = self._messages[-1]
                last.complete = last.upgrade = True
        except httptools.HttpParserError as exc:
            self._fail(HttpError(400, f"malformed request: {exc}"))

    def _fail(self, error: HttpError) -> None:
        """A refusal of the message llhttp was parsing (a new one if it had not begun)."""
        self._dead = True
        if not self._messages or self._messages[-1].complete:
            self._messages.append(_Message())
        self._messages[-1].error = error

    # llhttp's callbacks (httptools calls them by name) ---------------------------------------
    def on_message_begin(self) -> None:
        self._messages.append(_Message())

    def on_url(self, url: bytes) -> None:
        message = self._messages[-1]
        message.url += url
        message.method = self._parser.get_method()
        if message.method == b"PRI":
            # The HTTP/2 connection preface (RFC 9113 §3.4): llhttp would wait for its second
            # half, and the client for our SETTINGS frame. Refuse at once.
            raise HttpError(505, "HTTP/2 is not served here (HTTP/2 connection preface)")
        if len(message.method) + len(message.url) + len(" HTTP/1.1") + 1 > \
                self._settings.limit_request_line:
            raise HttpError(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        message = self._messages[-1]
        settings = self._settings
        if len(name) + 2 + len(value) > settings.limit_request_field_size:
            raise HttpError(431, "header field line too large")
        if message.parsed is not None:  # a trailer of a chunked body: checked, not passed on
            check_trailer(name)
            message.trailers += 1
            if message.trailers > settings.limit_request_fields:
                raise HttpError(431, "too many trailer fields")
            return
        if len(message.headers) >= settings.limit_request_fields:
            raise HttpError(431, "too many header fields")
        message.headers.append((name, value))

    def on_headers_complete(self) -> None:
        message = self._messages[-1]
        parser = self._parser
        message.parsed = ParsedHead(method=parser.get_method(),
                                    version=parser.get_http_version(),
                                    target=bytes(message.url), headers=message.headers,
                                    keep_alive=parser.should_keep_alive(), complete=False)

    def on_body(self, data: bytes) -> None:
        message = self._messages[-1]
        message.body_seen += len(data)
        limit = self._settings.limit_request_body
        if limit and message.body_seen > limit:
            raise HttpError(413, "request body too large")
        message.body += data

    def on_message_complete(self) -> None:
        message = self._messages[-1]
        message.complete = True
        if message.parsed is not None:
            message.parsed = replace(message.parsed, complete=True)


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
