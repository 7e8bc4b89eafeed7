"""Exit-code classification (pure): what a worker's exit means and whether it restarts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from janus_mp.errors import ConfigError
from janus_mp.lifecycle import TerminationReason


class RestartPolicy(StrEnum):
    ALWAYS = "always"
    ON_FAILURE = "on_failure"
    NEVER = "never"

    @classmethod
    def parse(cls, value: str) -> RestartPolicy:
        key = str(value).strip().lower().replace("-", "_")
        for policy in cls:
            if key in (policy.value, policy.name.lower(), f"restartpolicy.{policy.name.lower()}"):
                return policy
        raise ConfigError("restart", "must be one of always, on_failure, never")


class ReservedExit(IntEnum):
    OK = 0
    FAILURE = 1
    BOOT_ERROR = 3
    CONFIG_ERROR = 78


class KillCause(StrEnum):
    STOP_REQUESTED = "stop_requested"
    WATCHDOG = "watchdog"
    START_TIMEOUT = "start_timeout"
    RECYCLE = "recycle"
    REPLACE = "replace"


class ExitKind(StrEnum):
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


_CODE_SETS = ("success_codes", "no_restart_codes", "force_restart_codes", "halt_codes")


@dataclass(frozen=True)
class ExitPolicy:
    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    success_codes: frozenset[int] = frozenset({0})
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
    frozen = frozenset(codes)
    for code in frozen:
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
            raise ConfigError(name, f"exit code {code!r} must be an integer from 0 to 255")
    return frozen


@dataclass(frozen=True)
class ExitDecision:
    kind: ExitKind
    restart: bool
    failure: bool
    fixed_delay: bool
    halt: bool
    reason: TerminationReason


def classify_exit(returncode: int, policy: ExitPolicy,
                  cause: KillCause | None = None) -> ExitDecision:
    """``returncode`` as multiprocess reports it: >= 0 an exit status, < 0 minus a signal."""
    restartable = policy.restart is not RestartPolicy.NEVER
    if cause is KillCause.STOP_REQUESTED:
        return ExitDecision(ExitKind.STOPPED, False, False, False, False,
                            TerminationReason.stopped())
    if cause is KillCause.RECYCLE:
        return ExitDecision(ExitKind.RECYCLED, False, False, False, False,
                            TerminationReason.recycled())
    if cause is KillCause.REPLACE:
        return ExitDecision(ExitKind.REPLACED, False, False, False, False,
                            TerminationReason.replaced())
    if cause is KillCause.WATCHDOG:
        return ExitDecision(ExitKind.WATCHDOG_TIMEOUT, restartable, True, False, False,
                            TerminationReason.watchdog_timeout())
    if cause is KillCause.START_TIMEOUT:
        return ExitDecision(ExitKind.START_TIMEOUT, restartable, True, False, False,
                            TerminationReason.start_timeout())
    if returncode >= 0 and returncode in policy.halt_codes:
        return ExitDecision(ExitKind.HALT, False, True, False, True,
                            TerminationReason.halted(returncode))
    if returncode >= 0 and returncode in policy.no_restart_codes:
        return ExitDecision(ExitKind.NO_RESTART, False, True, False, False,
                            TerminationReason.unrecoverable(
                                f"exit code {returncode} is a no-restart code"))
    if returncode >= 0 and returncode in policy.force_restart_codes:
        return ExitDecision(ExitKind.FORCE_RESTART, True, False, True, False,
                            TerminationReason.failed(returncode))
    if returncode >= 0 and returncode in policy.success_codes:
        return ExitDecision(ExitKind.CLEAN, policy.restart is RestartPolicy.ALWAYS, False, True,
                            False, TerminationReason.completed())
    if returncode < 0:
        reason = TerminationReason.killed(-returncode)
        kind = ExitKind.SIGNALED
    else:
        reason = TerminationReason.failed(returncode)
        kind = ExitKind.FAILURE
    if not restartable:
        reason = TerminationReason.unrecoverable(f"{reason} under restart policy never")
    return ExitDecision(kind, restartable, True, False, False, reason)
