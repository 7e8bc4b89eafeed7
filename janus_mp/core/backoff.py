"""Exponential backoff with full jitter, and the circuit breaker (pure: ``now`` and ``rng`` in).

Per worker slot, :class:`BackoffState` grows the delay; per service, :class:`CircuitBreaker`
counts failures in a sliding window. :func:`decide_restart` is the original's decision, in its
order: forget after a stable run, record the failure, then open the circuit or pick a delay.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Protocol

from janus_mp.errors import ConfigError


class RandomSource(Protocol):
    """What the jitter needs from ``random.Random``; tests pass a seeded one."""

    def randint(self, a: int, b: int) -> int: ...


#: 60 s, as max_delay: a tripped service is tried again no less often than a backing-off one
#: at its slowest, and a service that cannot start costs one trial start a minute.
DEFAULT_HALF_OPEN_AFTER = 60.0
#: ``max_retries`` below this, with no half-open, is likely a start-attempt count (supervisord's
#: ``startretries``, systemd's ``StartLimitBurst``) that would end a service for good.
SMALL_MAX_RETRIES = 10


@dataclass(frozen=True)
class BackoffConfig:
    """Restart pacing for one service; the defaults are the original's."""

    initial_delay: float = 0.1
    max_delay: float = 60.0
    multiplier: float = 2.0
    cooldown: float = 300.0
    max_retries: int = 10
    window: float = 600.0
    #: After a trip, one trial worker starts this long later: a service comes back by itself,
    #: as under supervisord's autorestart or systemd's Restart=; None (``"never"`` in TOML)
    #: keeps a tripped service down for good.
    half_open_after: float | None = DEFAULT_HALF_OPEN_AFTER
    trial_period: float = 10.0
    clean_restart_delay: float = 0.1

    def __post_init__(self) -> None:
        spelled: object = self.half_open_after
        if spelled == "never":  # the TOML spelling of None
            object.__setattr__(self, "half_open_after", None)
        for f in fields(self):  # types first, in field order, so the first bad key is named
            value = getattr(self, f.name)
            if f.name == "max_retries":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigError(f.name, "must be an integer >= 0 (0 turns the breaker off)")
                continue
            if f.name == "half_open_after" and (value is None or isinstance(value, str)):
                if value is None:
                    continue
                raise ConfigError(f.name, 'must be a number of seconds or "never"')
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value):
                raise ConfigError(f.name, "must be a finite number")
        if self.initial_delay < 0:
            raise ConfigError("initial_delay", "must be >= 0")
        if self.max_delay < self.initial_delay:
            raise ConfigError("max_delay", "must be >= initial_delay")
        if self.multiplier < 1:
            raise ConfigError("multiplier", "must be >= 1")
        if self.cooldown < 0:
            raise ConfigError("cooldown", "must be >= 0")
        if self.window <= 0:
            raise ConfigError("window", "must be > 0")
        if self.half_open_after is not None and self.half_open_after <= 0:
            raise ConfigError("half_open_after", "must be > 0 (or \"never\")")
        if self.trial_period < 0:
            raise ConfigError("trial_period", "must be >= 0")
        if self.clean_restart_delay < 0:
            raise ConfigError("clean_restart_delay", "must be >= 0")

    @property
    def down_for_good(self) -> bool:
        """A tripped breaker ends the service: nothing brings it back by itself."""
        return self.max_retries > 0 and self.half_open_after is None

    def start_count_warning(self) -> str | None:
        """Why a small ``max_retries`` without half-open is likely a mistake, or None."""
        if not self.down_for_good or self.max_retries >= SMALL_MAX_RETRIES:
            return None
        return (f'max_retries = {self.max_retries} with half_open_after = "never" ends the '
                f"service for good after {self.max_retries} failures within {self.window:g} s "
                f"(a worker killed {self.max_retries} times a day is enough); supervisord's "
                "startretries and systemd's StartLimitBurst count start attempts, not this: "
                "set half_open_after, or a larger max_retries")

    def cap(self, attempt: int) -> float:
        """The jitter ceiling for ``attempt``: initial·multiplier^attempt, saturating at max."""
        if self.initial_delay == 0:
            return 0.0
        try:  # float() first: an int multiplier from TOML would build an exact bigint
            raw = self.initial_delay * float(self.multiplier) ** attempt
        except OverflowError:  # a long crash loop: float ** int overflows rather than giving inf
            return float(self.max_delay)
        return float(min(self.max_delay, raw))


@dataclass(frozen=True)
class BackoffAction:
    """What to do after a failure."""


