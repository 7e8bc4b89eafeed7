"""The benchmark's WSGI app: every request does the same pure-Python CPU work (~5 ms here).

``BENCH_HTTP_ITERATIONS`` (set by scripts/bench_http.py after calibrating once) fixes the work,
so every system under test runs exactly the same handler.
"""

from __future__ import annotations

import os

ITERATIONS = int(os.environ.get("BENCH_HTTP_ITERATIONS", "40000"))
BODY = b"done\n"


def work(iterations: int = ITERATIONS) -> int:
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def app(environ, start_response):  # type: ignore[no-untyped-def]
    work()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY))),
                              ("X-Pid", str(os.getpid()))])
    return [BODY]
