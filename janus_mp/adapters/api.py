"""ApiModuleAdapter: host an HTTP application gunicorn-style — the supervisor binds the
listening socket(s) once, before any worker starts, and every worker of the pool serves on them.

    WSGI  → the sync engine (:mod:`janus_mp.adapters.wsgi_sync`): one request per idle thread,
            llhttp parsing, gunicorn's request limits, head and body deadlines, an optional
            access log (:class:`HttpSettings` holds the defaults); ``threads=1`` (the
            default) suits CPU-bound handlers; with ``threads > 1`` connections persist
            for ``keepalive`` seconds of idleness, parked off the request threads
    ASGI  → uvicorn (``pip install 'janus-mp[asgi]'``), serving on the same inherited sockets

A stop (the worker's token) drains: the worker stops accepting, answers the requests in
flight, and exits within the service's stop timeout; other workers keep the port answering.
``max_requests`` (SpawnOptions) counts answered requests and asks for a graceful recycle.
The application is imported once, in the supervisor (a bad target fails before anything
starts), and inherited by forked workers.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from janus_mp.adapters._stop import when_cancelled
from janus_mp.adapters.http_settings import HttpSettings
from janus_mp.addresses import DEFAULT_BACKLOG, parse_bind
from janus_mp.errors import ConfigError, ServiceLoadError
from janus_mp.service import JanusService

if TYPE_CHECKING:
    from janus_mp.service import WorkerContext

log = logging.getLogger("janus_mp.http")

INTERFACES = ("auto", "wsgi", "asgi")
DEFAULT_BIND = "127.0.0.1:8000"


class ApiModuleAdapter(JanusService):
    """Serve ``app`` (an object or ``"module:attr"``) from every worker of the pool."""

    def __init__(self, app: object, *, bind: str | Sequence[str] = DEFAULT_BIND,
                 interface: str = "auto", name: str | None = None,
                 backlog: int = DEFAULT_BACKLOG, threads: int = 1,
                 timeout: float = 30.0, limit_request_line: int | None = None,
                 limit_request_fields: int | None = None,
                 limit_request_field_size: int | None = None,
                 limit_request_body: int | None = None, header_timeout: float | None = None,
                 body_timeout: float | None = None, access_log: str | None = None,
                 access_log_format: str | None = None,
                 forwarded_allow_ips: str | Sequence[str] | None = None,
                 keepalive: float | None = None) -> None:
        """HTTP settings left as None take :class:`HttpSettings`' defaults (WSGI only)."""
        self.target = app if isinstance(app, str) else None
        if isinstance(app, str):
            from janus_mp.targets import import_target

            app = import_target(app)
        if not callable(app):
            raise ServiceLoadError(f"{self.target or app!r} is not an application (not callable)")
        if interface not in INTERFACES:
            raise ConfigError("interface", f"must be one of {', '.join(INTERFACES)}")
        self.app = app
        self.interface = _detect(app) if interface == "auto" else interface
        binds = (bind,) if isinstance(bind, str) else tuple(bind)
        if not binds:
            raise ConfigError("bind", "give at least one address")
        for address in binds:
            parse_bind(address)
        self.binds = binds
        if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
            raise ConfigError("backlog", "must be an integer >= 1")
        self.backlog = backlog
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError("threads", "must be an integer >= 1")
        self.threads = threads
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError("timeout", "must be a number of seconds > 0")
        self.timeout = float(timeout)
        http = {"limit_request_line": limit_request_line,
                "limit_request_fields": limit_request_fields,
                "limit_request_field_size": limit_request_field_size,
                "limit_request_body": limit_request_body, "header_timeout": header_timeout,
                "body_timeout": body_timeout, "access_log": access_log,
                "access_log_format": access_log_format,
                "forwarded_allow_ips": forwarded_allow_ips, "keepalive": keepalive}
        if self.interface == "asgi":
            for key, value in http.items():
                if value is not None:
                    raise ConfigError(key, "applies to WSGI apps only (uvicorn serves ASGI)")
        self.http = HttpSettings.from_options(**http)
        if self.interface == "asgi":
            _require_uvicorn()
        self.name = name or _default_name(self.target, app)

    def identity(self) -> object:
        return (type(self), self.app, self.interface, self.binds, self.backlog, self.threads,
                self.timeout, self.http)

    def __repr__(self) -> str:
        return (f"ApiModuleAdapter({self.target or self.app!r}, interface={self.interface!r}, "
                f"bind={list(self.binds)!r})")

    def run(self, ctx: WorkerContext) -> int | None:
        if not ctx.listeners:
            raise ServiceLoadError("no listening socket was handed to this worker")
        counter = _RequestCounter(ctx)
        if self.interface == "wsgi":
            return self._serve_wsgi(ctx, counter)
        return self._serve_asgi(ctx, counter)

    def _serve_wsgi(self, ctx: WorkerContext, counter: _RequestCounter) -> int:
        from janus_mp.adapters.wsgi_sync import SyncWsgiServer

        interval = ctx.watchdog_timeout / 3 if ctx.watchdog_timeout else None
        server = SyncWsgiServer(self.app, ctx.listeners, threads=self.threads,
                                timeout=self.timeout, settings=self.http,
                                worker=f"{ctx.service}[{ctx.index}]",
                                on_request=counter.answered, busy=counter.busy,
                                heartbeat=ctx.heartbeat, heartbeat_interval=interval)
        when_cancelled(ctx.shutdown, server.drain)
        ctx.ready()
        server.serve()
        return 0

    def _serve_asgi(self, ctx: WorkerContext, counter: _RequestCounter) -> int:
        import uvicorn

        app = self.app

        async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope.get("type") != "http":
                await app(scope, receive, send)
                return
            began = time.perf_counter()
            status = [500]

            async def send_status(message: dict[str, Any]) -> None:
                if message.get("type") == "http.response.start":
                    status[0] = int(message.get("status", 500))
                await send(message)

            counter.busy(1)
            try:
                await app(scope, receive, send_status)
            finally:
                counter.busy(-1)
                counter.answered(time.perf_counter() - began, status[0])

        config = uvicorn.Config(counted, lifespan="auto", log_config=None, access_log=False,
                                timeout_graceful_shutdown=_graceful(ctx.stop_timeout),
                                timeout_keep_alive=5, server_header=False)
        class Server(uvicorn.Server):  # uvicorn ticks every 0.1 s: each tick proves life
            async def on_tick(self, counter: int) -> bool:
                ctx.heartbeat()
                return await super().on_tick(counter)

        server = Server(config)

        def drain() -> None:
            server.should_exit = True

        when_cancelled(ctx.shutdown, drain)
        import asyncio  # here: a supervisor of WSGI or plain services never pays for it

        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(server.serve(sockets=list(ctx.listeners)))
            ctx.ready()
            loop.run_until_complete(task)
        finally:
            loop.close()
        return 0


