"""The supervisor's side of an upgrade: what it hands to the next supervisor, and what it
adopts from the previous one.

    old supervisor                                   new supervisor
    ──────────────                                   ──────────────
    fds(): listening sockets by address,  ─ fds ─►   adopt(): ListenerSet and the metrics
           the metrics endpoint's socket              endpoint take them instead of binding
    keep_child(new pid): not an orphan
    hand_over(new pid): closing later keeps
           unix socket files and the new one's
           metrics files (it serves them)

The decisions (when to start the new supervisor, how long to wait, what to do if it fails) are
the app layer's (:mod:`janus_mp.app.upgrade`); this is only the access to the runtime's parts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from janus_mp.runtime.listeners import ListenerSet
from janus_mp.runtime.observability import Observability
from janus_mp.runtime.orphans import Orphans

T = TypeVar("T")


class HandoverPort:
    def __init__(self, listeners: ListenerSet, observability: Observability, orphans: Orphans,
                 in_loop: Callable[[Callable[[], Any]], Any]) -> None:
        self._listeners = listeners
        self._observability = observability
        self._orphans = orphans
        self._in_loop = in_loop  # the listener set belongs to the loop thread

    # -- the new supervisor, before it runs ------------------------------------------------------
    def adopt(self, listeners: Mapping[str, int], metrics_fd: int | None,
              previous: int) -> None:
        """Serve these inherited listening fds (address text → fd) instead of binding; the
        ``previous`` supervisor's workers still write to a shared metrics_dir."""
        self._listeners.adopt(dict(listeners))
        self._observability.inherited_fd = metrics_fd
        self._observability.share_with(previous)

    def close_unadopted(self) -> list[str]:
        """Once every service is registered: close inherited sockets none of them took."""
        dropped: list[str] = self._in_loop(self._listeners.close_unadopted)
        return dropped

    # -- the old supervisor ---------------------------------------------------------------------
    def fds(self) -> tuple[dict[str, int], int | None]:
        """The listening sockets' fds by address text, and the metrics endpoint's."""
        listeners: dict[str, int] = self._in_loop(self._listeners.by_address)
        return listeners, self._observability.listening_fd

    def keep_child(self, pid: int) -> None:
        """``pid`` is our child but neither a worker nor an orphan: never kill or reap it."""
        self._in_loop(lambda: self._orphans.kept.add(pid))

    def release_child(self, pid: int) -> None:
        self._in_loop(lambda: self._orphans.kept.discard(pid))

    def hand_over(self, successor: int) -> None:
        """The ``successor`` serves our sockets now: never unlink their files, nor its
        workers' metrics files."""
        self._in_loop(self._listeners.hand_over)
        self._observability.share_with(successor)
