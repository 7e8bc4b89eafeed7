"""Exit-code classification (pure): what a worker's exit means and whether it restarts.

The supervisor passes the return code (as multiprocess reports it) and, when it ended the worker
itself, why; :func:`classify_exit` answers with one :class:`ExitDecision` the loop acts on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from janus_mp.core.lifecycle import TerminationReason
from janus_mp.errors import ConfigError


class RestartPolicy(StrEnum):
    """The original's three policies (OTP's permanent, transient, temporary)."""

    ALWAYS = "always"
    ON_FAILURE = "on_failure"
    NEVER = "never"

    @classmethod
    def parse(cls, value: str) -> RestartPolicy:
        """Accept config spellings: any case, ``on-failure`` or ``on_failure``."""
        key = str(value).strip().lower().replace("-", "_")
        for policy in cls:
            if key == policy.value:
                return policy
        raise ConfigError("restart", "must be one of always, on_failure, never")


class ReservedExit(IntEnum):
    """Exit codes with a meaning of their own, so services can say why they stopped."""

    OK = 0
    FAILURE = 1  # an uncaught exception
    BOOT_ERROR = 3  # the worker could not load its service: halts by default, as in gunicorn
    CONFIG_ERROR = 78  # EX_CONFIG: restarting cannot help, so no restart by default


class KillCause(StrEnum):
    """Why the supervisor itself ended a worker; it overrides what the exit code says."""

    STOP_REQUESTED = "stop_requested"
    WATCHDOG = "watchdog"
    START_TIMEOUT = "start_timeout"
    RECYCLE = "recycle"
    REPLACE = "replace"
    UNHEALTHY = "unhealthy"  # failed its health probe too many times in a row
    OOM_KILLED = "oom_killed"  # the kernel's OOM killer, in the service's cgroup (told later)


class ExitKind(StrEnum):
    """Which rule of :func:`classify_exit` matched."""

    CLEAN = "clean"
    FAILURE = "failure"
    SIGNALED = "signaled"
    NO_RESTART = "no_restart"
    FORCE_RESTART = "force_restart"
    HALT = "halt"
    STOPPED = "stopped"
    WATCHDOG_TIMEOUT = "watchdog_timeout"
    START_TIMEOUT = "start_timeout"
    RECYCLED = "recycled"
    REPLACED = "replaced"
    UNHEALTHY = "unhealthy"
    OOM_KILLED = "oom_killed"


_CODE_SETS = ("success_codes", "no_restart_codes", "force_restart_codes", "halt_codes")


@dataclass(frozen=True)
class ExitPolicy:
    """A service's restart policy and what its exit codes mean; a code is in one set at most."""

    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    success_codes: frozenset[int] = frozenset({int(ReservedExit.OK)})
    no_restart_codes: frozenset[int] = frozenset({int(ReservedExit.CONFIG_ERROR)})
    force_restart_codes: frozenset[int] = frozenset()
    halt_codes: frozenset[int] = frozenset({int(ReservedExit.BOOT_ERROR)})

    def __post_init__(self) -> None:
        if not isinstance(self.restart, RestartPolicy):
            object.__setattr__(self, "restart", RestartPolicy.parse(str(self.restart)))
        for name in _CODE_SETS:
            object.__setattr__(self, name, _freeze(name, getattr(self, name)))
        for i, a in enumerate(_CODE_SETS):
            for b in _CODE_SETS[i + 1:]:
                common = getattr(self, a) & getattr(self, b)
                if common:
                    raise ConfigError(b, f"exit code {min(common)} is also in {a}; "
                                         "a code can be in one set only")


def _freeze(name: str, codes: Iterable[int]) -> frozenset[int]:
    if isinstance(codes, (str, bytes)):
        raise ConfigError(name, "must be a list of exit codes")
    try:
        frozen = frozenset(codes)
    except TypeError:
        raise ConfigError(name, "must be a list of exit codes") from None
    for code in frozen:
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
            raise ConfigError(name, f"exit code {code!r} must be an integer from 0 to 255")
    return frozen


