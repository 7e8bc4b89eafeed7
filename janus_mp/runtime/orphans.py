"""Children that are not workers: the guard, multiprocess's helpers and adopted orphans.

The supervisor is a child subreaper, so whatever a dead worker left behind is re-parented to it.
After worker exits it kills such leftovers; on SIGCHLD it reaps every zombie child that is not
a worker (workers are reaped through their own door, see :mod:`processes`). Zombies are looked
up by pid, one ``waitpid(pid, WNOHANG)`` each, never by ``waitid(P_ALL)`` order: a zombie this
code must skip would otherwise hide every other one behind it.

The guard (:mod:`deadman`) is one of these children. If it dies, it is reaped like any other,
logged, and forked again with every tracked worker sent to the new one.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Collection

from janus_mp import osproc
from janus_mp.runtime.deadman import DeadMansSwitch

log = logging.getLogger("janus_mp.supervisor")

#: After the last worker is gone, how long shutdown waits for SIGKILLed strays to be reaped.
STRAY_GRACE = 2.0


class Orphans:
    def __init__(self, name: str, enabled: bool,
                 worker_pids: Callable[[], Collection[int]]) -> None:
        self.name = name  # the supervisor's, for log lines
        self.enabled = enabled
        self._worker_pids = worker_pids
        self.guard: DeadMansSwitch | None = None
        self.pending: set[int] = set()  # killed, not reaped yet
        self._give_up_at: float | None = None
        #: Children someone else waits for (the next supervisor of an upgrade): neither
        #: swept as orphans nor reaped here.
        self.kept: set[int] = set()

    def open(self) -> None:
        if not self.enabled:
            return
        osproc.set_child_subreaper()
        self.guard = DeadMansSwitch()
        self.guard.start()

    def close(self) -> None:
        if self.enabled:
            self.sweep(sigchld_reaps=False)
            for pid in list(self.pending):
                _blocking_reap(pid)
            self.pending.clear()
        if self.guard is not None:
            self.guard.close()
            self.guard = None
        if self.enabled:  # the hosting process is ours no longer
            osproc.set_child_subreaper(False)

    def strays_deadline(self, now: float) -> float | None:
        """At shutdown, once the workers are gone: when to look again for killed strays not
        yet reaped, or None when there are none left — or they had STRAY_GRACE seconds (a
        process stuck in the kernel cannot be reaped; the supervisor exits without it)."""
        if not self.pending:
            return None
        if self._give_up_at is None:
            self._give_up_at = now + STRAY_GRACE
        if now < self._give_up_at:
            return self._give_up_at
        log.warning("%s: pids %s were killed but not reaped in time: exiting without them",
                    self.name, sorted(self.pending))
        return None

    # -- the guard ---------------------------------------------------------------------------
    def track(self, pid: int) -> None:
        if self.guard is not None:
            self.guard.track(pid)
            if self.guard.broken:
                self._replace_guard("stopped reading")

    def untrack(self, pid: int) -> None:
        if self.guard is not None:
            self.guard.untrack(pid)

    def guard_fds(self) -> list[int]:
        return [self.guard.fileno] if self.guard is not None and self.guard.fileno >= 0 else []

    def _replace_guard(self, why: str) -> None:
        assert self.guard is not None
        old = self.guard.pid
        if old is not None and osproc.process_state(old) not in (None, "Z"):
            osproc.signal_process(old, signal.SIGKILL)  # wedged: a new one takes over
        pid = self.guard.start()
        log.warning("the guard process (pid %s) %s: started a new one (pid %d)", old, why, pid)

    # -- reaping and sweeping ----------------------------------------------------------------
    def protected(self) -> set[int]:
        """Children that are ours but neither workers nor orphans: never killed here."""
        pids = _multiprocess_helper_pids()
        if self.guard is not None and self.guard.pid is not None:
            pids.add(self.guard.pid)
        return pids | self.kept

    def reap(self) -> None:
        """Reap every zombie child that is not a worker; replace a dead guard."""
        if not self.enabled and not self.pending:
            return
        children = osproc.children_of(os.getpid())
        workers = self._worker_pids()  # after the listing: see runtime/helper_children.py
        for pid in children:
            if pid in workers or pid in self.kept or osproc.process_state(pid) != "Z":
                continue
            if osproc.reap_nonblocking(pid) is None:
                continue
            self.pending.discard(pid)
            if self.guard is not None and pid == self.guard.pid:
                self._replace_guard("died")

    def sweep(self, sigchld_reaps: bool = True) -> None:
        """Kill what dead workers left behind: children that are neither workers nor ours."""
        if not self.enabled:
            return
        children = osproc.children_of(os.getpid())
        workers = self._worker_pids()  # after the listing: see runtime/helper_children.py
        protected = self.protected()
        for pid in children:
            if pid in workers or pid in protected:
                continue
            if osproc.process_state(pid) == "Z":
                osproc.reap_nonblocking(pid)
                self.pending.discard(pid)
                continue
            if pid not in self.pending:
                log.warning("killing pid %d, left behind by a worker", pid)
            osproc.signal_process(pid, signal.SIGKILL)
            self.pending.add(pid)
        if self.pending and not sigchld_reaps:
            for pid in list(self.pending):  # no SIGCHLD handler: reap them now (SIGKILLed)
                _blocking_reap(pid)
                self.pending.discard(pid)


def _multiprocess_helper_pids() -> set[int]:
    """The fork server and resource tracker multiprocess starts (spawn/forkserver methods)."""
    try:
        from multiprocess import forkserver, resource_tracker
    except ImportError:
        return set()
    pids = {getattr(resource_tracker._resource_tracker, "_pid", None),
            getattr(forkserver._forkserver, "_forkserver_pid", None)}
    return {pid for pid in pids if pid}


def _blocking_reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
