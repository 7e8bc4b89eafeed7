"""Compaction is exact: janus-mp's collector (live files + archive of reaped workers) scrapes
the same as the stock MultiProcessCollector over the whole, uncompacted history.

Processes are simulated in this process: each has its own MultiProcessValue class with a
chosen pid and its own metric objects, so the files are written by prometheus_client itself.
The stock side gets a copy of every reaped process's files (taken just before janus-mp folds
and deletes them) with mark_process_dead applied, plus the live files at each scrape.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import Counter, Gauge, Histogram, Summary, metrics, values
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from janus_mp.metrics.fold import FileId, Fold, KeyParser, parse_file_name
from janus_mp.metrics.store import MultiprocessMetrics

MODES = sorted(Gauge._MULTIPROC_MODES)
ENV = "PROMETHEUS_MULTIPROC_DIR"
# tmpfs where there is one: where multiprocess directories usually live, and ~10x faster
# file creation than an overlay filesystem.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


# -- simulated processes ---------------------------------------------------------------------
class SimulatedProcess:
    """One process's metrics, writing files named by ``pid`` as prometheus_client does."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.value_class = values.MultiProcessValue(process_identifier=lambda: pid)
        self.metrics: dict[str, Any] = {}

    def metric(self, name: str) -> Any:
        """Metrics are made on first use, so processes differ in which files they have."""
        if name not in self.metrics:
            with self.writing():
                self.metrics[name] = _make_metric(name)
        return self.metrics[name]

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        # A labelled child picks the value class when it is first used, so every operation
        # runs with this process's class in place.
        saved = values.ValueClass
        values.ValueClass = self.value_class
        try:
            yield
        finally:
            values.ValueClass = saved

    def apply(self, op: tuple[str, int, int, float]) -> None:
        kind, mode_index, label, amount = op
        with self.writing():
            if kind == "count":
                self.metric("jobs").labels(f"k{label}").inc(abs(amount))
            elif kind == "count_plain":
                self.metric("plain").inc(abs(amount))
            elif kind == "observe":
                self.metric("latency").labels(f"r{label}").observe(amount)
                self.metric("size").observe(amount)
            else:
                mode = MODES[mode_index]
                gauge = self.metric(f"g_{mode}").labels(f"s{label}")
                if kind == "set" or "mostrecent" in mode:  # inc is refused in mostrecent modes
                    gauge.set(amount)
                else:
                    gauge.inc(amount)

    def exit(self) -> None:
        self.value_class.close_all_files()  # what exiting does to its mmaps


def _make_metric(name: str) -> Any:
    if name == "jobs":
        return Counter("jobs", "Jobs done.", ["kind"], registry=None)
    if name == "plain":
        return Counter("plain", "An unlabelled counter.", registry=None)
    if name == "latency":
        return Histogram("latency", "Latency.", ["route"], buckets=(0.5, 1, 2.5), registry=None)
    if name == "size":
        return Summary("size", "Sizes.", registry=None)
    mode = name[2:]
    return Gauge(name, f"A {mode} gauge.", ["slot"], multiprocess_mode=mode, registry=None)


@dataclasses.dataclass
class Simulation:
    store: MultiprocessMetrics
    stock: Path  # reaped processes' files, kept as the stock reader keeps them
    snapshot: Path  # stock + live files, rebuilt for each stock scrape


@contextlib.contextmanager
def simulation() -> Iterator[Simulation]:
    """A prepared store, the env var pointing writers at it, and a strictly increasing clock
    so that mostrecent gauges never tie (the stock reader breaks ties by directory order, an
    order janus-mp cannot know)."""
    saved_env = os.environ.get(ENV)
    saved_time = metrics.time
    ticks = itertools.count(1_700_000_000)
    metrics.time = SimpleNamespace(time=lambda: float(next(ticks)))  # type: ignore[assignment]
    scratch = Path(tempfile.mkdtemp(prefix="janus-fold-", dir=SCRATCH))
    for sub in ("store", "stock", "snapshot"):
        (scratch / sub).mkdir()
    sim = Simulation(MultiprocessMetrics(str(scratch / "store")), scratch / "stock",
                     scratch / "snapshot")
    try:
        os.environ[ENV] = sim.store.prepare()
        yield sim
    finally:
        values.close_all_multiprocess_files()
        metrics.time = saved_time  # type: ignore[assignment]
        if saved_env is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = saved_env
        sim.store.close()
        shutil.rmtree(scratch, ignore_errors=True)


