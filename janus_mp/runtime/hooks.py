"""``[hooks]``: commands run on lifecycle notices, never in the loop and never unbounded.

    NoticeHub ─► subscription (bounded buffer) ─► dispatcher thread ─► one thread per hook run
                                                                        (HelperChildren.run:
                                                                         timeout, group kill,
                                                                         always reaped)

The notice travels in the hook's environment (JANUS_EVENT, JANUS_SERVICE, JANUS_SLOT,
JANUS_PID, JANUS_EXIT_CODE, JANUS_REASON, JANUS_REASON_TEXT, JANUS_AT ...). At most
``max_concurrent`` hooks run at once: a notice that finds them all busy runs nothing, and so
does one the dispatcher's buffer had no room for; both are counted in ``dropped`` and logged.
"""

from __future__ import annotations

import logging
import os
import threading

from janus_mp.core.hooks_config import HooksConfig
from janus_mp.core.notices import LifecycleNotice
from janus_mp.runtime.helper_children import HelperChildren
from janus_mp.runtime.notice_hub import NoticeHub, NoticeSubscription

log = logging.getLogger("janus_mp.hooks")

#: Notices waiting for the dispatcher; it only starts threads, so this is rarely reached.
HOOK_BUFFER = 256


class HookRunner:
    def __init__(self, config: HooksConfig, hub: NoticeHub, children: HelperChildren) -> None:
        self._commands = config.commands()
        self.timeout = config.timeout
        self._slots = threading.Semaphore(config.max_concurrent)
        self._hub = hub
        self._children = children
        self._subscription: NoticeSubscription | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0  # hook threads started and not finished
        self.ran = 0
        self.dropped = 0
        self.timed_out = 0

    def start(self) -> None:
        if not self._commands:
            return
        self._subscription = self._hub.subscribe(HOOK_BUFFER)
        self._thread = threading.Thread(target=self._dispatch, args=(self._subscription,),
                                        name="janus-mp-hooks", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        if self._thread is not None:
            self._thread.join(2.0)

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the hooks started so far to end; True if all did."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._active, timeout)

    def _dispatch(self, subscription: NoticeSubscription) -> None:
        while True:
            batch, lost = subscription.get()
            if lost:
                self._drop(lost, "the hook buffer was full")
            for notice in batch:
                argv = self._commands.get(notice.kind)
                if argv is None:
                    continue
                if not self._slots.acquire(blocking=False):
                    self._drop(1, f"{notice.kind.value}: all max_concurrent hook slots "
                                  "busy")
                    continue
                env = dict(os.environ, **notice.environment(subscription.wall_offset()))
                with self._lock:
                    self._active += 1
                threading.Thread(target=self._run_one, args=(argv, env, notice),
                                 name="janus-mp-hook", daemon=True).start()
            if subscription.closed and not batch:
                return

    def _run_one(self, argv: tuple[str, ...], env: dict[str, str],
                 notice: LifecycleNotice) -> None:
        what = f"{notice.kind.value} hook {argv[0]}"
        try:
            code = self._children.run(argv, env, self.timeout)
        except OSError as exc:
            log.error("%s could not start: %s", what, exc.strerror or exc)
            code = -1
        finally:
            self._slots.release()
        with self._lock:
            self.ran += 1
            if code is None:
                self.timed_out += 1
            self._active -= 1
            self._idle.notify_all()
        if code is None:
            log.warning("%s ran past its %gs timeout: killed", what, self.timeout)
        elif code:
            log.warning("%s exited %d", what, code)

    def _drop(self, count: int, why: str) -> None:
        with self._lock:
            self.dropped += count
            total = self.dropped
        log.warning("dropped %d hook run(s) (%s); %d dropped so far", count, why, total)
