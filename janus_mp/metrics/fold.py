"""The pure merge behind janus-mp's metrics: the stock multiprocess rules, one batch at a time.

prometheus_client's multiprocess mode leaves one file per metric type (and per gauge mode) per
process, and its collector re-merges every file of every process that ever lived on each scrape.
Here the same merge is a ``Fold`` that takes one batch of samples at a time, so the supervisor
folds a reaped worker into an archive once, and a scrape adds only the live workers to a copy:

    reaped worker's files --read--> batches --Fold.add--> archive (the supervisor's memory)
    live workers' files ---read--> batches --+
    archive.copy() --------------------------Fold.add--> Fold.metrics() --> /metrics

Merge rules, those of ``prometheus_client.multiprocess.MultiProcessCollector``:

    counter, summary, histogram _sum    summed over processes
    histogram buckets                   summed per bound, then cumulative; _count = last bucket
    gauge sum, livesum                  summed
    gauge min, max (and live*)          smallest / largest value
    gauge mostrecent (and live*)        the value with the latest timestamp (> 0)
    gauge all, liveall                  one series per process, labelled ``pid``

A dead process's live-mode gauges are never folded (what ``mark_process_dead`` does), and its
``all`` series are kept, as the stock reader keeps them. Counts, buckets, min, max, mostrecent
and all are folded exactly; sums add the same terms in another order than the stock reader's
directory order, so they agree to rounding, and bit for bit when the terms sum exactly
(integers, most counts).

No I/O here: ``metrics_store`` reads files and decides who is dead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import NamedTuple

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

_go_float: Callable[[float], str] = floatToGoString  # bucket labels as the stock reader writes

Labels = tuple[tuple[str, str], ...]
SampleId = tuple[str, Labels]  # (sample name, labels in the stock reader's output order)

KINDS = frozenset({"counter", "gauge", "histogram", "summary"})
_MIN = frozenset({"min", "livemin"})
_MAX = frozenset({"max", "livemax"})
_SUM = frozenset({"sum", "livesum"})
_MOST_RECENT = frozenset({"mostrecent", "livemostrecent"})
_COMBINED = _MIN | _MAX | _SUM | _MOST_RECENT  # the gauge modes that drop the pid label
_LIVE = frozenset(mode for mode in _COMBINED if mode.startswith("live"))


class FileId(NamedTuple):
    """What a multiprocess file's name says: ``counter_<pid>.db``, ``gauge_<mode>_<pid>.db``."""

    kind: str
    mode: str  # the gauge's multiprocess_mode; "" for other kinds
    pid: str

    @property
    def survives_death(self) -> bool:
        """Whether a dead process's samples of this file still count (live gauges do not)."""
        return not (self.kind == "gauge" and self.mode.startswith("live"))


class SampleKey(NamedTuple):
    """One parsed mmap key, with the label variants the merge needs worked out once."""

    metric: str
    sample: str
    labels: Labels  # sorted, as in the stock reader
    help: str
    without_pid: Labels  # what min/max/sum/mostrecent gauges keep
    without_le: Labels  # a histogram bucket's series
    bound: float | None  # a histogram bucket's upper bound; None without (or with a bad) le
    has_le: bool


Entry = tuple[SampleKey, float, float]  # key, value, timestamp


class StoredSample(NamedTuple):
    """One sample as a multiprocess file holds it (see ``Fold.stored_samples``)."""

    metric: str
    sample: str
    labels: Labels
    help: str
    value: float
    timestamp: float


def parse_file_name(name: str) -> FileId | None:
    """Split a file name the way the stock reader does; None for names that are not ours."""
    if not name.endswith(".db"):
        return None
    parts = name.split("_")
    if parts[0] not in KINDS:
        return None
    if parts[0] == "gauge":
        return FileId("gauge", parts[1], parts[2][:-3]) if len(parts) >= 3 else None
    return FileId(parts[0], "", parts[1][:-3]) if len(parts) >= 2 else None


def file_name(source: FileId) -> str:
    """The inverse of ``parse_file_name``: the name prometheus_client gives the file."""
    if source.kind == "gauge":
        return f"gauge_{source.mode}_{source.pid}.db"
    return f"{source.kind}_{source.pid}.db"