def live_files(sim: Simulation) -> list[Path]:
    """Live processes' files: not the archive's, nor folded ones (emptied, 8 bytes)."""
    return sorted(f for f in Path(sim.store.path or "").glob("*.db")
                  if not f.name.split("_")[-1].startswith("archive-") and f.stat().st_size > 8)


def stock_scrape_of_the_directory(sim: Simulation) -> list[Metric]:
    """What an app's own stock collector reads: the store's directory alone."""
    return list(MultiProcessCollector(None, path=sim.store.path).collect())


def without_all_gauges(families: list[Metric]) -> list[Metric]:
    """Families but ``all``-mode gauges, one series per pid, which the archive's files leave
    out for dead processes."""
    return [m for m in families if m.name != "g_all"]


def reap(sim: Simulation, process: SimulatedProcess) -> None:
    """The process died: stock keeps its files (minus live gauges), janus-mp folds them."""
    process.exit()
    for f in Path(sim.store.path or "").glob(f"*_{process.pid}.db"):
        shutil.copy(f, sim.stock)
    mark_process_dead(process.pid, str(sim.stock))
    sim.store.process_dead(process.pid)


def stock_scrape(sim: Simulation) -> list[Metric]:
    """The stock collector over the full history: reaped processes' files plus live ones."""
    for f in sim.snapshot.iterdir():
        f.unlink()
    for f in [*sim.stock.glob("*.db"), *live_files(sim)]:
        os.link(f, sim.snapshot / f.name)  # the same inode: what the stock reader would read
    return list(MultiProcessCollector(None, path=str(sim.snapshot)).collect())


def samples(families: list[Metric]) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    return sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                  for family in families for s in family.samples)


def headers(families: list[Metric]) -> list[tuple[str, str, str]]:
    return sorted((m.name, m.type, m.documentation) for m in families)


# -- histories ---------------------------------------------------------------------------------
def exact_amounts() -> st.SearchStrategy[float]:
    """Quarters: every sum of them is exact, whatever the order of addition."""
    return st.integers(-400, 400).map(lambda k: k / 4)


def actions(amounts: st.SearchStrategy[float]) -> st.SearchStrategy[tuple[Any, ...]]:
    """(action, which process, operation): mostly operations, gauges most of all, since
    their modes are where merges differ."""
    operation = st.tuples(
        st.sampled_from(["count", "count_plain", "observe", "set", "set", "inc", "inc"]),
        st.integers(0, len(MODES) - 1), st.integers(0, 1), amounts)
    return st.tuples(st.sampled_from(["spawn", "op", "op", "op", "op", "op", "reap", "scrape"]),
                     st.integers(0, 5), operation)


def histories(amounts: st.SearchStrategy[float], longest: int) -> st.SearchStrategy[list[Any]]:
    # Lengths drawn uniformly: plain st.lists stays near its minimum, too short for several
    # processes to touch the same gauge.
    return st.integers(1, longest).flatmap(
        lambda n: st.lists(actions(amounts), min_size=n, max_size=n))


def run_history(history: list[tuple[Any, ...]],
                compare: Callable[[list[Metric], list[Metric]], None]) -> None:
    with simulation() as sim:
        live: list[SimulatedProcess] = []
        pids = itertools.count(1000)  # unique: see test_pid_reuse_keeps_counts
        for action in [*history, ("scrape", 0, None)]:
            if (action[0] == "spawn" and len(live) < 6) or (action[0] == "op" and not live):
                live.append(SimulatedProcess(next(pids)))
            if action[0] == "op":
                live[action[1] % len(live)].apply(action[2])
            elif action[0] == "reap" and live:
                reap(sim, live.pop(action[1] % len(live)))
            elif action[0] == "scrape":
                ours = list(sim.store.collector().collect())
                compare(ours, stock_scrape(sim))
                compare(without_all_gauges(ours),
                        without_all_gauges(stock_scrape_of_the_directory(sim)))
        # What a scrape reads depends on live processes only.
        assert sim.store.file_count() == len(live_files(sim))
        assert {f.name.rsplit("_", 1)[1] for f in live_files(sim)} <= {
            f"{p.pid}.db" for p in live}


def compare_exactly(ours: list[Metric], stock: list[Metric]) -> None:
    assert headers(ours) == headers(stock)
    assert samples(ours) == samples(stock)


@settings(max_examples=200, deadline=None)
@given(histories(exact_amounts(), 64))
def test_collector_equals_stock_over_the_same_history(history: list[tuple[Any, ...]]) -> None:
    run_history(history, compare_exactly)


