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
