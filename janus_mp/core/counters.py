"""SupervisorMetrics: every count the supervisor keeps, in one place, read as plain data.

Pure bookkeeping, owned by the loop thread (no lock): the runtime publishes a frozen
:class:`MetricsSnapshot` after every loop turn, and other threads read that published value. The
Prometheus export (``janus_supervisor_*``) reads snapshots and nothing else, so
``sup.metrics_snapshot()`` and ``/metrics`` cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: Bucket bounds (seconds) of the worker uptime histogram: 10 ms to a day.
UPTIME_BUCKETS: tuple[float, ...] = (
    0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
)


@dataclass(frozen=True)
class UptimeHistogram:
    """Cumulative-style data: ``counts[i]`` observations ≤ ``UPTIME_BUCKETS[i]``, plus +Inf."""

    buckets: tuple[float, ...] = UPTIME_BUCKETS
    counts: tuple[int, ...] = (0,) * len(UPTIME_BUCKETS)
    count: int = 0
    sum: float = 0.0


@dataclass(frozen=True)
class ServiceMetrics:
    spawned_total: int = 0
    restarts_total: int = 0
    #: Slots filled by promoting a parked standby instead of forking (SpawnOptions.standby).
    standby_promotions_total: int = 0
    terminated_total: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    circuit_breaker_trips_total: int = 0
    workers_by_phase: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    backoff_delay_seconds: float = 0.0
    uptime: UptimeHistogram = field(default_factory=UptimeHistogram)

    @property
    def terminated(self) -> int:
        return sum(self.terminated_total.values())


@dataclass(frozen=True)
class MetricsSnapshot:
    """The seed's five numbers, plus the per-service breakdown janus-mp adds."""

    spawned_total: int
    restarts_total: int
    terminated_total: int
    circuit_breaker_trips_total: int
    active_services: int
    services: Mapping[str, ServiceMetrics]

    def totals_line(self) -> str:
        """The totals, for the supervisor's last log line."""
        return (f"spawned={self.spawned_total} restarts={self.restarts_total} "
                f"terminated={self.terminated_total} "
                f"breaker_trips={self.circuit_breaker_trips_total}")


class _ServiceCounters:
    __slots__ = ("spawned", "restarts", "promotions", "terminated", "trips", "phases",
                 "backoff", "up_counts", "up_count", "up_sum")

    def __init__(self) -> None:
        self.spawned = 0
        self.restarts = 0
        self.promotions = 0
        self.terminated: Counter[str] = Counter()
        self.trips = 0
        self.phases: dict[str, int] = {}
        self.backoff = 0.0
        self.up_counts = [0] * len(UPTIME_BUCKETS)
        self.up_count = 0
        self.up_sum = 0.0


class SupervisorMetrics:
    """Counters for supervisor events; recorded and snapshotted by the loop thread."""

    def __init__(self) -> None:
        self._services: dict[str, _ServiceCounters] = {}
        self._active_services = 0
        #: Moves with every change (every change goes through ``_svc`` or
        #: ``set_active_services``): an unchanged version needs no new snapshot.
        self.version = 0

    def _svc(self, service: str) -> _ServiceCounters:
        self.version += 1
        counters = self._services.get(service)
        if counters is None:
            counters = self._services[service] = _ServiceCounters()
        return counters

    def register_service(self, service: str) -> None:
        """Make a service visible (at zero) before anything happened to it."""
        self._svc(service)

    def record_spawn(self, service: str) -> None:
        self._svc(service).spawned += 1

    def record_restart(self, service: str) -> None:
        self._svc(service).restarts += 1

    def record_promotion(self, service: str) -> None:
        self._svc(service).promotions += 1

    def record_termination(self, service: str, reason: str, uptime: float) -> None:
        svc = self._svc(service)
        svc.terminated[reason] += 1
        svc.up_count += 1
        svc.up_sum += uptime
        for i, bound in enumerate(UPTIME_BUCKETS):
            if uptime <= bound:
                svc.up_counts[i] += 1

    def record_circuit_breaker_trip(self, service: str) -> None:
        self._svc(service).trips += 1

    def set_active_services(self, count: int) -> None:
        self.version += 1
        self._active_services = count

    def set_service_state(self, service: str, phases: Mapping[str, int], backoff: float) -> None:
        svc = self._svc(service)
        svc.phases = dict(phases)
        svc.backoff = backoff

    def snapshot(self) -> MetricsSnapshot:
        services = {
            name: ServiceMetrics(
                spawned_total=c.spawned,
                restarts_total=c.restarts,
                standby_promotions_total=c.promotions,
                terminated_total=MappingProxyType(dict(c.terminated)),
                circuit_breaker_trips_total=c.trips,
                workers_by_phase=MappingProxyType(dict(c.phases)),
                backoff_delay_seconds=c.backoff,
                uptime=UptimeHistogram(counts=tuple(c.up_counts), count=c.up_count,
                                       sum=c.up_sum),
            )
            for name, c in self._services.items()
        }
        active = self._active_services
        return MetricsSnapshot(
            spawned_total=sum(s.spawned_total for s in services.values()),
            restarts_total=sum(s.restarts_total for s in services.values()),
            terminated_total=sum(s.terminated for s in services.values()),
            circuit_breaker_trips_total=sum(s.circuit_breaker_trips_total
                                            for s in services.values()),
            active_services=active,
            services=MappingProxyType(services),
        )