def compare_to_rounding(ours: list[Metric], stock: list[Metric]) -> None:
    # The stock reader adds processes in directory order, janus-mp adds the archive (in reap
    # order) then live files: the same terms, associated differently, so equal to rounding.
    assert headers(ours) == headers(stock)
    a, b = samples(ours), samples(stock)
    assert [s[:2] for s in a] == [s[:2] for s in b]
    for (name, labels, x), (_, _, y) in zip(a, b, strict=True):
        assert math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-9), (name, labels, x, y)


@settings(max_examples=60, deadline=None)
@given(histories(st.floats(0.0, 1e6, allow_nan=False), 50))
def test_arbitrary_floats_agree_to_rounding(history: list[tuple[Any, ...]]) -> None:
    run_history(history, compare_to_rounding)


# -- targeted cases ----------------------------------------------------------------------------
def test_reaped_worker_counts_survive_and_its_live_gauges_go() -> None:
    with simulation() as sim:
        a, b = SimulatedProcess(1), SimulatedProcess(2)
        for process in (a, b):
            process.apply(("count_plain", 0, 0, 5.0))
            process.apply(("set", MODES.index("livesum"), 1, 1.0))
            process.apply(("set", MODES.index("all"), 0, 7.0))
        reap(sim, a)
        ours = samples(list(sim.store.collector().collect()))
        assert ("plain_total", (), 10.0) in ours
        assert ("g_livesum", (("slot", "s1"),), 1.0) in ours  # b only
        assert ("g_all", (("pid", "1"), ("slot", "s0")), 7.0) in ours  # kept, as stock keeps it
        assert sim.store.file_count() == len(list(Path(sim.store.path or "").glob("*_2.db")))
        assert samples(stock_scrape(sim)) == ours


@pytest.mark.parametrize("mode", MODES)
def test_every_gauge_mode_across_reaped_and_live_processes(mode: str) -> None:
    """Values in an order where min, max, sum, latest and any one process all differ."""
    with simulation() as sim:
        processes = [SimulatedProcess(pid) for pid in (11, 12, 13)]
        for process, value in zip(processes, (9.0, -3.0, 5.0), strict=True):  # in time order
            process.apply(("set", MODES.index(mode), 0, value))
        reap(sim, processes[0])
        ours = samples(list(sim.store.collector().collect()))
        assert ours == samples(stock_scrape(sim))
        survivors = (9.0, -3.0, 5.0) if not mode.startswith("live") else (-3.0, 5.0)
        expected = {"min": [min(survivors)], "max": [max(survivors)], "sum": [sum(survivors)],
                    "mostrecent": [5.0]}.get(mode.removeprefix("live"), sorted(survivors))
        assert sorted(value for _, _, value in ours) == expected


def test_pid_reuse_keeps_counts() -> None:
    """A new process with a reaped pid starts from zero; counts of both still add up. (The
    stock reader would let it inherit the dead one's gauge values; janus-mp does not.)"""
    with simulation() as sim:
        store = sim.store
        first = SimulatedProcess(77)
        first.apply(("count", 0, 0, 3.0))
        first.apply(("observe", 0, 0, 2.0))
        first.exit()
        store.process_dead(77)
        second = SimulatedProcess(77)
        second.apply(("count", 0, 0, 4.0))
        second.apply(("observe", 0, 0, 2.0))
        ours = samples(list(store.collector().collect()))
        assert ("jobs_total", (("kind", "k0"),), 7.0) in ours
        assert ("latency_count", (("route", "r0"),), 2.0) in ours
        assert ("size_sum", (), 4.0) in ours


def test_mostrecent_gauge_never_set_still_has_its_family() -> None:
    fold = Fold()
    parse = KeyParser()
    key = parse(mmap_key("g", "g", [], [], "help"))
    fold.add(FileId("gauge", "mostrecent", "1"), [(key, 5.0, 0.0)])
    [family] = fold.metrics()
    assert (family.name, family.samples) == ("g", [])  # as stock: a family, no sample


