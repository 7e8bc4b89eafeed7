"""Writing one response: PEP 3333's ``start_response`` and the framing of what the app returns.

Everything the app sets is checked before a byte leaves: a status or header with CR, LF, NUL
or another control character is never sent (no response splitting) — the client gets a 500
instead. Hop-by-hop headers are the server's business: the app's are dropped. Framing:

    app's Content-Length           → sent as is, the body cut to that length
    a list or tuple of bytes       → its total length becomes the Content-Length
    anything else, HTTP/1.1 client → chunked, so a failure half-way shows as a broken body
    anything else, HTTP/1.0 client → delimited by the close
    HEAD, 1xx, 204, 304            → no body (and no Content-Length for 1xx and 204)

The connection stays open after a response only when the engine offers persistent
connections, the client accepts one, its request was read to its end and the body's end is
marked (a length, chunked, or no body); otherwise the head says ``Connection: close``. An
HTTP/1.0 client that asked for ``keep-alive`` is told ``Connection: keep-alive``.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from http import HTTPStatus
from types import TracebackType

from janus_mp.adapters.http_request import ClientGone

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                        "te", "trailer", "transfer-encoding", "upgrade"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")
_STATUS = re.compile(r"([1-9][0-9][0-9]) [\t\x20-\x7e\x80-\xff]*\Z")
_LENGTH = re.compile(r"[0-9]{1,19}\Z")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class InvalidResponse(Exception):
    """The app's status or headers cannot be sent as they are (a 500 goes instead)."""


class Response:
    """One response on ``sock`` to a request made with ``method`` over HTTP/``version``."""

    def __init__(self, sock: socket.socket, method: str, version: str,
                 persist: Callable[[], bool] = lambda: False) -> None:
        self.sock = sock
        self.method = method
        #: Asked when the head goes out: may the connection stay open after this response?
        self._persist = persist
        self.keep_alive = False
        self._version = version
        self.status: int | None = None
        self._status_line = ""
        self._headers: list[tuple[str, str]] = []
        self._length: int | None = None
        self.invalid: str | None = None
        self.head_sent = False
        self._chunked = False
        self._no_body = False
        self._pending: list[bytes] = []
        self.body_bytes = 0  # body bytes the app produced that were sent
        self._remaining: int | None = None

    # -- PEP 3333 -----------------------------------------------------------------------------
    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: ExcInfo | None = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            if self.head_sent:
                raise exc_info[1].with_traceback(exc_info[2])
        elif self.status is not None:
            raise InvalidResponse("start_response called twice without exc_info")
        match = _STATUS.match(status) if isinstance(status, str) else None
        if match is None:
            self._refuse(f"invalid status {status!r}")
        kept: list[tuple[str, str]] = []
        length: int | None = None
        for item in headers:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                    and isinstance(item[1], str)):
                self._refuse(f"invalid header {item!r}")
            name, value = item
            if not _TOKEN.match(name) or not _FIELD_VALUE.match(value):
                self._refuse(f"invalid header {name!r}: {value!r}")
            lower = name.lower()
            if lower in HOP_BY_HOP:
                continue  # the connection is ours to describe
            if lower == "content-length":
                if not _LENGTH.match(value.strip()) or length is not None:
                    self._refuse(f"invalid Content-Length {value!r}")
                length = int(value)
                continue  # sent by _frame, which knows whether a body goes out
            kept.append((name, value.strip()))
        assert match is not None
        self.status = int(match.group(1))
        self._status_line = status
        self._headers = kept
        self._length = length
        self.invalid = None  # a later, valid call (with exc_info) replaces a refused one
        return self.write

    def write(self, data: bytes) -> None:
        """The write() callable: sends at once (PEP 3333 forbids holding it back)."""
        self._add(data)
        self.flush()

    # -- the engine's side ----------------------------------------------------------------------
    def send_result(self, result: Iterable[bytes]) -> None:
        """Send the app's iterable; a list or tuple goes out in one send with its length."""
        if self.status is None:
            raise InvalidResponse("the app returned without calling start_response")
        if isinstance(result, (list, tuple)):
            if self._length is None and not self.head_sent:
                self._length = sum(len(chunk) for chunk in result)
            for chunk in result:
                self._add(chunk)
        else:
            for chunk in result:
                self._add(chunk)
                self.flush()
        self.finish()

    def finish(self) -> None:
        """End the body (the last chunk of a chunked body) and send what is left."""
        self._frame()
        if self._chunked:
            self._pending.append(b"0\r\n\r\n")
        self.flush()

    def flush(self) -> None:
        if not self.head_sent:
            if self.status is None:
                raise InvalidResponse("write() before start_response")
            self._frame()
            self._pending.insert(0, self._head())
            self.head_sent = True
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            try:
                self.sock.sendall(data)
            except OSError as exc:  # the client left (or stalled past the io timeout)
                raise ClientGone(f"sending the response failed: {exc}") from None

    def _add(self, chunk: bytes) -> None:
        if self.invalid is not None:
            raise InvalidResponse(self.invalid)
        if self.status is None:
            raise InvalidResponse("body before start_response")
        if not isinstance(chunk, (bytes, bytearray)):
            raise InvalidResponse(f"the app produced {type(chunk).__name__}, not bytes")
        self._frame()
        if not chunk or self._no_body:
            return
        if self._remaining is not None:
            chunk = chunk[:self._remaining]
            self._remaining -= len(chunk)
            if not chunk:
                return
        self.body_bytes += len(chunk)
        if self._chunked:
            self._pending.append(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            self._pending.append(bytes(chunk))

    def _frame(self) -> None:
        """Decide the framing once, when the first body byte (or the end) is reached."""
        if self._remaining is not None or self._chunked or self._no_body or self.head_sent:
            return
        assert self.status is not None
        no_length = self.status < 200 or self.status == 204
        if no_length:
            self._length = None
        self._no_body = self.method == "HEAD" or no_length or self.status == 304
        if self._length is not None:
            self._headers.append(("Content-Length", str(self._length)))
            self._remaining = 0 if self._no_body else self._length
        elif not self._no_body and self._version == "1.1":
            self._chunked = True
            self._headers.append(("Transfer-Encoding", "chunked"))

    def _head(self) -> bytes:
        delimited = self._length is not None or self._chunked or self._no_body
        self.keep_alive = delimited and self._persist()
        lines = [f"HTTP/1.1 {self._status_line}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in self._headers]
        lines.append(f"Date: {_http_date()}\r\n")
        if not self.keep_alive:
            lines.append("Connection: close\r\n")
        elif self._version == "1.0":
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _refuse(self, why: str) -> None:
        self.invalid = why
        raise InvalidResponse(why)

    @property
    def complete(self) -> bool:
        """Whether the body sent matches its declared length (always, for other framings)."""
        return not self._remaining


def error_response(status: int, *, head_request: bool = False) -> bytes:
    """A whole response refusing a request: short plain text, then the connection closes.
    The answer to a HEAD request has the same head and no body (RFC 9110 §9.3.2)."""
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}\n".encode()
    head = (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nDate: {_http_date()}\r\n"
            f"Connection: close\r\n\r\n").encode("latin-1")
    return head if head_request else head + body


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]

