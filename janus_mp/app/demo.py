"""The built-in demo: a few CPU-bound services, one of them flaky, one serving HTTP that hands
CPU work to a task pool, with their own metrics.

``janus-mp demo`` runs these under a supervisor with ``/metrics`` on localhost, so restarts,
backoff, recycling, the pool's tasks and the workers' own counters can be watched live.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from typing import Any

from prometheus_client import Counter, Histogram

from janus_mp.adapters import ApiModuleAdapter
from janus_mp.core.backoff import BackoffConfig
from janus_mp.core.config import SpawnOptions
from janus_mp.core.exits import RestartPolicy
from janus_mp.pools.client import pool
from janus_mp.service import JanusService, WorkerContext

PRIMES_FOUND = Counter("demo_primes_found_total", "Primes found by the primes service")
HASHES_DONE = Counter("demo_hashes_total", "SHA-256 rounds done by the hasher service")
HTTP_REQUESTS = Counter("demo_http_requests_total", "Requests answered by the web service",
                        ["path"])
BATCH_SECONDS = Histogram("demo_batch_seconds", "Time per unit of demo work", ["service"])


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


class Primes(JanusService):
    """Counts primes in consecutive blocks: pure-Python CPU work."""

    name = "primes"

    def run(self, ctx: WorkerContext) -> None:
        start = 10_000_000 + ctx.index * 1_000_000
        while not ctx.shutdown.is_cancelled():
            t0 = time.perf_counter()
            PRIMES_FOUND.inc(sum(1 for n in range(start, start + 2_000) if _is_prime(n)))
            BATCH_SECONDS.labels("primes").observe(time.perf_counter() - t0)
            start += 2_000
            ctx.heartbeat()


class Hasher(JanusService):
    """Chains SHA-256 rounds: CPU work in C, the GIL released between calls."""

    name = "hasher"

    def run(self, ctx: WorkerContext) -> None:
        digest = os.urandom(32)
        while not ctx.shutdown.wait(0.01):
            t0 = time.perf_counter()
            for _ in range(5_000):
                digest = hashlib.sha256(digest).digest()
            HASHES_DONE.inc(5_000)
            BATCH_SECONDS.labels("hasher").observe(time.perf_counter() - t0)
            ctx.heartbeat()


class Flaky(JanusService):
    """Works for a few seconds, then crashes: shows restarts, backoff and the breaker."""

    name = "flaky"

    def run(self, ctx: WorkerContext) -> int:
        rng = random.Random()
        lifetime = rng.uniform(2.0, 8.0)
        deadline = time.monotonic() + lifetime
        while time.monotonic() < deadline:
            if ctx.shutdown.wait(0.1):
                return 0
            ctx.heartbeat()
        ctx.logger.warning("flaky[%d]: crashing on purpose after %.1fs", ctx.index, lifetime)
        return 1


#: The task pool the demo's web service hands work to (`[pools.crunch]` in a config file).
POOL = "crunch"


def count_primes(n: int) -> int:
    """Primes below ``n`` in pure Python: what /primes computes in the web worker itself and
    /pool hands to a worker of the task pool."""
    return sum(1 for k in range(min(n, 200_000)) if _is_prime(k))


def web_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """GET /primes?n=N counts primes below N (capped) in the web worker: CPU-bound per request;
    GET /pool?n=N has a worker of the task pool count them (the web worker only waits)."""
    path = environ.get("PATH_INFO", "/")
    query = environ.get("QUERY_STRING", "")
    n = int(query[2:]) if query.startswith("n=") and query[2:].isdigit() else 20_000
    if path == "/primes":
        body = f"{count_primes(n)}\n".encode()
        status = "200 OK"
    elif path == "/pool":
        body = f"{pool(POOL).submit(count_primes, n).result(timeout=60)}\n".encode()
        status = "200 OK"
    elif path == "/":
        body = b"janus-mp demo: try /primes?n=50000 or /pool?n=50000\n"
        status = "200 OK"
    else:
        body, status = b"not found\n", "404 Not Found"
    HTTP_REQUESTS.labels(path if status.startswith("200") else "other").inc()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                            ("X-Worker-Pid", str(os.getpid()))])
    return [body]


def demo_services(workers: int = 2,
                  http_bind: str | None = "127.0.0.1:8000") -> list[tuple[JanusService,
                                                                         SpawnOptions]]:
    web: list[tuple[JanusService, SpawnOptions]] = []
    if http_bind is not None:  # the HTTP service, recycled every ~1,000 requests
        web.append((ApiModuleAdapter(web_app, bind=http_bind, name="web"),
                    SpawnOptions(workers=workers, max_requests=1000, max_requests_jitter=100)))
    return web + [
        (Primes(), SpawnOptions(workers=workers, watchdog_timeout=10.0)),
        (Hasher(), SpawnOptions(workers=workers, watchdog_timeout=10.0)),
        (Flaky(), SpawnOptions(
            workers=2, restart=RestartPolicy.ON_FAILURE,
            backoff=BackoffConfig(initial_delay=0.5, max_delay=10.0, max_retries=30, window=120.0,
                                  half_open_after=15.0, trial_period=5.0, cooldown=20.0))),
    ]