class KeyParser:
    """Raw mmap keys to ``SampleKey``, cached: every worker writes the same few keys.

    JSON decoding is most of a scrape's cost, and the keys do not change between scrapes or
    between workers. The cache is bounded so a runaway label cannot grow it without limit.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._limit = limit
        self._cache: dict[str, SampleKey] = {}

    def __call__(self, raw: str) -> SampleKey:
        key = self._cache.get(raw)
        if key is None:
            key = _decode_key(raw)
            if len(self._cache) >= self._limit:
                self._cache.clear()
            self._cache[raw] = key
        return key


def _decode_key(raw: str) -> SampleKey:
    decoded = json.loads(raw)
    if not isinstance(decoded, list) or len(decoded) != 4:
        raise ValueError(f"not a metric key: {raw[:80]!r}")
    metric, sample, label_map, help_text = decoded
    if not (isinstance(metric, str) and isinstance(sample, str) and isinstance(help_text, str)
            and isinstance(label_map, dict)
            and all(isinstance(v, str) for v in label_map.values())):
        raise ValueError(f"not a metric key: {raw[:80]!r}")
    labels: Labels = tuple(sorted(label_map.items()))
    bound = None
    if "le" in label_map:
        try:
            bound = float(label_map["le"])
        except ValueError:
            pass
    return SampleKey(metric, sample, labels, help_text,
                     without_pid=tuple(pair for pair in labels if pair[0] != "pid"),
                     without_le=tuple(pair for pair in labels if pair[0] != "le"),
                     bound=bound, has_le="le" in label_map)


class _Family:
    """One metric family's folded samples."""

    __slots__ = ("name", "help", "kind", "mode", "values", "stamps", "buckets")

    def __init__(self, name: str, help_text: str, kind: str) -> None:
        self.name = name
        self.help = help_text
        self.kind = kind
        self.mode = ""
        self.values: dict[SampleId, float] = {}
        self.stamps: dict[SampleId, float] = {}  # mostrecent gauges: the winning timestamp
        self.buckets: dict[Labels, dict[float, float]] = {}  # histograms: per-bound counts

    def copy(self) -> _Family:
        twin = _Family(self.name, self.help, self.kind)
        twin.mode = self.mode
        twin.values = dict(self.values)
        twin.stamps = dict(self.stamps)
        twin.buckets = {labels: dict(bounds) for labels, bounds in self.buckets.items()}
        return twin

    def metric(self) -> Metric:
        """The family's samples, those of one label set together (OpenMetrics requires it: a
        parser rejects a family whose label sets interleave) and, within a histogram's label
        set, in the spec's order: buckets by bound, then _count, then _sum."""
        groups: dict[Labels, list[tuple[int, str, Labels, float]]] = {}
        for (name, labels), value in self.values.items():
            rank = _HISTOGRAM_RANK.get(name[len(self.name):], len(_HISTOGRAM_RANK)) \
                if self.kind == "histogram" else 0
            groups.setdefault(_group_of(labels), []).append((rank, name, labels, value))
        for labels, bounds in self.buckets.items():
            group = groups.setdefault(_group_of(labels), [])
            total = 0.0
            for bound, count in sorted(bounds.items()):
                total += count
                group.append((0, self.name + "_bucket", labels + (("le", _go_float(bound)),),
                              total))
            group.append((1, self.name + "_count", labels, total))
        metric = Metric(self.name, self.help, self.kind)
        metric.samples = [Sample(name, dict(labels), value)
                          for group in groups.values()
                          for _, name, labels, value in sorted(group, key=lambda s: s[0])]
        return metric


#: Order of a histogram's samples within one label set (sorting is stable: buckets keep theirs).
_HISTOGRAM_RANK = {"_bucket": 0, "_count": 1, "_sum": 2}


def _group_of(labels: Labels) -> Labels:
    """The label set a sample belongs to: its labels without ``le``, in a fixed order."""
    return tuple(sorted(pair for pair in labels if pair[0] != "le"))


