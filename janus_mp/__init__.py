"""janus-mp: a supervisor for CPU-bound Python services.

Pools of worker processes (made with ``multiprocess``) per service, a shared cancellation tree,
restarts driven by exit codes with exponential backoff and a circuit breaker, Prometheus metrics.
"""

from __future__ import annotations

from janus_mp.adapters import ApiModuleAdapter, CommandAdapter, ModuleAdapter
from janus_mp.core.backoff import (
    BackoffAction,
    BackoffConfig,
    BackoffState,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    RetryAfter,
)
from janus_mp.core.cancel import CancellationToken
from janus_mp.core.config import AutoShutdown, SpawnOptions, SupervisorConfig
from janus_mp.core.counters import MetricsSnapshot, SupervisorMetrics
from janus_mp.core.exits import ExitKind, ExitPolicy, KillCause, ReservedExit, RestartPolicy
from janus_mp.core.health_check import HealthCheck
from janus_mp.core.hooks_config import HooksConfig
from janus_mp.core.lifecycle import (
    ServiceLifecycle,
    ServiceLifecycleSnapshot,
    ServicePhase,
    TerminationKind,
    TerminationReason,
    TransitionError,
)
from janus_mp.core.notices import LifecycleNotice, NoticeKind
from janus_mp.core.process_settings import ProcessSettings
from janus_mp.core.snapshots import ServiceSnapshot, SupervisorSnapshot
from janus_mp.core.tree import GroupStrategy, ServiceGroup
from janus_mp.errors import (
    ConfigError,
    JanusError,
    PoisonTask,
    QueueFull,
    ServiceLoadError,
    TaskError,
    TaskTimeout,
    UnknownServiceError,
    WorkerDied,
)
from janus_mp.pools import TaskInterrupted, TaskPool, pool
from janus_mp.runtime.supervisor import JanusSupervisor
from janus_mp.service import JanusService, WorkerContext
from janus_mp.version import __version__

__all__ = [
    "AutoShutdown",
    "ApiModuleAdapter", "CommandAdapter", "ModuleAdapter",
    "BackoffAction", "BackoffConfig", "BackoffState", "BreakerState", "CancellationToken",
    "CircuitBreaker", "CircuitOpen", "ConfigError", "ExitKind", "ExitPolicy", "GroupStrategy",
    "JanusError",
    "JanusService", "JanusSupervisor", "KillCause", "MetricsSnapshot", "ReservedExit",
    "RestartPolicy", "RetryAfter", "ServiceLifecycle", "ServiceLifecycleSnapshot",
    "ProcessSettings", "ServiceGroup", "ServiceLoadError", "ServicePhase", "ServiceSnapshot",
    "SpawnOptions",
    "SupervisorConfig",
    "SupervisorMetrics", "SupervisorSnapshot", "TerminationKind", "TerminationReason",
    "TransitionError", "UnknownServiceError", "WorkerContext", "__version__",
    "HealthCheck", "HooksConfig", "LifecycleNotice", "NoticeKind",
    "PoisonTask", "QueueFull", "TaskError", "TaskInterrupted", "TaskPool", "TaskTimeout",
    "WorkerDied", "pool",
]
