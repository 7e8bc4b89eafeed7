"""janus-mp: a supervisor for CPU-bound Python services.

Pools of worker processes (made with ``multiprocess``) per service, a shared cancellation tree,
restarts driven by exit codes with exponential backoff and a circuit breaker, Prometheus metrics.
"""

from __future__ import annotations

from janus_mp.adapters import ApiModuleAdapter, CommandAdapter, ModuleAdapter
from janus_mp.backoff import (
    BackoffAction,
    BackoffConfig,
    BackoffState,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    RetryAfter,
)
from janus_mp.cancel import CancellationToken
from janus_mp.config import SpawnOptions, SupervisorConfig
from janus_mp.errors import ConfigError, JanusError, ServiceLoadError, UnknownServiceError
from janus_mp.exits import ExitKind, ExitPolicy, KillCause, ReservedExit, RestartPolicy
from janus_mp.lifecycle import (
    ServiceLifecycle,
    ServiceLifecycleSnapshot,
    ServicePhase,
    TerminationKind,
    TerminationReason,
    TransitionError,
)
from janus_mp.metrics import MetricsSnapshot, SupervisorMetrics
from janus_mp.pool import ServiceSnapshot, SupervisorSnapshot
from janus_mp.service import JanusService
from janus_mp.supervisor import JanusSupervisor
from janus_mp.worker import WorkerContext

__version__ = "0.1.0"

__all__ = [
    "ApiModuleAdapter", "CommandAdapter", "ModuleAdapter",
    "BackoffAction", "BackoffConfig", "BackoffState", "BreakerState", "CancellationToken",
    "CircuitBreaker", "CircuitOpen", "ConfigError", "ExitKind", "ExitPolicy", "JanusError",
    "JanusService", "JanusSupervisor", "KillCause", "MetricsSnapshot", "ReservedExit",
    "RestartPolicy", "RetryAfter", "ServiceLifecycle", "ServiceLifecycleSnapshot",
    "ServiceLoadError", "ServicePhase", "ServiceSnapshot", "SpawnOptions", "SupervisorConfig",
    "SupervisorMetrics", "SupervisorSnapshot", "TerminationKind", "TerminationReason",
    "TransitionError", "UnknownServiceError", "WorkerContext", "__version__",
]
