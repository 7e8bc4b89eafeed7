"""What RFC 9110/9112 ask of a server beyond the grammar llhttp checks, on a head llhttp has
parsed: one Host, no Content-Length beside Transfer-Encoding, a known transfer coding, a
supported version, one line for each singleton field, no framing or routing field in a
trailer section. Pure: bytes in, a :class:`RequestHead` or an :class:`HttpError` out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httptools

from janus_mp.adapters.http_settings import HttpSettings

# RFC 3986 host (IP-literal, IPv4 or reg-name, percent-encoded allowed) and an optional port.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?\Z")

#: Request fields RFC 9110 defines as one value, not a comma-separated list: two lines of one
#: of them cannot be combined into one value (PEP 3333 joins repeated fields with ","), and
#: two proxies may each pick a different line — refused (400). Content-Length is llhttp's.
SINGLETON_FIELDS = frozenset({
    b"host", b"content-type", b"authorization", b"proxy-authorization", b"from",
    b"referer", b"user-agent", b"max-forwards", b"range", b"if-range", b"if-modified-since",
    b"if-unmodified-since", b"date", b"content-location", b"content-range"})

#: Fields a trailer section may not carry (RFC 9110 §6.5.1): framing, routing, request
#: modifiers, authentication, response control, and how to process the content. A trailer
#: naming one is refused (400): it would mean something a recipient merging trailers into the
#: head (some proxies do) acts on too late or differently.
NOT_IN_TRAILERS = frozenset({
    b"transfer-encoding", b"content-length", b"host", b"trailer", b"te", b"connection",
    b"keep-alive", b"upgrade", b"expect", b"max-forwards", b"range", b"if-match",
    b"if-none-match", b"if-modified-since", b"if-unmodified-since", b"if-range",
    b"cache-control", b"pragma", b"authorization", b"proxy-authorization", b"cookie",
    b"set-cookie", b"www-authenticate", b"proxy-authenticate", b"content-encoding",
    b"content-type", b"content-range", b"content-location", b"location", b"retry-after",
    b"vary", b"age", b"expires", b"date"})


class HttpError(Exception):
    """The request cannot be served: answer ``status`` and close."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


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
    #: llhttp's verdict from the version and Connection: the client accepts a persistent
    #: connection. Whether the server keeps it is the engine's choice.
    keep_alive: bool = False

    def request_line(self) -> str:
        return f"{self.method} {self.target.decode('latin-1')} HTTP/{self.version}"


@dataclass(frozen=True)
class ParsedHead:
    """What llhttp reported of a head, read off the parser when the head ended."""

    method: bytes
    version: str
    target: bytes
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    complete: bool  # the whole message (body included) was parsed already


def check_head(parsed: ParsedHead, settings: HttpSettings) -> RequestHead:
    """The head as the app may see it, or the :class:`HttpError` refusing it."""
    version = parsed.version
    if version == "0.9":
        raise HttpError(400, "HTTP/0.9 requests are not served")
    if version not in ("1.0", "1.1"):
        raise HttpError(505, f"HTTP/{version} is not supported")
    hosts, codings, length, expect = [], [], None, None
    seen: dict[bytes, int] = {}
    for name, raw in parsed.headers:
        lower, value = name.lower(), raw.strip(b" \t")
        # A repeated field reaches the app as one joined value: bound it like one line.
        joined = seen.get(lower, -2) + 2 + len(value)
        if lower in seen:
            if lower in SINGLETON_FIELDS:
                raise HttpError(400, f"more than one {name.decode('latin-1')} field")
            if joined + len(name) > settings.limit_request_field_size:
                raise HttpError(431, f"repeated {name.decode('latin-1')} field too large")
        seen[lower] = joined
        if lower == b"host":
            hosts.append(value)
        elif lower == b"transfer-encoding":
            codings.append(value)
        elif lower == b"content-length":
            length = int(value)  # llhttp accepts digits only, and one value
        elif lower == b"expect":
            expect = value.lower()
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
    path, query = _split_target(parsed.method, parsed.target)
    return RequestHead(method=parsed.method.decode("ascii"), target=parsed.target,
                       version=version, headers=parsed.headers, path=path, query=query,
                       content_length=length, chunked=bool(codings),
                       expect_continue=expect is not None and version == "1.1" and
                       not parsed.complete, keep_alive=parsed.keep_alive)


def check_trailer(name: bytes) -> None:
    if name.lower() in NOT_IN_TRAILERS:
        raise HttpError(400, f"{name.decode('latin-1')} is not allowed in a trailer section")


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