@dataclass(frozen=True)
class ExitDecision:
    """What one exit means: restart or not, whether it counts toward backoff and the breaker
    (``failure``), whether the restart skips backoff (``fixed_delay``), whether the whole
    supervisor halts, and the reason to record."""

    kind: ExitKind
    restart: bool
    failure: bool
    fixed_delay: bool
    halt: bool
    reason: TerminationReason


def classify_exit(returncode: int, policy: ExitPolicy,
                  cause: KillCause | None = None) -> ExitDecision:
    """``returncode`` as multiprocess reports it: >= 0 an exit status, < 0 minus a signal.

    Rules in order: the supervisor's own cause, then halt, no-restart, force-restart and
    success codes, then a signal or any other code as a failure.
    """
    restartable = policy.restart is not RestartPolicy.NEVER
    if cause is KillCause.STOP_REQUESTED:
        return _ended(ExitKind.STOPPED, TerminationReason.stopped())
    # A recycled or replaced worker's successor already exists: nothing to restart here.
    if cause is KillCause.RECYCLE:
        return _ended(ExitKind.RECYCLED, TerminationReason.recycled())
    if cause is KillCause.REPLACE:
        return _ended(ExitKind.REPLACED, TerminationReason.replaced())
    if cause is KillCause.WATCHDOG:
        return _failed(ExitKind.WATCHDOG_TIMEOUT, TerminationReason.watchdog_timeout(),
                       restart=restartable)
    if cause is KillCause.START_TIMEOUT:
        return _failed(ExitKind.START_TIMEOUT, TerminationReason.start_timeout(),
                       restart=restartable)
    if cause is KillCause.UNHEALTHY:
        return _failed(ExitKind.UNHEALTHY, TerminationReason.unhealthy(), restart=restartable)
    if cause is KillCause.OOM_KILLED:
        return _failed(ExitKind.OOM_KILLED, TerminationReason.oom_killed(), restart=restartable)
    if returncode >= 0:
        if returncode in policy.halt_codes:
            return ExitDecision(ExitKind.HALT, restart=False, failure=True, fixed_delay=False,
                                halt=True, reason=TerminationReason.halted(returncode))
        if returncode in policy.no_restart_codes:
            return _failed(ExitKind.NO_RESTART, TerminationReason.unrecoverable(
                f"exit code {returncode} is a no-restart code"), restart=False)
        if returncode in policy.force_restart_codes:
            return ExitDecision(ExitKind.FORCE_RESTART, restart=True, failure=False,
                                fixed_delay=True, halt=False,
                                reason=TerminationReason.failed(returncode))
        if returncode in policy.success_codes:
            return ExitDecision(ExitKind.CLEAN, restart=policy.restart is RestartPolicy.ALWAYS,
                                failure=False, fixed_delay=True, halt=False,
                                reason=TerminationReason.completed())
        kind, reason = ExitKind.FAILURE, TerminationReason.failed(returncode)
    else:
        kind, reason = ExitKind.SIGNALED, TerminationReason.killed(-returncode)
    if not restartable:  # as in the original: an error under `never` is unrecoverable
        reason = TerminationReason.unrecoverable(f"{reason} under restart policy never")
    return _failed(kind, reason, restart=restartable)


def _ended(kind: ExitKind, reason: TerminationReason) -> ExitDecision:
    """The supervisor ended the worker on purpose: no restart, no failure."""
    return ExitDecision(kind, restart=False, failure=False, fixed_delay=False, halt=False,
                        reason=reason)


def _failed(kind: ExitKind, reason: TerminationReason, *, restart: bool) -> ExitDecision:
    """A failure: it counts toward backoff and the breaker."""
    return ExitDecision(kind, restart=restart, failure=True, fixed_delay=False, halt=False,
                        reason=reason)
