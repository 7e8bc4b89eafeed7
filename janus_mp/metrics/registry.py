"""The registry behind the supervisor's ``/metrics``: janus-mp's own families first, then the
workers' — minus any whose names are janus-mp's.

A worker is free to name a metric ``janus_supervisor_restarts``. Exported next to ours, the
page would carry one name twice (two HELP and TYPE lines: promtool and Prometheus reject the
whole scrape), so the workers' family gives way, with one log line per name.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

log = logging.getLogger("janus_mp.metrics")

#: The sample names a family of each type may expose besides its own name.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}


class Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


class SupervisorRegistry(CollectorRegistry):
    """Collectors registered here are janus-mp's; ``workers`` yields the workers' families."""

    def __init__(self, workers: Collector) -> None:
        super().__init__(auto_describe=False)
        self._workers = workers
        self._told: set[str] = set()  # worker metric names whose clash was logged
        self._told_lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        taken: set[str] = set()
        for family in super().collect():
            taken |= exposed_names(family)
            yield family
        for family in self._workers.collect():
            clash = exposed_names(family) & taken
            if clash:
                self._tell(family.name, clash)
                continue
            yield family

    def _tell(self, name: str, clash: set[str]) -> None:
        with self._told_lock:
            if name in self._told:
                return
            self._told.add(name)
        log.warning("workers' metric %s is not exported: janus-mp exports %s itself",
                    name, ", ".join(sorted(clash)))


def exposed_names(family: Metric) -> set[str]:
    """Every name ``family`` may put on a page, in either exposition format."""
    names = {family.name, *(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))}
    names.update(sample.name for sample in family.samples)
    return names