class _RequestCounter:
    """Counts answered requests (``janus_http_requests_total`` by status and a latency
    histogram, in the workers' multiprocess metrics), tracks busy workers
    (``janus_http_busy_workers``, summed over live processes) and asks for a recycle once at
    ``ctx.max_requests``."""

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        self._limit = ctx.max_requests
        self._lock = threading.Lock()
        self.count = 0
        self._requests, durations, busy = _http_metrics()
        self._durations = durations.labels(ctx.service)
        self._busy = busy.labels(ctx.service)
        self._busy.set(0)  # the series exists (at 0) from the worker's start

    def busy(self, delta: int) -> None:
        self._busy.inc(delta)

    def answered(self, seconds: float, status: int) -> None:
        self._requests.labels(self._ctx.service, str(status)).inc()
        self._durations.observe(seconds)
        with self._lock:
            self.count += 1
            reached = self._limit is not None and self.count == self._limit
        if reached:
            self._ctx.recycle(f"served {self.count} requests (max_requests)")


_METRICS: tuple[Any, Any, Any] | None = None


def _http_metrics() -> tuple[Any, Any, Any]:
    """Built on first use, inside a worker (after its multiprocess set-up): importing janus_mp
    registers nothing in anyone's default registry."""
    global _METRICS
    if _METRICS is None:
        from prometheus_client import Counter, Gauge, Histogram

        _METRICS = (
            Counter("janus_http_requests_total", "Requests answered by API workers, by status",
                    ["service", "status"]),
            Histogram("janus_http_request_duration_seconds",
                      "Time from accepting a request to the end of its response (WSGI) or of "
                      "the app call (ASGI)", ["service"],
                      buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)),
            Gauge("janus_http_busy_workers", "Request handlers of live API workers busy with "
                  "a connection (WSGI) or a request (ASGI)", ["service"],
                  multiprocess_mode="livesum"),
        )
    return _METRICS


def _detect(app: object) -> str:
    """ASGI apps are coroutine functions (or objects whose __call__ is one); the rest is WSGI."""
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else \
        getattr(app, "__call__", None)  # noqa: B004 - the bound __call__ is what we inspect
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app):
        return "asgi"
    return "wsgi"


def _require_uvicorn() -> None:
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        raise ServiceLoadError("serving an ASGI app needs uvicorn: pip install "
                               "'janus-mp[asgi]'") from None


def _default_name(target: str | None, app: object) -> str:
    """The top package of ``pkg.module:app`` (``djsite.wsgi:application`` → ``djsite``): the
    name users know their project by, not ``wsgi``."""
    raw = target.partition(":")[0].split(".", 1)[0] if target else \
        getattr(app, "__name__", None) or type(app).__name__
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(raw).lower())[:64]
    return name or "api"


def _graceful(stop_timeout: float) -> int | None:
    """uvicorn's own drain time: a second less than ours; None (no limit) for "infinity"."""
    if stop_timeout == float("inf"):
        return None
    return max(int(stop_timeout) - 1, 1)