def test_malformed_samples_are_rejected_not_raised() -> None:
    fold = Fold()
    parse = KeyParser()
    bad_bound = parse(mmap_key("h", "h_bucket", ["le"], ["x"], "h"))
    bad_name = parse(mmap_key("", "", [], [], "h"))  # no name: cannot render
    good = parse(mmap_key("h", "h_sum", [], [], "h"))
    assert fold.add(FileId("histogram", "", "1"), [(bad_bound, 1.0, 0.0), (bad_name, 1.0, 0.0),
                                                   (good, 2.0, 0.0)]) == 2
    assert samples(fold.metrics()) == [("h_sum", (), 2.0)]
    with pytest.raises(ValueError):
        parse('["only", "three", {}]')


def test_file_names_parse_like_the_stock_reader() -> None:
    assert parse_file_name("gauge_livesum_123.db") == FileId("gauge", "livesum", "123")
    assert parse_file_name("counter_123.db") == FileId("counter", "", "123")
    assert parse_file_name("notes.txt") is None
    assert parse_file_name("other_1.db") is None
    assert not FileId("gauge", "liveall", "1").survives_death
    assert FileId("gauge", "all", "1").survives_death


# -- process_dead never raises -----------------------------------------------------------------
def test_corrupt_partial_missing_and_unremovable_files_are_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    with simulation() as sim:
        store = sim.store
        path = Path(store.path or "")
        good = MmapedDict(str(path / "counter_41.db"))
        good.write_value(mmap_key("c", "c_total", [], [], "c"), 2.0, 0.0)
        good.write_value(mmap_key("c", "c_total", ["x"], ["1"], "c"), 3.0, 0.0)
        good.close()
        data = bytearray((path / "counter_41.db").read_bytes())
        data[0:4] = (len(data) + 4096).to_bytes(4, "little")  # "used" beyond the end: a torn tail
        (path / "counter_41.db").write_bytes(bytes(data[:4096]))
        (path / "histogram_41.db").write_bytes(b"\xff" * 3)  # garbage
        (path / "summary_41.db").write_bytes(b"")  # died before sizing it: no data, no noise
        (path / "gauge_max_41.db").mkdir()  # neither readable nor removable
        with caplog.at_level(logging.WARNING, logger="janus_mp.metrics"):
            store.process_dead(41)
            store.process_dead(42)  # no files at all
        assert "could not compact metrics file" in caplog.text
        assert "histogram_41.db" in caplog.text and "gauge_max_41.db" in caplog.text
        assert "summary_41.db" not in caplog.text
        # What was readable before the tear is kept.
        assert ("c_total", (), 2.0) in samples(list(store.collector().collect()))
        # Folded files are emptied (removed later, in a batch), the archive is a file too.
        holding = sorted(p.name for p in path.iterdir() if p.is_dir() or p.stat().st_size > 8)
        assert holding == [f"counter_archive-{os.getpid()}.db", "gauge_max_41.db"]
        assert {p.name for p in path.iterdir() if not p.is_dir() and p.stat().st_size <= 8} \
            == {"counter_41.db", "histogram_41.db", "summary_41.db"}
        (path / "gauge_max_41.db").rmdir()


def test_scrape_skips_a_corrupt_live_file(caplog: pytest.LogCaptureFixture) -> None:
    with simulation() as sim:
        store = sim.store
        process = SimulatedProcess(5)
        process.apply(("count_plain", 0, 0, 1.0))
        (Path(store.path or "") / "counter_6.db").write_bytes(b"\x01\x02")
        with caplog.at_level(logging.WARNING, logger="janus_mp.metrics"):
            assert ("plain_total", (), 1.0) in samples(list(store.collector().collect()))
        assert "counter_6.db" in caplog.text


def test_a_name_with_two_types_or_gauge_modes_keeps_the_first_and_records_the_clash() -> None:
    parse = KeyParser()
    fold = Fold()
    key = parse(mmap_key("twice", "twice", [], [], "h"))
    counter_key = parse(mmap_key("twice", "twice_total", [], [], "h"))
    fold.add(FileId("gauge", "max", "1"), [(key, 3.0, 0.0)])
    fold.add(FileId("gauge", "livesum", "2"), [(key, 5.0, 0.0)])
    fold.add(FileId("counter", "", "3"), [(counter_key, 7.0, 0.0)])
    fold.add(FileId("gauge", "max", "4"), [(key, 4.0, 0.0)])
    assert samples(fold.metrics()) == [("twice", (), 4.0)]
    assert [(m.name, m.type) for m in fold.metrics()] == [("twice", "gauge")]
    assert fold.clashes == {"twice": "used as a gauge (max mode) and as a gauge (livesum mode): "
                                      "the gauge (livesum mode)'s samples are left out"}
    assert fold.copy().clashes == fold.clashes