@dataclass(frozen=True)
class RetryAfter(BackoffAction):
    """Restart the slot after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True)
class CircuitOpen(BackoffAction):
    """Too many failures in the window: stop restarting the service."""

    failures: int
    max_retries: int


@dataclass
class BackoffState:
    """Per worker slot: consecutive failures and when its worker last started."""

    attempt: int = 0
    last_start: float | None = None
    last_delay: float = 0.0

    def record_start(self, now: float) -> None:
        self.last_start = now

    def stable_for_cooldown(self, config: BackoffConfig, now: float) -> bool:
        """A worker that stayed up for the cooldown earns a fresh start."""
        return self.last_start is not None and now - self.last_start >= config.cooldown

    def next_delay(self, config: BackoffConfig, now: float, rng: RandomSource) -> float:
        """Full jitter in whole milliseconds: uniform in [0, cap(attempt)], as the original."""
        if self.stable_for_cooldown(config, now):
            self.attempt = 0
        self.attempt += 1
        cap_ms = int(config.cap(self.attempt) * 1000)
        self.last_delay = rng.randint(0, cap_ms) / 1000 if cap_ms > 0 else 0.0
        return self.last_delay

    def reset(self) -> None:
        self.attempt = 0
        self.last_delay = 0.0


class BreakerState(StrEnum):
    """CLOSED restarts; OPEN restarts nothing; HALF_OPEN lets one trial worker run."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Per service: ``max_retries`` failures within ``window`` open it.

    Failures are kept as (time, slot), oldest first, so a slot that ran stable for the cooldown
    forgets only its own; with one worker that is the original's "failures reset".
    """

    def __init__(self, config: BackoffConfig) -> None:
        self.config = config
        self._failures: deque[tuple[float, int]] = deque()
        self._state = BreakerState.CLOSED
        self._opened_at: float | None = None
        self._trips = 0

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self._state.value}, failures={len(self._failures)}, " \
               f"trips={self._trips})"

    def record_failure(self, now: float, slot: int) -> bool:
        """Count a failure; True when it opened the circuit (a failed half-open trial does)."""
        self._prune(now)
        self._failures.append((now, slot))
        if self._state is BreakerState.HALF_OPEN:
            self._open(now)
            return True
        if self._state is BreakerState.CLOSED and self.config.max_retries > 0 and \
                len(self._failures) >= self.config.max_retries:
            self._open(now)
            return True
        return False

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._trips += 1

    def _prune(self, now: float) -> None:
        # Invariant: _failures is in time order (``now`` is monotonic), so pruning pops the left.
        # A failure exactly ``window`` old is out: the window is the half-open (now-window, now].
        horizon = now - self.config.window
        while self._failures and self._failures[0][0] <= horizon:
            self._failures.popleft()

    def forget_slot(self, slot: int) -> None:
        self._failures = deque(f for f in self._failures if f[1] != slot)

    def failures_in_window(self, now: float) -> int:
        self._prune(now)
        return len(self._failures)

    def half_open_due(self) -> float | None:
        """When an open circuit may try one worker again; None if it stays open for good."""
        if self._state is BreakerState.OPEN and self.config.half_open_after is not None and \
                self._opened_at is not None:
            return self._opened_at + self.config.half_open_after
        return None

    def begin_half_open(self, now: float) -> None:
        if self._state is not BreakerState.OPEN:
            raise ValueError(f"cannot go half-open from {self._state.value}")
        self._state = BreakerState.HALF_OPEN

    def close(self, now: float) -> None:
        if self._state is not BreakerState.HALF_OPEN:
            raise ValueError(f"cannot close from {self._state.value}")
        self._state = BreakerState.CLOSED
        self._failures.clear()

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def trips(self) -> int:
        return self._trips

    @property
    def opened_at(self) -> float | None:
        return self._opened_at

    @property
    def allows_restarts(self) -> bool:
        return self._state is BreakerState.CLOSED


def decide_restart(state: BackoffState, breaker: CircuitBreaker, config: BackoffConfig,
                   now: float, rng: RandomSource, slot: int) -> BackoffAction:
    """After a failure of ``slot``: retry after a jittered delay, or open the circuit."""
    if state.stable_for_cooldown(config, now):
        state.reset()
        breaker.forget_slot(slot)
    if breaker.record_failure(now, slot) or breaker.state is not BreakerState.CLOSED:
        return CircuitOpen(breaker.failures_in_window(now), config.max_retries)
    return RetryAfter(state.next_delay(config, now, rng))
