"""prometheus_client multiprocess mode, wired by the supervisor, with compaction of dead workers.

The stock MultiProcessCollector reads every ``*.db`` file of every process that ever lived, so a
scrape slows down with every restart. The supervisor knows exactly when a worker is dead — it has
reaped it — so it folds that worker's files into one archive file per type and mode, and deletes
them. The archive files are named the way the stock reader parses names (``counter_archive.db``,
``gauge_max_archive.db``...), so the stock collector reads them with its own merge rules:

    counter, histogram, summary   values summed into the archive (sums, counts, buckets)
    gauge min / max               the archive keeps the min / max
    gauge sum                     summed
    gauge mostrecent              the value with the latest timestamp wins
    gauge live* modes             dropped, as mark_process_dead does
    gauge all                     kept per pid: its output has a ``pid`` label per process,
                                  dead ones included, so it cannot be folded without changing it

Compaction and collection share a lock, so a scrape never sees a worker both in the archive and
in its own file. Counts survive: a counter from a crashed worker lives on in the archive.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import threading
from typing import Any

from janus_mp.errors import ConfigError

log = logging.getLogger("janus_mp.metrics")

ENV = "PROMETHEUS_MULTIPROC_DIR"
ARCHIVE = "archive"
_SUMMED = {"counter", "histogram", "summary"}


class MultiprocessMetrics:
    """The multiprocess directory: prepared before workers start, compacted as they die."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory
        self.path: str | None = None
        self._created = False
        self._lock = threading.Lock()
        self._previous_env: str | None = None

    # -- supervisor side -------------------------------------------------------------------
    def prepare(self) -> str:
        if self.directory is None:
            self.path = tempfile.mkdtemp(prefix="janus-mp-metrics-")
            self._created = True
        else:
            self.path = os.path.abspath(self.directory)
            try:
                os.makedirs(self.path, mode=0o700, exist_ok=True)
                stale = glob.glob(os.path.join(self.path, "*.db"))
                for name in stale:
                    os.remove(name)
                if stale:
                    log.info("removed %d stale metrics files from %s", len(stale), self.path)
            except OSError as exc:
                raise ConfigError("metrics_dir", f"cannot use {self.path}: "
                                  f"{exc.strerror or exc}") from None
        if not os.access(self.path, os.W_OK):
            raise ConfigError("metrics_dir", f"{self.path} is not writable")
        self._previous_env = os.environ.get(ENV)
        os.environ[ENV] = self.path  # spawned workers read it at import; forked ones in init
        return self.path

    def process_dead(self, pid: int) -> None:
        """Fold a reaped worker's files into the archive; never raises (supervision goes on)."""
        if self.path is None:
            return
        with self._lock:
            for name in glob.glob(os.path.join(self.path, f"*_{pid}.db")):
                try:
                    self._fold(name)
                except Exception as exc:  # full disk, corrupt file: log, keep supervising
                    log.warning("could not compact metrics file %s: %s", name, exc)

    def _fold(self, filename: str) -> None:
        from prometheus_client.mmap_dict import MmapedDict

        parts = os.path.basename(filename)[:-3].split("_")
        typ = parts[0]
        mode = parts[1] if typ == "gauge" else ""
        if typ == "gauge" and mode.startswith("live"):
            os.remove(filename)
            return
        if typ == "gauge" and mode == "all":
            return  # per-pid series by definition: kept as they are
        values = list(MmapedDict.read_all_values_from_file(filename))
        archive_name = f"gauge_{mode}_{ARCHIVE}.db" if typ == "gauge" else f"{typ}_{ARCHIVE}.db"
        archive = MmapedDict(os.path.join(self.path or "", archive_name))
        try:
            for key, value, timestamp, _pos in values:
                fresh = key not in archive._positions  # read_value would create it at 0.0
                old_value, old_timestamp = archive.read_value(key)
                if typ in _SUMMED or mode == "sum":
                    archive.write_value(key, old_value + value, timestamp)
                elif mode == "max":
                    archive.write_value(key, value if fresh else max(old_value, value), timestamp)
                elif mode == "min":
                    archive.write_value(key, value if fresh else min(old_value, value), timestamp)
                elif mode == "mostrecent" and (fresh or timestamp > old_timestamp):
                    archive.write_value(key, value, timestamp)
        finally:
            archive.close()
        os.remove(filename)

    def collector(self) -> Any:
        """A collector over live files plus the archive; scrapes hold the compaction lock."""
        from prometheus_client.multiprocess import MultiProcessCollector

        store = self

        class _Locked(MultiProcessCollector):
            def collect(self) -> Any:
                with store._lock:
                    return list(super().collect())

        return _Locked(None, path=self.path)

    def file_count(self) -> int:
        return len(glob.glob(os.path.join(self.path or "", "*.db"))) if self.path else 0

    def close(self) -> None:
        if self.path is None:
            return
        if self._created:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            for name in glob.glob(os.path.join(self.path, "*.db")):
                try:
                    os.remove(name)
                except OSError:
                    pass
        if os.environ.get(ENV) == self.path:
            if self._previous_env is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = self._previous_env
        self.path = None

    # -- worker side -------------------------------------------------------------------------
    def worker_init(self) -> None:
        """In a new worker: write every metric — even ones made before fork — to this pid's files.

        prometheus_client picks its value class at import time; under fork the worker inherits
        a parent that imported it (and maybe built metrics) before the directory existed.
        """
        if self.path is None:
            return
        os.environ[ENV] = self.path
        from prometheus_client import values
        from prometheus_client.metrics import MetricWrapperBase
        from prometheus_client.registry import REGISTRY

        values.ValueClass = values.MultiProcessValue()
        for collector in list(getattr(REGISTRY, "_collector_to_names", {})):
            if not isinstance(collector, MetricWrapperBase):
                continue
            if collector._is_parent():
                with collector._lock:
                    for child in collector._metrics.values():
                        child._metric_init()
            else:
                collector._metric_init()

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory, "path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"])  # type: ignore[misc]
        self.path = state["path"]
