"""A task pool's settings, once: ``janus_mp.TaskPool(...)`` and ``[pools.NAME]`` fill the same
object, validated here with errors naming the key.

A pool's workers are an ordinary service (``spawn_options``): backoff, standbys, recycling,
process settings, output capture and metrics come with it. What is the pool's own (timeouts,
retries, quarantine, the queue bound) goes to its task policy (``rules``) and dispatcher.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from janus_mp.core.backoff import BackoffConfig
from janus_mp.core.config import MEMORY_MEASURES, SpawnOptions, parse_size
from janus_mp.core.exits import RestartPolicy
from janus_mp.core.process_settings import ProcessSettings
from janus_mp.core.tasks import TaskRules
from janus_mp.errors import ConfigError

#: A pool's workers restart at once after a death (a task killed them, not their own code);
#: no breaker: a task that kills workers is quarantined by itself (max_worker_deaths).
POOL_BACKOFF = BackoffConfig(initial_delay=0.01, max_delay=1.0, cooldown=5.0, max_retries=0,
                             clean_restart_delay=0.0)


@dataclass(frozen=True)
class PoolConfig:
    workers: int = 1
    standby: int = 0
    #: Seconds a task may run before its worker is killed (TaskTimeout); None: no limit.
    task_timeout: float | None = None
    #: Runs more after its worker died under it (WorkerDied when they are used up).
    retries: int = 0
    #: A task that killed this many workers fails with PoisonTask and never runs again.
    max_worker_deaths: int = 3
    #: A worker is recycled (a successor started first) after this many tasks.
    max_tasks_per_worker: int | None = None
    #: A worker past this much memory is recycled between tasks ("512MiB" works).
    max_memory: int | str | None = None
    memory_measure: str = "uss"
    memory_check_interval: float = 1.0
    #: Tasks waiting for a worker at most; submit waits for room (or raises QueueFull).
    max_queued: int | None = None
    #: A cancelled running task has this long to stop (TaskInterrupted) before a kill.
    cancel_grace: float = 1.0
    #: Tasks a busy worker is sent beyond the one it runs when no worker is idle (0 or more):
    #: 1 saves a round trip per task; 0 keeps every task queued until a worker is free, so a
    #: short task never waits behind a long one in a worker that another could have taken.
    prefetch: int = 1
    #: Called in each worker before its first task: a callable, or "module:attr" (TOML).
    initializer: Callable[..., Any] | str | None = None
    initargs: tuple[Any, ...] = ()
    backoff: BackoffConfig = POOL_BACKOFF
    process: ProcessSettings = field(default_factory=ProcessSettings)

    def __post_init__(self) -> None:
        for key in ("workers", "standby", "retries", "prefetch"):
            _integer(key, getattr(self, key), 0)
        _integer("max_worker_deaths", self.max_worker_deaths, 1)
        if self.max_tasks_per_worker is not None:
            _integer("max_tasks_per_worker", self.max_tasks_per_worker, 1)
        if self.max_queued is not None:
            _integer("max_queued", self.max_queued, 1)
        _seconds("task_timeout", self.task_timeout, optional=True)
        _seconds("memory_check_interval", self.memory_check_interval)
        if isinstance(self.cancel_grace, bool) or not isinstance(self.cancel_grace,
                                                                 (int, float)) \
                or not math.isfinite(self.cancel_grace) or self.cancel_grace < 0:
            raise ConfigError("cancel_grace", "must be a number of seconds >= 0")
        if self.max_memory is not None:
            object.__setattr__(self, "max_memory", parse_size("max_memory", self.max_memory))
        if self.memory_measure not in MEMORY_MEASURES:
            raise ConfigError("memory_measure", f"must be one of {', '.join(MEMORY_MEASURES)}")
        if self.initializer is not None and not callable(self.initializer) and not (
                isinstance(self.initializer, str) and ":" in self.initializer):
            raise ConfigError("initializer", "must be a callable or \"module:attribute\"")
        if isinstance(self.initargs, list):
            object.__setattr__(self, "initargs", tuple(self.initargs))
        if not isinstance(self.initargs, tuple):
            raise ConfigError("initargs", "must be a list of arguments")
        if not isinstance(self.backoff, BackoffConfig):
            raise ConfigError("backoff", "must be a BackoffConfig")
        if not isinstance(self.process, ProcessSettings):
            raise ConfigError("process", "must be a ProcessSettings")

    def rules(self) -> TaskRules:
        return TaskRules(self.max_worker_deaths, self.cancel_grace, self.max_tasks_per_worker,
                         prefetch=self.prefetch)

    def spawn_options(self, name: str) -> SpawnOptions:
        """The pool's workers as a service named ``name``. A worker's exit code is whatever a
        task passed to ``os._exit``: no code halts the supervisor or stops the restarts."""
        try:
            return SpawnOptions(
                workers=self.workers, name=name, restart=RestartPolicy.ALWAYS,
                halt_codes=frozenset(), no_restart_codes=frozenset(),
                backoff=self.backoff, standby=self.standby, max_memory=self.max_memory,
                memory_measure=self.memory_measure,
                rss_check_interval=self.memory_check_interval, process=self.process)
        except ConfigError as exc:  # the name
            raise ConfigError("name", exc.rule) from None


def _integer(key: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, f"must be an integer >= {minimum}")


def _seconds(key: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise ConfigError(key, "must be a number of seconds > 0" + (" or unset" if optional
                                                                    else ""))
