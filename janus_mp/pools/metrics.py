"""Hosted pools on /metrics: ``janus_pool_*`` from the counts the loop publishes each turn."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from janus_mp.pools.hosted import HostedPools


class PoolMetrics:
    """A prometheus_client collector over :meth:`HostedPools.snapshot`."""

    def __init__(self, pools: HostedPools) -> None:
        self._pools = pools

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        tasks = CounterMetricFamily("janus_pool_tasks", "Tasks ended, by outcome.",
                                    labels=["pool", "outcome"])
        depth = GaugeMetricFamily("janus_pool_queue_depth", "Tasks waiting for a worker.",
                                  labels=["pool"])
        busy = GaugeMetricFamily("janus_pool_busy_workers", "Workers running a task.",
                                 labels=["pool"])
        duration = HistogramMetricFamily("janus_pool_task_duration_seconds",
                                         "How long tasks ran (from dispatch to outcome).",
                                         labels=["pool"])
        for name, pool in sorted(self._pools.snapshot().items()):
            for outcome, count in sorted(pool["outcomes"].items()):
                tasks.add_metric([name, outcome], count)
            depth.add_metric([name], pool["queued"])
            busy.add_metric([name], pool["busy_workers"])
            buckets = [(repr(float(bound)), count) for bound, count in pool["duration_buckets"]]
            buckets.append(("+Inf", pool["duration_count"]))
            duration.add_metric([name], buckets, pool["duration_sum"])
        yield from (tasks, depth, busy, duration)
