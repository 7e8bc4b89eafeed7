"""Typed configuration: every default lives here once.

The Python API, the TOML file and the CLI flags all fill these same objects; validation raises
:class:`~janus_mp.errors.ConfigError` naming the key, so a caller can prefix the path
(``services.crunch.workers: must be >= 0``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from janus_mp.core.backoff import BackoffConfig
from janus_mp.core.exits import ExitPolicy, RestartPolicy
from janus_mp.core.health_check import HealthCheck
from janus_mp.core.hooks_config import HooksConfig
from janus_mp.core.process_settings import ProcessSettings
from janus_mp.errors import ConfigError

START_METHODS = ("fork", "forkserver", "spawn")
#: OTP's two shutdown values besides a number of seconds: SIGKILL at once, or wait for ever.
BRUTAL_KILL = "brutal_kill"
INFINITY = "infinity"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_STDERR = ("merged", "separate")
MEMORY_MEASURES = ("uss", "pss", "rss")


class AutoShutdown(StrEnum):
    """OTP 24's ``auto_shutdown``: when a group (or the supervisor) ends by itself, after its
    *significant* members ended by themselves (see :mod:`janus_mp.core.groups`)."""

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"  # the first significant member that ends
    ALL_SIGNIFICANT = "all_significant"  # once no significant member is left running

    @classmethod
    def parse(cls, value: object) -> AutoShutdown:
        key = str(value).strip().lower().replace("-", "_")
        for mode in cls:
            if key == mode.value:
                return mode
        raise ConfigError("auto_shutdown", "must be one of never, any_significant, "
                                           "all_significant")


def check_significant(significant: object, restart: RestartPolicy) -> None:
    """OTP refuses a significant permanent child: it is restarted, so it never ends."""
    _flag("significant", significant)
    if significant and restart is RestartPolicy.ALWAYS:
        raise ConfigError("significant", 'needs restart = "on_failure" or "never" (an '
                                         '"always" member is restarted: it never ends)')


def _number(key: str, value: object, *, minimum: float = 0.0, strict: bool = False,
            optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, "must be a finite number" + (" or unset" if optional else ""))
    if value < minimum or (strict and value == minimum):
        raise ConfigError(key, f"must be {'>' if strict else '>='} {minimum:g}")


def _integer(key: str, value: object, *, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, "must be an integer")
    if value < minimum:
        raise ConfigError(key, f"must be >= {minimum}")


def _flag(key: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(key, "must be true or false")


@dataclass(frozen=True)
class SupervisorConfig:
    """How the supervisor as a whole behaves."""

    #: Default backoff and circuit breaker for services that set none.
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    #: Cooperative grace: after a stop is asked, workers have this long before SIGTERM.
    shutdown_timeout: float = 30.0
    #: After SIGTERM, workers have this long before SIGKILL.
    kill_timeout: float = 5.0
    #: Handle SIGTERM/SIGINT/SIGQUIT/SIGHUP/SIGTTIN/SIGTTOU/SIGUSR1/SIGCHLD (main thread only).
    install_signal_handlers: bool = True
    #: multiprocess start method; None = the platform default (fork on Linux).
    start_method: str | None = None
    #: Become a child subreaper and clean up what dead workers leave behind.
    reap_orphans: bool = True
    #: Directory for prometheus_client multiprocess files; None = a private temporary one.
    metrics_dir: str | None = None
    #: HTTP endpoint (/metrics, /healthz, /readyz); None = off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    #: Name shown in process titles and logs.
    name: str = "janus-mp"
    #: Ceiling on any one pool: a typo (`scale crunch 10000`) must not fork-bomb the host.
    max_workers: int = 1024
    #: `janus-mp upgrade` / SIGUSR2: how long the new supervisor has to get every worker
    #: ready before it is stopped and this one keeps serving.
    upgrade_timeout: float = 60.0
    #: Commands run on lifecycle notices (``[hooks]``); see core/hooks_config.py.
    hooks: HooksConfig = field(default_factory=HooksConfig)
    #: gc.freeze() in each worker first thing (and in the supervisor once at start): the
    #: worker's collector never touches what it inherited,
    #: so those pages stay shared (copy-on-write) instead of being copied by GC bookkeeping.
    gc_freeze: bool = True
    #: Captured worker output: one NAME.log per service here (None: into the supervisor's log),
    #: rotated past log_max_bytes ("10MiB" works), keeping log_backups old files.
    log_dir: str | None = None
    log_max_bytes: int | str = 10 * 1024 * 1024
    log_backups: int = 5
    #: "merged": stdout and stderr in NAME.log (each line tagged); "separate": stderr in
    #: NAME.stderr.log beside it (supervisord's stderr_logfile). Needs log_dir.
    log_stderr: str = "merged"
    #: "text", or "json": one object a line (time, service, worker, pid, stream, message).
    log_format: str = "text"
    #: The supervisor ends by itself once its significant members (services in no group,
    #: top-level groups) ended: "any_significant" / "all_significant" (OTP's auto_shutdown).
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER
    #: The supervisor's own log: a file instead of stderr (SIGUSR1 reopens it), its level, and a
    #: file holding its pid while it runs — `run --log-file/--log-level/--pid-file` in the
    #: file; the flags win. Read when `run` starts (a reload does not move them).
    log_file: str | None = None
    log_level: str = "info"
    pid_file: str | None = None
    #: /healthz answers 503 while a service has ended for good (its breaker tripped with
    #: ``half_open_after = "never"``, or it failed under restart "never"): the orchestrator
    #: then restarts the whole supervisor, as OTP escalates to the parent.
    healthz_fails_on_given_up: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.backoff, BackoffConfig):
            raise ConfigError("backoff", "must be a BackoffConfig")
        _number("shutdown_timeout", self.shutdown_timeout)
        _number("kill_timeout", self.kill_timeout)
        _flag("install_signal_handlers", self.install_signal_handlers)
        _flag("reap_orphans", self.reap_orphans)
        _flag("gc_freeze", self.gc_freeze)
        _flag("healthz_fails_on_given_up", self.healthz_fails_on_given_up)
        if self.start_method is not None and self.start_method not in START_METHODS:
            raise ConfigError("start_method", f"must be one of {', '.join(START_METHODS)}")
        if self.metrics_dir is not None and not isinstance(self.metrics_dir, str):
            raise ConfigError("metrics_dir", "must be a path")
        if not isinstance(self.metrics_host, str) or not self.metrics_host:
            raise ConfigError("metrics_host", "must be a host name or address")
        _integer("max_workers", self.max_workers, minimum=1)
        _number("upgrade_timeout", self.upgrade_timeout, strict=True)
        if isinstance(self.hooks, Mapping):
            object.__setattr__(self, "hooks", _hooks(self.hooks))
        if not isinstance(self.hooks, HooksConfig):
            raise ConfigError("hooks", "must be a HooksConfig or a table")
        if self.log_dir is not None and not (isinstance(self.log_dir, str) and self.log_dir):
            raise ConfigError("log_dir", "must be a directory path")
        object.__setattr__(self, "log_max_bytes", parse_size("log_max_bytes",
                                                             self.log_max_bytes))
        _integer("log_backups", self.log_backups)
        if self.log_format not in LOG_FORMATS:
            raise ConfigError("log_format", f"must be one of {', '.join(LOG_FORMATS)}")
        if not isinstance(self.auto_shutdown, AutoShutdown):
            object.__setattr__(self, "auto_shutdown", AutoShutdown.parse(self.auto_shutdown))
        if self.log_stderr not in LOG_STDERR:
            raise ConfigError("log_stderr", f"must be one of {', '.join(LOG_STDERR)}")
        if self.log_stderr == "separate" and self.log_dir is None:
            raise ConfigError("log_stderr", "\"separate\" needs log_dir (files to separate)")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError("log_level", f"must be one of {', '.join(LOG_LEVELS)}")
        for key in ("log_file", "pid_file"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, str) and value):
                raise ConfigError(key, "must be a file path")
        if self.metrics_port is not None:
            _integer("metrics_port", self.metrics_port)
            if self.metrics_port > 65535:
                raise ConfigError("metrics_port", "must be <= 65535")


    def check_pool_size(self, workers: int) -> None:
        """No pool grows past ``max_workers``: refuse such a size with a ConfigError."""
        if workers > self.max_workers:
            raise ConfigError("workers", f"{workers} is more than max_workers "
                                         f"({self.max_workers})")

@dataclass(frozen=True)
class SpawnOptions:
    """How one service runs: its pool, restart policy, exit codes and timeouts."""

    workers: int = 1
    #: Service name; None = the service's own ``name`` (or the callable's ``__name__``).
    name: str | None = None
    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    #: Per-service override of the supervisor's backoff and breaker.
    backoff: BackoffConfig | None = None
    success_codes: frozenset[int] = frozenset({0})
    no_restart_codes: frozenset[int] = frozenset({78})
    force_restart_codes: frozenset[int] = frozenset()
    halt_codes: frozenset[int] = frozenset({3})
    #: A critical service whose breaker trips shuts the supervisor down non-zero.
    critical: bool = False
    #: Kill and restart a worker that has not called ``ctx.heartbeat()`` for this long.
    watchdog_timeout: float | None = None
    #: Kill and restart a worker that is not ready this long after it was started.
    start_timeout: float | None = None
    #: True: a worker is starting until it calls ``ctx.ready()``; False: ready when it runs.
    wait_for_ready: bool = False
    #: Cooperative grace for this service's workers; None = the supervisor's shutdown_timeout;
    #: "brutal_kill": SIGKILL at once, no grace; "infinity": never SIGTERM or SIGKILL, wait
    #: for the worker however long it takes (for a service that supervises its own tree).
    stop_timeout: float | str | None = None
    #: Services start in ascending order and stop in descending order.
    start_order: int = 0
    #: False: defined, but started only by `janus-mp start NAME` (supervisord's autostart).
    autostart: bool = True
    #: Recycling (replace a worker gracefully: the new one is ready before the old one drains).
    #: After this many requests (plus a random 0..max_requests_jitter), for request-serving
    #: adapters; the worker counts and asks (``ctx.max_requests``, ``ctx.recycle()``).
    max_requests: int | None = None
    max_requests_jitter: int = 0
    #: After this many seconds of service (plus a random 0..max_lifetime_jitter).
    max_lifetime: float | None = None
    max_lifetime_jitter: float = 0.0
    #: When the worker's resident memory passes this many bytes ("512MiB" and "2G" work too),
    #: checked every ``rss_check_interval`` seconds.
    max_rss: int | str | None = None
    rss_check_interval: float = 5.0
    #: cgroup v2 limits for the service's workers together (runtime/cgroups.py): memory in
    #: bytes ("512MiB" works), CPUs (1.5 = one and a half), processes.
    memory_max: int | str | None = None
    cpu_max: float | None = None
    pids_max: int | None = None
    #: Extra workers kept booted and parked, promoted into a slot instead of forking one
    #: when a worker must be replaced at once (see janus_mp.core.standby).
    standby: int = 0
    #: Services this one starts after: its workers start (and restart) only while every one
    #: of these has all its workers ready; it stops before them.
    depends_on: tuple[str, ...] = ()
    #: Active health probe (a HealthCheck, or its table: ``{ http = "/healthz" }``).
    health: HealthCheck | None = None
    #: Before SIGKILLing a stuck worker (watchdog, start timeout, stop deadline), ask it for
    #: every thread's stack and wait this long for it; None: kill without asking.
    stack_dump_timeout: float | None = 0.5
    #: Called in each worker process, first thing (before the service is loaded) and last
    #: thing (with the worker's exit code), as gunicorn's hooks of those names. Under the
    #: spawn and forkserver start methods they travel to the worker pickled (dill).
    post_fork: Callable[[str, int], None] | None = None
    worker_exit: Callable[[str, int, int], None] | None = None
    #: max_rss's newer name: recycle a worker whose whole process tree (the worker and all its
    #: descendants) uses more than this, measured as ``memory_measure``: "uss" (memory only
    #: the tree has: what a recycle frees), "pss" (shared pages split among their users) or
    #: "rss" (every resident page, shared ones in full).
    max_memory: int | str | None = None
    memory_measure: str = "uss"
    #: env, env_file, cwd, user/group, umask, rlimits, nice, cpus: applied in each worker
    #: before the service's code runs (core/process_settings.py).
    process: ProcessSettings = field(default_factory=ProcessSettings)
    #: A significant service ending by itself (every worker done) may end its group, or the
    #: supervisor, per their ``auto_shutdown`` (OTP's significant child); not with "always".
    significant: bool = False

    def __post_init__(self) -> None:
        _integer("workers", self.workers)
        if self.name is not None and not (isinstance(self.name, str)
                                          and valid_service_name(self.name)):
            raise ConfigError("name", "must be letters, digits, '-', '_' or '.' (1-64 characters)")
        if not isinstance(self.restart, RestartPolicy):
            object.__setattr__(self, "restart", RestartPolicy.parse(str(self.restart)))
        if self.backoff is not None and not isinstance(self.backoff, BackoffConfig):
            raise ConfigError("backoff", "must be a BackoffConfig")
        for key in ("success_codes", "no_restart_codes", "force_restart_codes", "halt_codes"):
            object.__setattr__(self, key, _codes(key, getattr(self, key)))
        self.exit_policy()  # validates overlaps between the code sets
        _flag("critical", self.critical)
        _flag("wait_for_ready", self.wait_for_ready)
        _flag("autostart", self.autostart)
        _number("watchdog_timeout", self.watchdog_timeout, strict=True, optional=True)
        _number("start_timeout", self.start_timeout, strict=True, optional=True)
        object.__setattr__(self, "stop_timeout", _stop_timeout(self.stop_timeout))
        _integer("start_order", self.start_order, minimum=-(2**31))
        if self.max_requests is not None:
            _integer("max_requests", self.max_requests, minimum=1)
        _integer("max_requests_jitter", self.max_requests_jitter)
        _number("max_lifetime", self.max_lifetime, strict=True, optional=True)
        _number("max_lifetime_jitter", self.max_lifetime_jitter)
        if self.max_rss is not None:
            object.__setattr__(self, "max_rss", parse_size("max_rss", self.max_rss))
        _number("rss_check_interval", self.rss_check_interval, strict=True)
        _integer("standby", self.standby)
        if self.memory_max is not None:
            object.__setattr__(self, "memory_max", parse_size("memory_max", self.memory_max))
        _number("cpu_max", self.cpu_max, strict=True, optional=True)
        if self.pids_max is not None:
            _integer("pids_max", self.pids_max, minimum=1)
        object.__setattr__(self, "depends_on", _names("depends_on", self.depends_on, self.name))
        if isinstance(self.health, Mapping):
            object.__setattr__(self, "health", HealthCheck.from_mapping(self.health))
        if self.health is not None and not isinstance(self.health, HealthCheck):
            raise ConfigError("health", "must be a table such as { http = \"/healthz\" }")
        _number("stack_dump_timeout", self.stack_dump_timeout, strict=True, optional=True)
        for key in ("post_fork", "worker_exit"):
            if getattr(self, key) is not None and not callable(getattr(self, key)):
                raise ConfigError(key, "must be a callable (Python API only)")
        if self.max_memory is not None:
            object.__setattr__(self, "max_memory", parse_size("max_memory", self.max_memory))
            if self.max_rss is not None and self.max_rss != self.max_memory:
                raise ConfigError("max_memory", "and max_rss (its old name) differ: give one")
        if self.memory_measure not in MEMORY_MEASURES:
            raise ConfigError("memory_measure", f"must be one of {', '.join(MEMORY_MEASURES)}")
        if not isinstance(self.process, ProcessSettings):
            raise ConfigError("process", "must be a ProcessSettings")
        check_significant(self.significant, self.restart)

    @property
    def memory_limit(self) -> int | None:
        """Bytes of ``memory_measure`` past which a worker is recycled (max_memory/max_rss)."""
        limit = self.max_memory if self.max_memory is not None else self.max_rss
        assert limit is None or isinstance(limit, int)  # parsed in __post_init__
        return limit

    def exit_policy(self) -> ExitPolicy:
        return ExitPolicy(
            restart=self.restart,
            success_codes=self.success_codes,
            no_restart_codes=self.no_restart_codes,
            force_restart_codes=self.force_restart_codes,
            halt_codes=self.halt_codes,
        )

    def backoff_or(self, default: BackoffConfig) -> BackoffConfig:
        return self.backoff if self.backoff is not None else default


def _stop_timeout(value: object) -> float | str | None:
    if value is None:
        return None
    if value == float("inf"):
        return INFINITY
    if isinstance(value, str) and value.strip().lower().replace("-", "_") in (BRUTAL_KILL,
                                                                               INFINITY):
        return value.strip().lower().replace("-", "_")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value < 0:
        raise ConfigError("stop_timeout", 'must be seconds >= 0, "brutal_kill" or "infinity"')
    return value


def _codes(key: str, value: Iterable[int]) -> frozenset[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(key, "must be a list of exit codes")
    codes = frozenset(value)
    for code in codes:
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
            raise ConfigError(key, f"exit code {code!r} must be an integer from 0 to 255")
    return codes


def _names(key: str, value: Iterable[str], own: str | None) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(key, "must be a list of service names")
    names = tuple(value)
    for name in names:
        if not isinstance(name, str) or not valid_service_name(name):
            raise ConfigError(key, f"{name!r} is not a service name")
        if name == own:
            raise ConfigError(key, f"a service cannot depend on itself ({name!r})")
    return tuple(dict.fromkeys(names))


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*", re.IGNORECASE)


def parse_size(key: str, value: object) -> int:
    """Bytes from an integer or a size such as ``512MiB``, ``2G`` or ``300 MB`` (powers of 1024:
    memory is counted in pages, and nobody means 10**9 bytes of RSS)."""
    if isinstance(value, bool):
        raise ConfigError(key, "must be a size in bytes or like 512MiB")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value)):
        scale = 1024 ** " kmgt".index(match.group(2).lower() or " ")
        number = int(float(match.group(1)) * scale)
    else:
        raise ConfigError(key, "must be a size in bytes or like 512MiB")
    if number <= 0:
        raise ConfigError(key, "must be > 0")
    return number


def valid_service_name(name: str) -> bool:
    """Service names become metric labels, file names and CLI arguments: keep them plain."""
    return 0 < len(name) <= 64 and all(c.isalnum() or c in "-_." for c in name)


def _hooks(table: Mapping[str, Any]) -> HooksConfig:
    known = set(HooksConfig.__dataclass_fields__)
    for key in table:
        if key not in known:
            raise ConfigError(f"hooks.{key}", f"unknown key (known: {', '.join(sorted(known))})")
    try:
        return HooksConfig(**table)
    except ConfigError as exc:
        raise exc.under("hooks") from None
