"""Run one README Python snippet as written, and stop what it starts once it is up.

``python run_snippet.py SNIPPET.py``: the snippet runs as ``__main__``. A supervisor it starts
with ``run_until_shutdown()`` in its main thread is watched from a thread: once every service it runs has all its
workers ready (or a one-shot finished), ``SNIPPET-UP`` is printed and a graceful shutdown asked
for, so a snippet that serves for ever still ends, and a worker that crashes on a name the
snippet forgot to define shows as an exit in the snapshot and fails the run.
"""

from __future__ import annotations

import runpy
import sys
import threading
import time

from janus_mp import JanusSupervisor

DEADLINE = 60.0
_original = JanusSupervisor.run_until_shutdown


def _all_up(sup: JanusSupervisor) -> bool:
    snap = sup.snapshot()
    if snap.state != "running" or not snap.services:
        return False
    for svc in snap.services:
        life = svc.service
        if life.total_failures:
            raise SystemExit(f"service {svc.name} had a worker fail: {sup.recent_exits()}")
        one_shot_done = life.phase.value == "terminated" and life.last_exit_code == 0
        if not one_shot_done and not (life.phase.value == "running" and life.ready == life.desired):
            return False
    return True


def _watch(sup: JanusSupervisor) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            if _all_up(sup):
                print("SNIPPET-UP", flush=True)
                sup.shutdown()
                return
        except SystemExit as failed:
            print(f"SNIPPET-FAILED {failed}", flush=True)
            sup.shutdown(1)
            return
        time.sleep(0.02)  # polling a snapshot from another thread, with a deadline
    print("SNIPPET-FAILED not every service was up after 60 s", flush=True)
    sup.shutdown(1)


def _run_until_shutdown(self: JanusSupervisor) -> int:
    # A supervisor run from another thread belongs to something the snippet stops itself (a
    # TaskPool's, a snippet's own thread); only the one that would serve for ever is watched.
    if threading.current_thread() is threading.main_thread():
        threading.Thread(target=_watch, args=(self,), daemon=True).start()
    return _original(self)


JanusSupervisor.run_until_shutdown = _run_until_shutdown  # type: ignore[method-assign]

if __name__ == "__main__":
    runpy.run_path(sys.argv[1], run_name="__main__")
