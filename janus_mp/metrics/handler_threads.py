"""A fixed set of threads answering requests, every one started up front.

Why not ``ThreadPoolExecutor``: it starts its threads lazily, inside ``submit``. Under a pids
limit reached for a moment (a cgroup's ``pids.max``, shared with workers that fork) that start
raises ``RuntimeError: can't start new thread`` in the caller — the endpoint's selector thread —
which then dies for good, leaving /metrics and /healthz unanswered while the supervisor runs on.
Here ``submit`` only queues: serving a request never needs a new thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

Job = Callable[[], None]


class HandlerThreads:
    def __init__(self, count: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"{name}_{i}", daemon=True)
                         for i in range(count)]
        self._started: list[threading.Thread] = []

    def start(self) -> None:
        """Start every thread; RuntimeError if one cannot start (those started are stopped)."""
        try:
            for thread in self._threads:
                thread.start()
                self._started.append(thread)
        except RuntimeError:
            self.stop()
            raise

    def submit(self, job: Job) -> None:
        """Queue ``job`` for the next free thread; never blocks, never starts a thread. A job
        must handle its own errors: one that raises is dropped, its thread lives on."""
        self._jobs.put(job)

    def stop(self) -> None:
        """Let each thread finish the jobs queued before now, then end. Never waits on them:
        a job may be sending a response until its own deadline."""
        for _ in self._started:
            self._jobs.put(None)
        self._started = []

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # the job's own business; this thread must stay
                pass
