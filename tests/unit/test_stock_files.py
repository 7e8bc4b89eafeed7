"""The files janus-mp leaves for the stock MultiProcessCollector: the archive written in the
stock format (read back by prometheus_client itself), and folded files retired then removed
in batches, on a fake clock."""

from __future__ import annotations

import os

from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

from janus_mp.metrics import stock_files
from janus_mp.metrics.fold import FileId, Fold, KeyParser
from janus_mp.metrics.stock_files import GRACE, SWEEP_AFTER, SWEEP_BATCH, RetiredFiles


def test_archive_files_read_back_by_the_stock_reader(tmp_path):
    # A worker's file written by prometheus_client itself, folded, then written back.
    parse = KeyParser()
    fold = Fold()
    histogram = MmapedDict(str(tmp_path / "histogram_11.db"))
    histogram.write_value('["t", "t_bucket", {"le": "1.0"}, "T."]', 2.0, 0.0)
    histogram.write_value('["t", "t_bucket", {"le": "+Inf"}, "T."]', 1.0, 0.0)
    histogram.write_value('["t", "t_sum", {}, "T."]', 3.5, 0.0)
    histogram.close()
    stock = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for m in MultiProcessCollector.merge([str(tmp_path / "histogram_11.db")])
             for s in m.samples}
    fold.add(FileId("histogram", "", "11"), [
        (parse(k), v, t) for k, v, t, _ in
        MmapedDict.read_all_values_from_file(str(tmp_path / "histogram_11.db"))])
    out = tmp_path / "out"
    out.mkdir()
    for (kind, _), samples in fold.stored_samples().items():
        stock_files.write_file(str(out), f"{kind}_archive-1.db", samples)
    assert not [p for p in out.iterdir() if not p.name.endswith(".db")]  # no temporary left
    again = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for m in MultiProcessCollector(None, path=str(out)).collect() for s in m.samples}
    assert again == stock
    assert again[("t_count", ())] == 3.0


def test_retired_files_are_emptied_at_once_and_removed_in_batches(tmp_path):
    retired = RetiredFiles()
    files = [tmp_path / f"counter_{pid}.db" for pid in range(SWEEP_BATCH + 1)]
    for f in files:
        f.write_bytes(b"x" * 64)
        retired.retire(str(f), now=0.0)
    assert all(f.read_bytes() == bytes(8) for f in files)  # emptied, still listed
    assert MultiProcessCollector.merge([str(f) for f in files]) is not None
    assert str(files[0]) in retired
    retired.sweep(GRACE - 0.1)
    assert all(f.exists() for f in files)  # within the grace
    retired.sweep(GRACE)
    assert not any(f.exists() for f in files)  # a batch: all of them at once
    assert str(files[0]) not in retired


def test_a_few_retired_files_wait_for_a_batch_or_for_age(tmp_path):
    retired = RetiredFiles()
    few = tmp_path / "counter_7.db"
    few.write_bytes(b"x" * 64)
    retired.retire(str(few), now=0.0)
    retired.sweep(GRACE)
    assert few.exists()
    retired.sweep(SWEEP_AFTER)
    assert not few.exists()


def test_a_retired_file_taken_over_by_a_new_worker_is_kept(tmp_path):
    retired = RetiredFiles()
    reused = tmp_path / "counter_9.db"
    reused.write_bytes(b"x" * 64)
    retired.retire(str(reused), now=0.0)
    values = MmapedDict(str(reused))  # a new worker with the same pid opens it, writes
    values.write_value('["c", "c_total", {}, "C."]', 1.0, 0.0)
    values.close()
    retired.sweep(SWEEP_AFTER)
    assert reused.exists() and os.path.getsize(reused) > 8


def test_workers_folded_together_leave_what_one_by_one_leaves(tmp_path):
    from janus_mp.metrics.store import MultiprocessMetrics

    pages = []
    for together in (True, False):
        store = MultiprocessMetrics(str(tmp_path / str(together)))
        path = store.prepare()
        for pid, jobs in ((11, 3.0), (12, 4.0), (13, 5.0)):
            values = MmapedDict(f"{path}/counter_{pid}.db")
            values.write_value('["jobs", "jobs_total", {}, "Jobs."]', jobs, 0.0)
            values.close()
        if together:
            store.processes_dead([11, 12])
        else:
            store.process_dead(11)
            store.process_dead(12)
        ours = [(s.name, s.value) for m in store.collector().collect() for s in m.samples]
        stock = [(s.name, s.value) for m in MultiProcessCollector(None, path=path).collect()
                 for s in m.samples]
        pages.append((ours, stock, sorted(os.listdir(path))))
        store.close()
    assert pages[0] == pages[1]
    assert pages[0][0] == pages[0][1] == [("jobs_total", 12.0)]
