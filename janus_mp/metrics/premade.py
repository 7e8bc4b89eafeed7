"""Metrics that exist before a worker switches to multiprocess values, found so that
``MultiprocessMetrics.worker_init`` can move them into the worker's files.

prometheus_client picks a metric's value class when the metric is made: one made at module
level, before the multiprocess directory existed, keeps its value in memory for good, in
whatever registry it is (the default one, an app's own, none).
"""

from __future__ import annotations

import gc
from typing import Any

from janus_mp.metrics.fold import KINDS


def registered_metrics() -> list[Any]:
    """The metrics of the default REGISTRY that hold values: unlabelled ones and children."""
    from prometheus_client.metrics import MetricWrapperBase
    from prometheus_client.registry import REGISTRY

    found: list[Any] = []
    for collector in list(REGISTRY._collector_to_names):
        if not isinstance(collector, MetricWrapperBase) or collector._type not in KINDS:
            continue  # Info and Enum keep their own state; other collectors have none
        if collector._is_observable():
            found.append(collector)
        elif collector._is_parent():
            found.extend(collector._metrics.values())
    return found


def every_metric() -> list[Any]:
    """Every metric of this process that holds values, whatever registry it is in.

    ``gc.get_objects`` skips what ``gc.freeze`` froze (an earlier supervisor in this process,
    or the app), so a frozen heap is thawed for the walk and frozen again.
    """
    from prometheus_client.metrics import MetricWrapperBase

    frozen = gc.get_freeze_count() > 0
    if frozen:
        gc.unfreeze()
    try:
        return [obj for obj in gc.get_objects()
                if isinstance(obj, MetricWrapperBase) and obj._type in KINDS
                and obj._is_observable()]
    finally:
        if frozen:
            gc.freeze()
