"""``[hooks]``: commands run on chosen lifecycle notices (pure data, validated here).

    [hooks]
    on_exit = ["/usr/local/bin/page-me"]      # any worker exit
    on_breaker_open = ["notify", "--breaker"]
    on_ready = "logger janus ready"           # a string is split like a shell would
    on_group_restart = ["notify", "--group"]
    timeout = 10          # seconds a hook may run before it is killed (its process group)
    max_concurrent = 4    # hooks running at once; more are dropped and counted

The notice travels in the hook's environment (JANUS_EVENT, JANUS_SERVICE, JANUS_PID,
JANUS_EXIT_CODE, JANUS_REASON, ...); running them is :mod:`janus_mp.runtime.hooks`.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass

from janus_mp.core.notices import NoticeKind
from janus_mp.errors import ConfigError

#: Hook key → the notice kind that runs it.
HOOK_EVENTS: dict[str, NoticeKind] = {
    "on_exit": NoticeKind.EXITED,
    "on_breaker_open": NoticeKind.BREAKER_OPENED,
    "on_ready": NoticeKind.READY,
    "on_group_restart": NoticeKind.GROUP_RESTARTED,
}


def _argv(key: str, value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(key, f"cannot split the command line: {exc}") from None
    elif isinstance(value, (list, tuple)) and all(isinstance(a, str) for a in value):
        argv = list(value)
    else:
        raise ConfigError(key, "must be a command line or a list of arguments")
    if not argv:
        raise ConfigError(key, "must not be empty")
    return tuple(argv)


@dataclass(frozen=True)
class HooksConfig:
    on_exit: tuple[str, ...] | None = None
    on_breaker_open: tuple[str, ...] | None = None
    on_ready: tuple[str, ...] | None = None
    on_group_restart: tuple[str, ...] | None = None
    #: Seconds a hook may run; then its process group is killed.
    timeout: float = 10.0
    #: Hooks running at once; a notice finding them all busy runs no hook (counted as dropped).
    max_concurrent: int = 4

    def __post_init__(self) -> None:
        for key in HOOK_EVENTS:
            object.__setattr__(self, key, _argv(key, getattr(self, key)))
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or \
                not math.isfinite(self.timeout) or self.timeout <= 0:
            raise ConfigError("timeout", "must be a number > 0")
        if isinstance(self.max_concurrent, bool) or not isinstance(self.max_concurrent, int) \
                or self.max_concurrent < 1:
            raise ConfigError("max_concurrent", "must be an integer >= 1")

    def commands(self) -> dict[NoticeKind, tuple[str, ...]]:
        """The configured hooks by the notice kind that runs them."""
        found = {}
        for key, kind in HOOK_EVENTS.items():
            argv = getattr(self, key)
            if argv is not None:
                found[kind] = argv
        return found

    @property
    def any(self) -> bool:
        return bool(self.commands())
