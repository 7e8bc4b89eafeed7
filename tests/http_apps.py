"""Applications the HTTP adapter tests serve (imported by scenario scripts and the CLI)."""

from __future__ import annotations

import os
import time

from tests.scenario_lib import record

_hog: list[bytearray] = []


def wsgi_app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/slow":
        record("slow-start", os.getpid())
        time.sleep(float(environ.get("QUERY_STRING") or 1.5))
        body = b"slow done\n"
    elif path == "/grow":
        _hog.append(bytearray(64 * 2**20))
        body = b"grew\n"
    elif path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
    else:
        body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                              ("X-Pid", str(os.getpid()))])
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    import asyncio

    body = b"ok\n"
    if scope["path"] == "/slow":
        record("slow-start", os.getpid())
        await asyncio.sleep(float(scope.get("query_string") or b"1.5"))
        body = b"slow done\n"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"x-pid", str(os.getpid()).encode())]})
    await send({"type": "http.response.body", "body": body})


def conformance_app(environ, start_response):
    """Echoes what a request looked like to a WSGI app (environ strings and the body read), and
    misbehaves on purpose under a few paths the conformance tests use."""
    import json

    path = environ["PATH_INFO"]
    if path == "/split":  # response splitting attempt: must become a 500, never be sent
        start_response("200 OK", [("X-A", "a\r\nSet-Cookie: injected=1")])
        return [b"split\n"]
    if path == "/hop":  # hop-by-hop headers are the server's: dropped, not a 500
        start_response("200 OK", [("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"),
                                  ("Transfer-Encoding", "gzip"), ("Content-Type", "text/plain")])
        return [b"hop\n"]
    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        start_response(f"{code} Whatever", [("Content-Type", "text/plain")])
        return [b"must not be sent\n"]
    if path == "/stream-fail":
        def stream():
            yield b"first part\n"
            yield b"second part\n"
            raise RuntimeError("the generator failed half-way")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream()
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (f"line {i}\n".encode() for i in range(5))
    if path == "/sleep":  # a handler that takes a while (I/O-bound, say)
        time.sleep(float(environ.get("QUERY_STRING") or 0.2))
    if path == "/ignore-body":  # answers without reading the body
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "8")])
        return [b"ignored\n"]
    if path == "/first-byte":  # answers after reading one byte of the body
        first = environ["wsgi.input"].read(1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app ran, first byte " + first + b"\n"]
    if path == "/swallow":  # reads the whole body, hiding any error from the server
        try:
            environ["wsgi.input"].read()
        except Exception as exc:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [f"swallowed {type(exc).__name__}\n".encode()]
    body = environ["wsgi.input"].read()
    seen = {k: v for k, v in environ.items() if isinstance(v, (str, bool))}
    seen["body"] = body.decode("latin-1")
    payload = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(payload))), ("X-Pid", str(os.getpid()))])
    return [payload]
