"""janus-mp's own exception types: every user-facing error is one actionable line."""

from __future__ import annotations


class JanusError(Exception):
    """Base class of every error janus-mp raises on purpose."""


class ConfigError(JanusError, ValueError):
    """A configuration value breaks a rule.

    ``key`` is the dotted path of the offending key (``services.crunch.backoff.max_delay``)
    and ``rule`` says what it must be. ``str()`` is the one-line message the CLI prints.
    """

    def __init__(self, key: str, rule: str) -> None:
        super().__init__(f"{key}: {rule}" if key else rule)
        self.key = key
        self.rule = rule

    def under(self, prefix: str) -> ConfigError:
        """The same error with its key under ``prefix`` (``backoff`` -> ``services.x.backoff``)."""
        if not prefix:
            return self
        return ConfigError(f"{prefix}.{self.key}" if self.key else prefix, self.rule)


class ServiceLoadError(JanusError):
    """A service cannot be built or sent to a worker (bad import target, unpicklable)."""


class UnknownServiceError(JanusError, KeyError):
    """A command named a service the supervisor does not run."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        known = ", ".join(sorted(self.known)) or "none"
        return f"unknown service {self.name!r} (running: {known})"


# -- task pools (janus_mp.TaskPool, janus_mp.pool) ---------------------------------------------
class TaskError(JanusError):
    """A task ended without a result for a reason of the pool's (not raised by its function)."""


class WorkerDied(TaskError):
    """The worker running the task died (SIGKILL, OOM kill, ``os._exit``, a segfault...).

    ``exitcode`` is the worker's exit status (None if a signal ended it), ``signal`` the
    signal number (None if it exited), ``oom_killed`` whether the kernel's OOM killer did it
    (known where the pool's workers have a cgroup), ``deaths`` how many workers the task
    has killed so far."""

    def __init__(self, message: str, *, exitcode: int | None = None, signal: int | None = None,
                 oom_killed: bool = False, deaths: int = 1) -> None:
        super().__init__(message)
        self.exitcode = exitcode
        self.signal = signal
        self.oom_killed = oom_killed
        self.deaths = deaths

    def __reduce__(self) -> tuple[object, ...]:  # keyword fields survive pickling
        return (_rebuild_died, (type(self), str(self), self.exitcode, self.signal,
                                self.oom_killed, self.deaths))


class PoisonTask(WorkerDied):
    """The task has killed ``max_worker_deaths`` workers: it is never run again."""


class TaskTimeout(TaskError, TimeoutError):
    """The task ran past its timeout: its worker was killed (and replaced)."""


class QueueFull(JanusError):
    """``submit(..., block=False)`` found the pool's queue at ``max_queued``."""


def _rebuild_died(cls: type[WorkerDied], message: str, exitcode: int | None,
                  signal: int | None, oom_killed: bool, deaths: int) -> WorkerDied:
    return cls(message, exitcode=exitcode, signal=signal, oom_killed=oom_killed, deaths=deaths)
