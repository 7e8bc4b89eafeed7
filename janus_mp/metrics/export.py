"""``janus_supervisor_*`` metric families, read from one MetricsSnapshot per scrape.

Reading a snapshot (not live counters) is what makes ``/metrics`` and ``sup.metrics_snapshot()``
agree: they are the same data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from janus_mp.core.counters import MetricsSnapshot

PREFIX = "janus_supervisor"


class SupervisorCollector:
    def __init__(self, snapshot: Callable[[], MetricsSnapshot], info: dict[str, str]) -> None:
        self._snapshot = snapshot
        self._info = info

    def describe(self) -> list[Any]:
        return []  # collected on demand: no fixed description, no collection at registration

    def collect(self) -> Iterator[Any]:
        snap = self._snapshot()
        services = sorted(snap.services.items())
        spawned = CounterMetricFamily(f"{PREFIX}_spawned", "Worker processes started.",
                                      labels=["service"])
        restarts = CounterMetricFamily(f"{PREFIX}_restarts",
                                       "Workers restarted after they exited.", labels=["service"])
        terminated = CounterMetricFamily(f"{PREFIX}_terminated",
                                         "Worker processes that ended, by reason.",
                                         labels=["service", "reason"])
        promotions = CounterMetricFamily(f"{PREFIX}_standby_promotions",
                                         "Slots filled by promoting a parked standby worker "
                                         "instead of forking.", labels=["service"])
        trips = CounterMetricFamily(f"{PREFIX}_circuit_breaker_trips",
                                    "Times a service's circuit breaker opened.",
                                    labels=["service"])
        workers = GaugeMetricFamily(f"{PREFIX}_workers", "Worker slots by lifecycle phase "
                                    "(phase standby: standby workers, which fill no slot).",
                                    labels=["service", "phase"])
        backoff = GaugeMetricFamily(f"{PREFIX}_backoff_delay_seconds",
                                    "Longest pending restart delay of a service.",
                                    labels=["service"])
        uptime = HistogramMetricFamily(f"{PREFIX}_uptime_seconds",
                                       "How long worker processes ran, observed when they end.",
                                       labels=["service"])
        for name, svc in services:
            spawned.add_metric([name], svc.spawned_total)
            restarts.add_metric([name], svc.restarts_total)
            promotions.add_metric([name], svc.standby_promotions_total)
            trips.add_metric([name], svc.circuit_breaker_trips_total)
            for reason, count in sorted(svc.terminated_total.items()):
                terminated.add_metric([name, reason], count)
            for phase, count in sorted(svc.workers_by_phase.items()):
                workers.add_metric([name, phase], count)
            backoff.add_metric([name], svc.backoff_delay_seconds)
            h = svc.uptime
            buckets = [(_le(b), float(c)) for b, c in zip(h.buckets, h.counts, strict=True)]
            buckets.append(("+Inf", float(h.count)))
            uptime.add_metric([name], buckets, h.sum)
        yield spawned
        yield restarts
        yield promotions
        yield terminated
        yield trips
        yield GaugeMetricFamily(f"{PREFIX}_active_services", "Services not yet terminated.",
                                value=snap.active_services)
        yield workers
        yield backoff
        yield uptime
        info = GaugeMetricFamily(f"{PREFIX}_info", "The supervisor: version and settings.",
                                 labels=sorted(self._info))
        info.add_metric([self._info[k] for k in sorted(self._info)], 1)
        yield info


def _le(bound: float) -> str:
    return repr(float(bound))
