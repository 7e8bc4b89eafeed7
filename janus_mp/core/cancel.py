"""The cancellation tree (the seed's CancellationToken): supervisor → service → worker → ….

Bookkeeping only, free of OS calls: each node owns a *flag* (anything with ``set``, ``is_set``
and ``wait``) made by an injected factory, so the same tree runs on in-process flags in unit tests
and on :class:`janus_mp.runtime.shared_event.SharedEvent` across processes.

Invariants:
- ``cancel()`` sets the flags of the node and of its whole subtree, never a parent or sibling.
- A node, once cancelled, stays cancelled; ``cancel()`` is idempotent and keeps the first reason.
- A child made after its parent was cancelled is born cancelled (register first, then check the
  parent, so a concurrent ``cancel()`` either sees the child or the child sees the parent's flag).
- Across a process boundary the subtree is cut: a worker receives only its own node. Its parent
  (in the supervisor) sets the shared flag; the worker-side bridge calls ``cancel()`` to reach
  the children the worker made locally. ``is_cancelled()`` also looks up the ancestors it knows,
  so it is right even before the bridge has run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Flag(Protocol):
    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


FlagFactory = Callable[[], Flag]


class CancellationToken:
    """One node of the tree. Cheap to make; safe to share between threads of one process."""

    __slots__ = ("name", "_flag", "_factory", "_parent", "_children", "_reason", "_callbacks")

    def __init__(
        self,
        flag_factory: FlagFactory,
        *,
        name: str = "root",
        parent: CancellationToken | None = None,
        flag: Flag | None = None,
    ) -> None:
        self.name = name
        self._factory = flag_factory
        self._flag: Flag = flag if flag is not None else flag_factory()
        self._parent = parent
        # A dict used as an ordered set: detaching one of 1,000 workers is O(1), not a scan.
        self._children: dict[CancellationToken, None] = {}
        self._reason: str | None = None
        self._callbacks: list[Callable[[CancellationToken], None]] = []

    # -- tree ------------------------------------------------------------------------------
    def child(self, name: str = "") -> CancellationToken:
        """A new node below this one; cancelling this one cancels it."""
        node = CancellationToken(self._factory, name=name or f"{self.name}.{len(self._children)}",
                                 parent=self)
        self._children[node] = None
        if self.is_cancelled():
            node.cancel(self._reason or "cancelled")
        return node

    def detach(self) -> None:
        """Forget this node in its parent (a reaped worker's node is dropped, not kept forever)."""
        parent = self._parent
        if parent is not None:
            parent._children.pop(self, None)
        self._parent = None
        release = getattr(self._flag, "release", None)
        if release is not None:  # a flag from a shared arena goes back to it
            release()

    @property
    def parent(self) -> CancellationToken | None:
        return self._parent

    @property
    def children(self) -> tuple[CancellationToken, ...]:
        return tuple(self._children)

    @property
    def flag(self) -> Flag:
        return self._flag

    # -- cancellation ----------------------------------------------------------------------
    def cancel(self, reason: str = "cancelled") -> list[CancellationToken]:
        """Cancel this node and its subtree; return the nodes this call newly cancelled."""
        newly: list[CancellationToken] = []
        stack: list[CancellationToken] = [self]
        while stack:
            node = stack.pop()
            if node._reason is None:
                node._reason = reason
                node._flag.set()
                newly.append(node)
            elif not node._flag.is_set():  # reason recorded remotely: make sure the flag is set
                node._flag.set()
            stack.extend(node._children)  # (its keys)
        for node in newly:
            for callback in list(node._callbacks):
                callback(node)
        return newly

    def on_cancel(self, callback: Callable[[CancellationToken], None]) -> None:
        """Call ``callback(node)`` when this node is cancelled through :meth:`cancel`."""
        self._callbacks.append(callback)

    def is_cancelled(self) -> bool:
        node: CancellationToken | None = self
        while node is not None:
            if node._flag.is_set():
                if node is not self and self._reason is None:
                    self.cancel(node._reason or "cancelled")
                return True
            node = node._parent
        return False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout`` seconds passed; True if cancelled."""
        if self.is_cancelled():
            return True
        return self._flag.wait(timeout) or self.is_cancelled()

    @property
    def reason(self) -> str | None:
        return self._reason

    def __repr__(self) -> str:
        state = "cancelled" if self._flag.is_set() else "live"
        return f"<CancellationToken {self.name} {state} children={len(self._children)}>"

    # -- crossing into a worker ------------------------------------------------------------
    def __reduce__(self) -> tuple[object, ...]:
        # Only the node itself crosses: the worker sees a root whose flag is shared with ours.
        return (_rebuild, (self._factory, self.name, self._flag))


def _rebuild(factory: FlagFactory, name: str, flag: Flag) -> CancellationToken:
    return CancellationToken(factory, name=name, flag=flag)
