"""Short-lived programs the supervisor runs itself: hook commands and command probes.

They are children of the supervisor like its workers, so two things must not happen to them:
the orphan sweep must not take one for a worker's leftover (their pids are listed here and the
sweep skips them: it reads this list *after* listing its children, and a child is forked and
listed under one lock, so it is never seen unlisted), and a worker forked at the same moment
must not inherit the exec-status pipe of their ``Popen`` (they are started under the
supervisor's private-fd lock, which every worker spawn holds too). Each runs in its own session
and is waited for by the thread that started it (never by the loop): after ``timeout`` its whole
process group is killed, and it is always reaped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence

from janus_mp.private_fds import PrivateFds


class HelperChildren:
    def __init__(self, private_fds: PrivateFds) -> None:
        self._private_fds = private_fds
        self._lock = threading.Lock()
        self._running: dict[int, subprocess.Popen[bytes]] = {}
        self._closed = False

    def pids(self) -> set[int]:
        with self._lock:
            return set(self._running)

    def run(self, argv: Sequence[str], env: Mapping[str, str], timeout: float, *,
            quiet: bool = False, kill_group: bool = False) -> int | None:
        """Run ``argv`` to its end (blocking the calling thread, never the loop); its exit
        code, or None when it ran past ``timeout`` and was killed. Raises OSError when it
        cannot start. ``quiet``: its output goes nowhere (else to the supervisor's).
        ``kill_group``: whatever it left running in its process group is killed when it ends
        (a probe run every few seconds must not pile up the children it leaves behind)."""
        output = subprocess.DEVNULL if quiet else None
        with self._private_fds.frozen(), self._lock:
            if self._closed:
                raise OSError("the supervisor is stopping")
            proc = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL,
                                    stdout=output, stderr=output, start_new_session=True)
            self._running[proc.pid] = proc
        try:
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
                return None
            if kill_group:
                # Its pid names the group while any member lives, so it cannot name another.
                _kill_group(proc.pid)
            return code
        finally:
            with self._lock:
                self._running.pop(proc.pid, None)

    def close(self) -> None:
        """Kill whatever still runs (its thread reaps it); start nothing more."""
        with self._lock:
            self._closed = True
            running = list(self._running)
        for pid in running:
            _kill_group(pid)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
