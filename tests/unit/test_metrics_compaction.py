"""Compaction is exact: janus-mp's directory after folding dead workers scrapes the same as the
stock MultiProcessCollector over the full, uncompacted history (with mark_process_dead)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from janus_mp.metrics.store import MultiprocessMetrics

#: Memory-backed temporary directories where the machine has them: each example creates a few
#: hundred small files, and on a disk the file creation alone is most of this test's time.
RAM_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None

GAUGE_MODES = ["all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum",
               "mostrecent", "livemostrecent"]


def write_process(directory: str, pid: int, ops: list[tuple[str, int, float]],
                  monkeypatch_env) -> None:
    """Write one process's metric files as prometheus_client would, for a chosen pid."""
    monkeypatch_env(directory)
    value_class = values.MultiProcessValue(process_identifier=lambda: pid)
    original = values.ValueClass
    values.ValueClass = value_class
    try:
        registry = CollectorRegistry()
        counter = Counter("jobs", "jobs", ["kind"], registry=registry)
        hist = Histogram("latency", "latency", buckets=(0.1, 1.0, 10.0), registry=registry)
        summ = Summary("size", "size", registry=registry)
        gauges = {m: Gauge(f"g_{m}", m, multiprocess_mode=m, registry=registry)
                  for m in GAUGE_MODES}
        for kind, label, amount in ops:
            if kind == "inc":
                counter.labels(f"k{label}").inc(amount)
            elif kind == "observe":
                hist.observe(amount)
                summ.observe(amount)
            else:
                mode = GAUGE_MODES[label % len(GAUGE_MODES)]
                gauges[mode].set(amount)
    finally:
        values.ValueClass = original
        for f in list(value_class_files(value_class)):
            f.close()


def value_class_files(value_class):
    # MultiProcessValue keeps its open MmapedDicts in a closure dict; close them so the
    # files can be folded and removed (a real worker closes them by exiting).
    seen = set()
    for fn in vars(value_class).values():
        for cell in getattr(fn, "__closure__", None) or ():
            contents = cell.cell_contents
            if isinstance(contents, dict) and id(contents) not in seen:
                seen.add(id(contents))
                for f in contents.values():
                    if hasattr(f, "close") and hasattr(f, "read_value"):
                        yield f


def scrape(collector) -> list[tuple[str, tuple, float]]:
    out = []
    for metric in collector.collect():
        for s in metric.samples:
            out.append((s.name, tuple(sorted(s.labels.items())), s.value))
    return sorted(out)


amounts = st.floats(min_value=0.0, max_value=100.0, allow_nan=False).map(lambda x: round(x, 3))
ops = st.lists(st.tuples(st.sampled_from(["inc", "observe", "set"]), st.integers(0, 20),
                         amounts), max_size=12)
histories = st.lists(st.tuples(ops, st.booleans()), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(histories)
def test_compacted_scrape_equals_stock(history):
    def set_env(path: str) -> None:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path

    saved = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    stock_dir = tempfile.mkdtemp(dir=RAM_DIR)
    janus = MultiprocessMetrics(tempfile.mkdtemp(dir=RAM_DIR))
    try:
        janus.prepare()
        for i, (process_ops, dies) in enumerate(history):
            pid = 1000 + i
            write_process(stock_dir, pid, process_ops, set_env)
            write_process(janus.path, pid, process_ops, set_env)
            if dies:
                mark_process_dead(pid, stock_dir)
                janus.process_dead(pid)
        stock = scrape(MultiProcessCollector(None, path=stock_dir))
        ours = scrape(janus.collector())
        assert [(n, lab) for n, lab, _ in ours] == [(n, lab) for n, lab, _ in stock]
        for (name, labels, a), (_, _, b) in zip(ours, stock, strict=True):
            # Sums may be added in another order than the stock glob order: equal to the ulp.
            assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12), (name, labels, a, b)
        dead = sum(1 for _, dies in history if dies)
        live_files = len(list(Path(stock_dir).glob("*.db")))
        assert janus.file_count() <= live_files
        if dead:
            assert not [f for f in Path(janus.path).glob("counter_10*.db")
                        if f.stat().st_size > 8] or \
                any(not d for _, d in history)
    finally:
        janus.close()
        shutil.rmtree(stock_dir, ignore_errors=True)
        if saved is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = saved


def test_stale_files_of_a_configured_dir_are_removed(tmp_path):
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("not ours")
    store = MultiprocessMetrics(str(tmp_path))
    store.prepare()
    try:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    finally:
        store.close()
    assert (tmp_path / "keep.txt").exists()


def test_private_dir_is_removed_on_close():
    store = MultiprocessMetrics()
    path = Path(store.prepare())
    assert path.is_dir() and oct(path.stat().st_mode & 0o777) == "0o700"
    store.close()
    assert not path.exists()


def test_unwritable_dir_is_a_config_error(tmp_path):
    import os

    import pytest

    from janus_mp.errors import ConfigError

    target = tmp_path / "ro"
    target.mkdir(mode=0o500)
    if os.access(target, os.W_OK):  # root ignores modes: use a path under a file instead
        target = tmp_path / "file" / "sub"
        (tmp_path / "file").write_text("x")
    store = MultiprocessMetrics(str(target))
    with pytest.raises(ConfigError, match="metrics_dir: "):
        store.prepare()


def test_corrupt_dead_file_is_logged_not_raised(tmp_path, caplog):
    store = MultiprocessMetrics(str(tmp_path))
    store.prepare()
    try:
        (tmp_path / "counter_4242.db").write_bytes(b"\xff" * 3)
        store.process_dead(4242)  # must not raise
        assert "could not compact" in caplog.text
    finally:
        store.close()
