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
