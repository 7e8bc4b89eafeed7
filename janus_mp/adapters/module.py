"""ModuleAdapter: supervise code that was not written for janus-mp.

Shapes it accepts, checked in the supervisor when the adapter is built (so a wrong target fails
in one line before any worker starts):

    ============================  ==============================================================
    ``obj.start()`` + ``stop()``  start() may block until stop() (a server) or return at once
                                  (background threads); either way stop() ends it
    ``obj.run()`` + ``close()``   run() blocks; close() (or stop()) makes it return
    a module with ``main()``      main() blocks; a stop raises KeyboardInterrupt in it, as
                                  Ctrl-C would
    a callable ``fn()``           the same; ``async def`` functions are run in an event loop and
                                  cancelled on stop
    a class of the first two      instantiated in each worker (fresh state per process)
    ============================  ==============================================================

Exit codes: a return value that is an int is the exit code; an exception is logged and maps to
``exit_codes[type]`` (first matching entry, by isinstance) or 1; a KeyboardInterrupt caused by
our own stop is a clean exit (0).
"""

from __future__ import annotations

import inspect
import logging
import signal
import threading
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from janus_mp.adapters._stop import Once, when_cancelled
from janus_mp.core.exits import ReservedExit
from janus_mp.errors import ConfigError, ServiceLoadError
from janus_mp.service import JanusService

if TYPE_CHECKING:
    from janus_mp.service import WorkerContext

log = logging.getLogger("janus_mp.adapters.module")

_SHAPES = (("start", "stop"), ("run", "close"), ("run", "stop"))


class ModuleAdapter(JanusService):
    """Run ``target`` in every worker, stopped through the worker's cancellation token."""

    can_heartbeat = False  # foreign code never calls ctx.heartbeat()

    def __init__(self, target: object, *, name: str | None = None,
                 exit_codes: Mapping[type[BaseException], int] | None = None) -> None:
        if isinstance(target, str):
            from janus_mp.targets import import_module_target, import_target

            target = import_target(target) if ":" in target else import_module_target(target)
        self.target = target
        drive = _shape_of(target)
        #: ("start", "stop")-like method names, or None when the target is called.
        self._methods = drive if isinstance(drive, tuple) else None
        self._call = None if isinstance(drive, tuple) else drive
        self.shape = "methods" if self._methods else "call"
        self.exit_codes = dict(exit_codes or {})
        for kind, code in self.exit_codes.items():
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise ConfigError("exit_codes", f"{kind!r} is not an exception class")
            if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
                raise ConfigError("exit_codes", f"exit code {code!r} for {kind.__name__} must "
                                                "be an integer from 0 to 255")
        self.name = name or _default_name(target)

    def identity(self) -> object:
        return (type(self), self.target, tuple(self.exit_codes.items()))

    def __repr__(self) -> str:
        return f"ModuleAdapter({self.target!r}, shape={self.shape!r}, name={self.name!r})"

    def run(self, ctx: WorkerContext) -> int | None:
        try:
            if self._methods is None:
                return self._run_callable(ctx)
            obj = self.target() if isinstance(self.target, type) else self.target
            begin, end = (getattr(obj, method) for method in self._methods)
            if self._methods[0] == "start":
                return self._run_start_stop(ctx, begin, end)
            when_cancelled(ctx.shutdown, end)
            return _as_code(begin())
        except Exception as exc:
            return self._code_for(exc, ctx)

    # -- shapes ------------------------------------------------------------------------------
    def _run_start_stop(self, ctx: WorkerContext, start: Callable[[], Any],
                        stop: Callable[[], Any]) -> int | None:
        returned = threading.Event()
        stop_once = Once(stop)
        # While start() blocks (a server), the stop must come from the bridge thread; once it
        # has returned (background threads), this thread waits and stops it itself.
        when_cancelled(ctx.shutdown, lambda: None if returned.is_set() else stop_once())
        if ctx.shutdown.is_cancelled():
            return 0
        result = start()
        returned.set()
        ctx.shutdown.wait()
        stop_once()
        return _as_code(result)

    def _run_callable(self, ctx: WorkerContext) -> int | None:
        fn = self._call
        assert fn is not None
        if inspect.iscoroutinefunction(fn):
            return self._run_coroutine(ctx, fn)
        if threading.current_thread() is not threading.main_thread():
            raise ServiceLoadError("ModuleAdapter runs plain callables in the main thread")
        # The worker resets SIGINT to its default action; Python's own handler turns it into
        # KeyboardInterrupt, which also breaks a blocking system call (sleep, select, accept).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        main_thread = threading.main_thread().ident
        assert main_thread is not None
        when_cancelled(ctx.shutdown, lambda: signal.pthread_kill(main_thread, signal.SIGINT))
        try:
            if ctx.shutdown.is_cancelled():
                return 0
            return _as_code(fn())
        except KeyboardInterrupt:
            if ctx.shutdown.is_cancelled():
                return 0
            raise

    def _run_coroutine(self, ctx: WorkerContext, fn: Callable[[], Any]) -> int | None:
        import asyncio  # here: only coroutine services pay for it (in their worker)

        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(fn())
            when_cancelled(ctx.shutdown, lambda: loop.call_soon_threadsafe(task.cancel))
            try:
                return _as_code(loop.run_until_complete(task))
            except asyncio.CancelledError:
                if ctx.shutdown.is_cancelled():
                    return 0
                raise
        finally:
            loop.close()

    def _code_for(self, exc: Exception, ctx: WorkerContext) -> int:
        for kind, code in self.exit_codes.items():
            if isinstance(exc, kind):
                log.error("%s[%d]: %s: %s (exit code %d)", ctx.service, ctx.index,
                          type(exc).__name__, exc, code)
                return code
        log.error("%s[%d] (pid %d) crashed", ctx.service, ctx.index, ctx.pid, exc_info=exc)
        return int(ReservedExit.FAILURE)