class Fold:
    """Samples of many processes merged by the stock rules; add batches in any number of steps.

    Invariant: folding batches B1..Bn one by one (into an archive, then a copy of it) gives the
    stock reader's result over B1..Bn, within the rounding noted in the module docstring, for
    any split of the batches. A family keeps its first help text, kind and gauge mode; where
    the stock reader mixes samples of another type or mode into it (a page no parser accepts),
    those samples are left out here and the name is recorded in ``clashes``.
    """

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}
        #: Metric name -> why samples of it were left out (another type or gauge mode).
        self.clashes: dict[str, str] = {}

    def copy(self) -> Fold:
        twin = Fold()
        twin._families = {name: family.copy() for name, family in self._families.items()}
        twin.clashes = dict(self.clashes)
        return twin

    def metrics(self) -> list[Metric]:
        return [family.metric() for family in self._families.values()]

    def stored_samples(self) -> dict[tuple[str, str], list[StoredSample]]:
        """The fold as samples of multiprocess files, by (kind, gauge mode): what a file must
        hold for the stock reader to read this fold back (histogram buckets per bound, not
        cumulative). Gauges whose value is per process (``all`` and the live modes) are left
        out: one file cannot say which pid each value was."""
        stored: dict[tuple[str, str], list[StoredSample]] = {}
        for family in self._families.values():
            if family.kind == "gauge" and family.mode not in _COMBINED - _LIVE:
                continue
            samples = stored.setdefault((family.kind, family.mode), [])
            for (name, labels), value in family.values.items():
                samples.append(StoredSample(family.name, name, labels, family.help, value,
                                            family.stamps.get((name, labels), 0.0)))
            for labels, bounds in family.buckets.items():
                for bound, count in bounds.items():
                    samples.append(StoredSample(
                        family.name, family.name + "_bucket",
                        labels + (("le", _go_float(bound)),), family.help, count, 0.0))
        return stored

    def series_count(self) -> int:
        """Folded series: what a copy costs (grows only with gauge ``all`` series of the dead)."""
        return sum(len(f.values) + sum(map(len, f.buckets.values()))
                   for f in self._families.values())

    def add(self, source: FileId, entries: Iterable[Entry]) -> int:
        """Fold one file's entries; returns how many were rejected as malformed (and skipped)."""
        is_gauge = source.kind == "gauge"
        pid_label: Labels = (("pid", source.pid),)
        rejected = 0
        for key, value, timestamp in entries:
            family = self._families.get(key.metric)
            if family is None:
                try:
                    Metric(key.metric, key.help, source.kind)  # the name must render later
                except ValueError:
                    rejected += 1
                    continue
                family = self._families[key.metric] = _Family(key.metric, key.help, source.kind)
                family.mode = source.mode
            elif family.kind != source.kind or (is_gauge and family.mode != source.mode):
                # One name, two types or gauge modes (two versions of an app, a typo): the
                # first one seen keeps the name, so the page still parses; the other is shown
                # nowhere, and said once (see ``clashes``).
                self.clashes.setdefault(key.metric, _clash(family, source))
                continue
            if family.kind == "gauge":
                if family.mode in _COMBINED:  # any pid label goes, a user's own too, as stock
                    labels = key.without_pid
                else:
                    labels = key.labels + pid_label if is_gauge else key.labels
                _fold_gauge(family, (key.sample, labels), value, timestamp)
            elif family.kind == "histogram" and key.has_le:
                if key.bound is None:
                    rejected += 1
                    continue
                bounds = family.buckets.setdefault(key.without_le, {})
                bounds[key.bound] = bounds.get(key.bound, 0.0) + value
            else:
                sample = (key.sample, key.labels)
                family.values[sample] = family.values.get(sample, 0.0) + value
        return rejected


def _clash(family: _Family, source: FileId) -> str:
    def shape(kind: str, mode: str) -> str:
        return f"a {kind} ({mode} mode)" if kind == "gauge" else f"a {kind}"
    return (f"used as {shape(family.kind, family.mode)} and as "
            f"{shape(source.kind, source.mode)}: the {shape(source.kind, source.mode)[2:]}'s "
            f"samples are left out")


def _fold_gauge(family: _Family, sample: SampleId, value: float, timestamp: float) -> None:
    mode = family.mode
    values = family.values
    if mode in _MIN:
        current = values.get(sample)
        if current is None or value < current:
            values[sample] = value
    elif mode in _MAX:
        current = values.get(sample)
        if current is None or value > current:
            values[sample] = value
    elif mode in _SUM:
        values[sample] = values.get(sample, 0.0) + value
    elif mode in _MOST_RECENT:
        stamp = float(timestamp or 0)
        if family.stamps.get(sample, 0.0) < stamp:  # an unset (0) timestamp never wins
            values[sample] = value
            family.stamps[sample] = stamp
    else:  # all, liveall (and unknown modes): per process; the later batch of a pid wins
        values[sample] = value
