"""`janus-mp run --reload`: development mode. When a Python file under the project changes,
the workers are replaced by ones running the new code.

Under spawn and forkserver a new worker imports the code again: every service is
rolling-restarted. Under fork a worker is a copy of the supervisor, old modules and all, so the
whole supervisor is upgraded (:mod:`janus_mp.app.upgrade`): a new one, started the same way,
takes the sockets over. Watching is the well-kept ``watchfiles`` library's (the ``reload``
extra); its thread only reports changes, the supervisor's API does the rest.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from janus_mp.errors import JanusError

log = logging.getLogger("janus_mp.reload")


class FileWatcher:
    """Calls ``on_change(paths)`` from its own thread for each batch of changed .py files."""

    def __init__(self, root: str, on_change: Callable[[list[str]], None]) -> None:
        self.root = os.path.abspath(root)
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            import watchfiles
        except ImportError:
            raise JanusError("--reload needs the watchfiles library: "
                             "pip install 'janus-mp[reload]'") from None
        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # we log what we do about it

        def watch() -> None:
            changes = watchfiles.watch(self.root, watch_filter=watchfiles.PythonFilter(),
                                       stop_event=self._stop, yield_on_timeout=True,
                                       rust_timeout=500, raise_interrupt=False)
            watching = False
            for batch in changes:
                if not watching:  # the first yield: the watch is in place
                    watching = True
                    log.info("watching Python files under %s (--reload: development only)",
                             self.root)
                if batch:
                    self._report(sorted({path for _, path in batch}))

        self._thread = threading.Thread(target=watch, name="janus-mp-watch", daemon=True)
        self._thread.start()

    def _report(self, paths: list[str]) -> None:
        try:
            self.on_change(paths)
        except JanusError as exc:
            log.error("%s", exc)
        except Exception:
            log.exception("reacting to changed files failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