def _shape_of(target: object) -> tuple[str, str] | Callable[[], Any]:
    """How to drive ``target``: the names of its begin/end methods, or the function to call."""
    for begin, end in _SHAPES:
        if callable(getattr(target, begin, None)) and callable(getattr(target, end, None)):
            if isinstance(target, type):
                _check_no_arg_constructor(target)
            return begin, end
    if isinstance(target, types.ModuleType):
        main = getattr(target, "main", None)
        if callable(main):
            return main  # type: ignore[no-any-return]
        raise ServiceLoadError(f"module {target.__name__!r} has no main() (nor start()/stop(), "
                               "run()/close())")
    if isinstance(target, type):
        raise ServiceLoadError(f"class {target.__name__} has no start()/stop() or "
                               "run()/close() methods")
    if callable(target):
        _check_no_arguments(target)
        return target
    raise ServiceLoadError(f"{target!r} has no start()/stop(), run()/close() or main(), and is "
                           "not callable")


def _check_no_arguments(fn: Callable[..., Any]) -> None:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return
    required = [p.name for p in params if p.default is p.empty and
                p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if required:
        raise ServiceLoadError(f"{getattr(fn, '__qualname__', fn)!r} needs arguments "
                               f"({', '.join(required)}): ModuleAdapter calls it with none")


def _check_no_arg_constructor(cls: type) -> None:
    try:
        _check_no_arguments(cls)
    except ServiceLoadError:
        raise ServiceLoadError(f"class {cls.__name__} needs constructor arguments: pass an "
                               "instance to ModuleAdapter instead") from None


def _default_name(target: object) -> str:
    raw = getattr(target, "__name__", None) or type(target).__name__
    name = str(raw).rsplit(".", 1)[-1].lower()
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64] or "module"


def _as_code(result: object) -> int | None:
    return result if isinstance(result, int) and not isinstance(result, bool) else None
