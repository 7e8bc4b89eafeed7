"""Raw HTTP/1.1 requests, valid and malformed, with what a server must answer — written from
RFC 9110/9112 and the known request-smuggling shapes. Replayed over sockets by
tests/integration/test_http_conformance.py, and fed to candidate parsers by
scripts/bench_http_parsers.py (which only asks: accepted or refused?).

A valid case expects 200 and names environ keys the app must see (``None``: must be absent)
and the body the app must read. A malformed case expects the statuses it may be refused with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

H = b"Host: example.com\r\n"


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    status: tuple[int, ...] = (200,)
    environ: dict[str, str | bool | None] = field(default_factory=dict)
    body: bytes | None = None

    @property
    def valid(self) -> bool:
        return self.status == (200,)


def _req(head: bytes, body: bytes = b"") -> bytes:
    return head + b"\r\n" + body


VALID = [
    Case("plain GET", _req(b"GET / HTTP/1.1\r\n" + H),
         environ={"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "",
                  "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "example.com",
                  "CONTENT_TYPE": None, "CONTENT_LENGTH": None, "SCRIPT_NAME": ""}),
    Case("query string", _req(b"GET /p?a=1&b=%20 HTTP/1.1\r\n" + H),
         environ={"PATH_INFO": "/p", "QUERY_STRING": "a=1&b=%20"}),
    Case("fragment is not part of the query", _req(b"GET /p?q=1#frag HTTP/1.1\r\n" + H),
         environ={"PATH_INFO": "/p", "QUERY_STRING": "q=1"}),
    Case("percent-decoded PATH_INFO", _req(b"GET /a%20b/%C3%A9 HTTP/1.1\r\n" + H),
         environ={"PATH_INFO": "/a b/\xc3\xa9"}),
    Case("absolute-form target", _req(b"GET http://example.com/x/y?z=1 HTTP/1.1\r\n" + H),
         environ={"PATH_INFO": "/x/y", "QUERY_STRING": "z=1", "HTTP_HOST": "example.com"}),
    Case("HTTP/1.0 without Host", _req(b"GET /old HTTP/1.0\r\n"),
         environ={"SERVER_PROTOCOL": "HTTP/1.0", "PATH_INFO": "/old", "HTTP_HOST": None}),
    Case("extension method", _req(b"PURGE /c HTTP/1.1\r\n" + H),
         environ={"REQUEST_METHOD": "PURGE"}),
    Case("OPTIONS with a path", _req(b"OPTIONS /o HTTP/1.1\r\n" + H),
         environ={"REQUEST_METHOD": "OPTIONS", "PATH_INFO": "/o"}),
    Case("Content-Length body", _req(b"POST /u HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
                                     b"Content-Type: text/plain\r\n", b"hello"),
         environ={"CONTENT_LENGTH": "5", "CONTENT_TYPE": "text/plain"}, body=b"hello"),
    Case("Content-Length: 0", _req(b"POST /u HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n"),
         environ={"CONTENT_LENGTH": "0"}, body=b""),
    Case("chunked body", _req(b"POST /u HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n",
                              b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
         environ={"CONTENT_LENGTH": None, "wsgi.input_terminated": True,
                  "HTTP_TRANSFER_ENCODING": None}, body=b"hello world"),
    Case("chunked body, case-insensitive coding",
         _req(b"POST /u HTTP/1.1\r\n" + H + b"Transfer-Encoding: Chunked\r\n",
              b"3\r\nabc\r\n0\r\n\r\n"), body=b"abc"),
    Case("chunked body with trailers",
         _req(b"POST /u HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n",
              b"4\r\nwiki\r\n0\r\nX-Checksum: 1\r\n\r\n"), body=b"wiki"),
    Case("chunked body with chunk extensions",
         _req(b"POST /u HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n",
              b"4;name=value\r\nwiki\r\n0;last\r\n\r\n"), body=b"wiki"),
    Case("chunk size in upper-case hex",
         _req(b"POST /u HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n",
              b"A\r\n0123456789\r\n0\r\n\r\n"), body=b"0123456789"),
    Case("underscore header dropped, dash header kept",
         _req(b"GET / HTTP/1.1\r\n" + H + b"X_Forwarded: evil\r\nX-Forwarded: good\r\n"),
         environ={"HTTP_X_FORWARDED": "good"}),
    Case("underscore Content_Length is not a length",
         _req(b"GET / HTTP/1.1\r\n" + H + b"Content_Length: 7\r\nTransfer_Encoding: chunked\r\n"),
         environ={"CONTENT_LENGTH": None, "HTTP_CONTENT_LENGTH": None,
                  "HTTP_TRANSFER_ENCODING": None}, body=b""),
    Case("OWS around a field value", _req(b"GET / HTTP/1.1\r\n" + H + b"X-A: \t v w \t\r\n"),
         environ={"HTTP_X_A": "v w"}),
    Case("empty field value", _req(b"GET / HTTP/1.1\r\n" + H + b"X-Empty:\r\n"),
         environ={"HTTP_X_EMPTY": ""}),
    Case("repeated field lines combined", _req(b"GET / HTTP/1.1\r\n" + H +
                                               b"Accept: a\r\nAccept: b\r\n"),
         environ={"HTTP_ACCEPT": "a,b"}),
    Case("obs-text in a value is latin-1", _req(b"GET / HTTP/1.1\r\n" + H + b"X-L: caf\xe9\r\n"),
         environ={"HTTP_X_L": "caf\xe9"}),
    Case("header names are case-insensitive", _req(b"GET / HTTP/1.1\r\nhOsT: example.com\r\n"
                                                   b"x-lower: 1\r\n"),
         environ={"HTTP_HOST": "example.com", "HTTP_X_LOWER": "1"}),
    Case("Host with a port", _req(b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n"),
         environ={"HTTP_HOST": "example.com:8080"}),
    Case("Host as an IPv6 literal", _req(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n"),
         environ={"HTTP_HOST": "[::1]:80"}),
    Case("HTTP/1.1 with Connection: close", _req(b"GET / HTTP/1.1\r\n" + H +
                                                 b"Connection: close\r\n"),
         environ={"HTTP_CONNECTION": "close"}),
    # RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
    Case("whitespace before a chunk extension",
         _req(b"POST /u HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n",
              b"3 ;a=b\r\nabc\r\n0\r\n\r\n"), body=b"abc"),
    Case("tabs before chunk extensions",
         _req(b"POST /u HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n",
              b"3\t;a=b;c\r\nabc\r\n0 \t;last\r\n\r\n"), body=b"abc"),
    Case("quoted chunk extension value",
         _req(b"POST /u HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n",
              b'3;a="x;y"\r\nabc\r\n0\r\n\r\n'), body=b"abc"),
    # RFC 9110 §5.3: a list field may be split over lines; its lines are combined with ","
    Case("list field split over lines within the field size",
         _req(b"GET / HTTP/1.1\r\n" + H + b"Accept: " + b"a" * 4000 + b"\r\nAccept: b\r\n"),
         environ={"HTTP_ACCEPT": "a" * 4000 + ",b"}),
    # RFC 9110 §6.5.1: a trailer field its definition allows there is fine (and not passed on)
    Case("allowed trailer field",
         _req(b"POST /u HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n",
              b"3\r\nabc\r\n0\r\nServer-Timing: x;dur=1\r\n\r\n"),
         environ={"HTTP_SERVER_TIMING": None}, body=b"abc"),
]

MALFORMED = [
    # -- request line --
    Case("bare LF line endings", b"GET / HTTP/1.1\nHost: example.com\n\n", (400,)),
    Case("bare CR in the request line", b"GET /\r HTTP/1.1\r\n" + H + b"\r\n", (400,)),
    Case("HTTP/0.99", _req(b"GET / HTTP/0.99\r\n" + H), (400, 505)),
    Case("HTTP/1.10", _req(b"GET / HTTP/1.10\r\n" + H), (400, 505)),
    Case("HTTP/2.0 on an HTTP/1 connection", _req(b"GET / HTTP/2.0\r\n" + H), (400, 505)),
    Case("lower-case protocol name", _req(b"GET / http/1.1\r\n" + H), (400,)),
    Case("HTTP/0.9 request line", b"GET /\r\n\r\n", (400,)),
    Case("invalid method character", _req(b"G(T / HTTP/1.1\r\n" + H), (400,)),
    Case("method with a NUL", _req(b"GE\x00T / HTTP/1.1\r\n" + H), (400,)),
    Case("leading space before the method", _req(b" GET / HTTP/1.1\r\n" + H), (400,)),
    Case("tab as request-line separator", _req(b"GET\t/ HTTP/1.1\r\n" + H), (400,)),
    # RFC 9112 §3 lets a server split the request line on any run of whitespace: refusing
    # and accepting are both conforming.
    Case("two spaces in the request line", _req(b"GET  / HTTP/1.1\r\n" + H), (400, 200)),
    Case("space inside the target", _req(b"GET /a b HTTP/1.1\r\n" + H), (400,)),
    Case("control character in the target", _req(b"GET /a\x01b HTTP/1.1\r\n" + H), (400,)),
    Case("target not starting with /", _req(b"GET a/b HTTP/1.1\r\n" + H), (400,)),
    Case("request line over 4094 bytes", _req(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n" + H),
         (414,)),
    # -- fields --
    Case("HTTP/1.1 without Host", _req(b"GET / HTTP/1.1\r\n"), (400,)),
    Case("duplicate Host", _req(b"GET / HTTP/1.1\r\n" + H + b"Host: evil.com\r\n"), (400,)),
    Case("Host with a space", _req(b"GET / HTTP/1.1\r\nHost: a b\r\n"), (400,)),
    Case("Host with a path", _req(b"GET / HTTP/1.1\r\nHost: a/b\r\n"), (400,)),
    Case("bare CR in a field value", _req(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rX-B: b\r\n"),
         (400,)),
    Case("bare LF inside the head", _req(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\nX-B: b\r\n"),
         (400,)),
    Case("NUL in a field value", _req(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n"), (400,)),
    Case("vertical tab in a field value", _req(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x0bb\r\n"),
         (400,)),
    Case("obs-fold continuation line", _req(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n"),
         (400,)),
    Case("field line without a colon", _req(b"GET / HTTP/1.1\r\n" + H + b"X-A a\r\n"), (400,)),
    Case("space before the colon", _req(b"GET / HTTP/1.1\r\n" + H + b"X-A : a\r\n"), (400,)),
    Case("empty field name", _req(b"GET / HTTP/1.1\r\n" + H + b": a\r\n"), (400,)),
    Case("separator in a field name", _req(b"GET / HTTP/1.1\r\n" + H + b"X(A): a\r\n"), (400,)),
    Case("field line over 8190 bytes", _req(b"GET / HTTP/1.1\r\n" + H + b"X-A: " +
                                            b"a" * 9000 + b"\r\n"), (431,)),
    Case("more than 100 field lines", _req(b"GET / HTTP/1.1\r\n" + H +
                                           b"".join(b"X-%d: a\r\n" % i for i in range(120))),
         (431,)),
    # -- Content-Length --
    Case("negative Content-Length", _req(b"POST / HTTP/1.1\r\n" + H +
                                         b"Content-Length: -1\r\n", b"x"), (400,)),
    Case("text Content-Length", _req(b"POST / HTTP/1.1\r\n" + H +
                                     b"Content-Length: five\r\n", b"hello"), (400,)),
    Case("signed Content-Length", _req(b"POST / HTTP/1.1\r\n" + H +
                                       b"Content-Length: +5\r\n", b"hello"), (400,)),
    Case("Content-Length list with differing values",
         _req(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1, 5\r\n", b"hello"), (400,)),
    Case("two differing Content-Length fields",
         _req(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 5\r\n",
              b"hello"), (400,)),
    Case("Content-Length of 30 digits", _req(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: "
                                             + b"9" * 30 + b"\r\n", b"x"), (400, 413)),
    Case("body shorter than Content-Length", _req(b"POST / HTTP/1.1\r\n" + H +
                                                  b"Content-Length: 10\r\n", b"short"), (400,)),
    # -- Transfer-Encoding and smuggling shapes --
    Case("Content-Length and chunked together (CL.TE)",
         _req(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n"
              b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"),
         (400,)),
    Case("chunked and Content-Length together (TE.CL)",
         _req(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
              b"Content-Length: 3\r\n", b"5\r\nhello\r\n0\r\n\r\n"), (400,)),
    Case("Transfer-Encoding: chunked, identity",
         _req(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n",
              b"5\r\nhello\r\n0\r\n\r\n"), (400, 501)),
    Case("Transfer-Encoding: identity", _req(b"POST / HTTP/1.1\r\n" + H +
                                             b"Transfer-Encoding: identity\r\n", b"hello"),
         (400, 501)),
    Case("Transfer-Encoding: xchunked", _req(b"POST / HTTP/1.1\r\n" + H +
                                             b"Transfer-Encoding: xchunked\r\n",
                                             b"5\r\nhello\r\n0\r\n\r\n"), (400, 501)),
    Case("Transfer-Encoding: gzip, chunked",
         _req(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n",
              b"5\r\nhello\r\n0\r\n\r\n"), (400, 501)),
    Case("chunked twice", _req(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
                               b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"), (400, 501)),
    Case("Transfer-Encoding folded onto the next line",
         _req(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n",
              b"0\r\n\r\n"), (400,)),
    Case("space before the Transfer-Encoding colon",
         _req(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
         (400,)),
    Case("vertical tab before chunked", _req(b"POST / HTTP/1.1\r\n" + H +
                                             b"Transfer-Encoding:\x0bchunked\r\n",
                                             b"0\r\n\r\n"), (400,)),
    Case("Transfer-Encoding in an HTTP/1.0 request",
         _req(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n",
              b"hello"), (400,)),
    Case("chunk size overflowing 64 bits",
         _req(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n",
              b"10000000000000001\r\nx\r\n0\r\n\r\n"), (400, 413)),
    Case("chunk size that is not hex", _req(b"POST / HTTP/1.1\r\n" + H +
                                            b"Transfer-Encoding: chunked\r\n",
                                            b"g\r\nhello\r\n0\r\n\r\n"), (400,)),
    Case("chunk size with 0x", _req(b"POST / HTTP/1.1\r\n" + H +
                                    b"Transfer-Encoding: chunked\r\n",
                                    b"0x5\r\nhello\r\n0\r\n\r\n"), (400,)),
    Case("negative chunk size", _req(b"POST / HTTP/1.1\r\n" + H +
                                     b"Transfer-Encoding: chunked\r\n",
                                     b"-5\r\nhello\r\n0\r\n\r\n"), (400,)),
    Case("chunk longer than its size", _req(b"POST / HTTP/1.1\r\n" + H +
                                            b"Transfer-Encoding: chunked\r\n",
                                            b"3\r\nhello\r\n0\r\n\r\n"), (400,)),
    Case("chunk lines ended by bare LF", _req(b"POST / HTTP/1.1\r\n" + H +
                                              b"Transfer-Encoding: chunked\r\n",
                                              b"5\nhello\n0\n\n"), (400,)),
    Case("missing final chunk", _req(b"POST / HTTP/1.1\r\n" + H +
                                     b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n"),
         (400,)),
    Case("chunk extension without a name", _req(b"POST / HTTP/1.1\r\n" + H +
                                                b"Transfer-Encoding: chunked\r\n",
                                                b"5;\r\nhello\r\n0\r\n\r\n"), (400,)),
    Case("chunk extension with a bare CR", _req(b"POST / HTTP/1.1\r\n" + H +
                                                b"Transfer-Encoding: chunked\r\n",
                                                b"5;a=b\rc\r\nhello\r\n0\r\n\r\n"), (400,)),
    Case("space inside a chunk size", _req(b"POST / HTTP/1.1\r\n" + H +
                                           b"Transfer-Encoding: chunked\r\n",
                                           b"3 4\r\nabc\r\n0\r\n\r\n"), (400,)),
    Case("space before a chunk size", _req(b"POST / HTTP/1.1\r\n" + H +
                                           b"Transfer-Encoding: chunked\r\n",
                                           b" 3\r\nabc\r\n0\r\n\r\n"), (400,)),
    Case("whitespace then a bare semicolon", _req(b"POST / HTTP/1.1\r\n" + H +
                                                  b"Transfer-Encoding: chunked\r\n",
                                                  b"3 ;\r\nabc\r\n0\r\n\r\n"), (400,)),
    Case("chunk extension name with a space inside",
         _req(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n",
              b"3;a b=c\r\nabc\r\n0\r\n\r\n"), (400,)),
    # -- singleton fields (RFC 9110: not a list, so two lines cannot be combined) --
    Case("duplicate Content-Type", _req(b"POST / HTTP/1.1\r\n" + H + b"Content-Type: a/b\r\n"
                                        b"Content-Type: c/d\r\nContent-Length: 1\r\n", b"x"),
         (400,)),
    Case("duplicate Content-Type with the same value",
         _req(b"GET / HTTP/1.1\r\n" + H + b"Content-Type: a/b\r\ncontent-type: a/b\r\n"),
         (400,)),
    Case("duplicate Authorization", _req(b"GET / HTTP/1.1\r\n" + H + b"Authorization: a\r\n"
                                         b"Authorization: b\r\n"), (400,)),
    Case("duplicate If-Modified-Since (a date has a comma)",
         _req(b"GET / HTTP/1.1\r\n" + H + b"If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT"
              b"\r\nIf-Modified-Since: Mon, 07 Nov 1994 08:49:37 GMT\r\n"), (400,)),
    Case("duplicate Host, second one empty", _req(b"GET / HTTP/1.1\r\n" + H + b"Host:\r\n"),
         (400,)),
    Case("two equal Content-Length fields", _req(b"POST / HTTP/1.1\r\n" + H +
                                                 b"Content-Length: 5\r\nContent-Length: 5\r\n",
                                                 b"hello"), (400,)),
    Case("repeated field over 8190 bytes once combined",
         _req(b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-A: " + b"a" * 3000 + b"\r\n"
                                                   for _ in range(3))), (431,)),
    # -- trailer fields RFC 9110 §6.5.1 keeps out of a trailer section --
    Case("Content-Length in a trailer", _req(b"POST / HTTP/1.1\r\n" + H +
                                             b"Transfer-Encoding: chunked\r\n",
                                             b"3\r\nabc\r\n0\r\nContent-Length: 3\r\n\r\n"),
         (400,)),
    Case("Transfer-Encoding in a trailer",
         _req(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n",
              b"3\r\nabc\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"), (400,)),
    Case("Host in a trailer", _req(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n",
                                   b"3\r\nabc\r\n0\r\nHost: evil.com\r\n\r\n"), (400,)),
    Case("Authorization in a trailer",
         _req(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n",
              b"3\r\nabc\r\n0\r\nAuthorization: Basic eA==\r\n\r\n"), (400,)),
    Case("chunk extension with an unterminated quote",
         _req(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n",
              b'5;a="b\r\nhello\r\n0\r\n\r\n'), (400,)),
]

CASES = VALID + MALFORMED
