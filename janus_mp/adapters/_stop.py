"""Wiring a foreign stop method to the worker's cancellation token, exactly once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from janus_mp.core.cancel import CancellationToken

log = logging.getLogger("janus_mp.adapters")


class Once:
    """Call ``fn`` the first time; later callers wait until that first call has finished."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._done = False

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            try:
                self._fn()
            except Exception:  # it may run in the bridge thread, which must never die
                log.exception("stopping %r failed", self._fn)

    @property
    def done(self) -> bool:
        return self._done


def when_cancelled(token: CancellationToken, fn: Callable[[], object]) -> Once:
    """Run ``fn`` (once) when ``token`` is cancelled — from the worker's bridge thread, which
    cancels the token when the supervisor asks — or now, if it already is."""
    once = Once(fn)
    token.on_cancel(lambda _node: once())
    if token.is_cancelled():
        once()
    return once
