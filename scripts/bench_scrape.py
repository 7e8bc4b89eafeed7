"""Scrape cost after many worker restarts: janus-mp's compacting store vs the stock collector.

    python scripts/bench_scrape.py [--quick] [--json scripts/results/bench_scrape.json]

A simulated worker writes what a real one would — a labelled counter, a histogram, a
``livesum`` and a ``max`` gauge — through prometheus_client's own mmap format, then dies.
  stock     its files stay; mark_process_dead removes the live gauge (what gunicorn users do)
  janus-mp  the supervisor's process_dead() folds its files into the archive
4 live workers run throughout. Scrape = generate_latest() over the directory's collector,
median of repeated scrapes; both directories hold the same history, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from janus_mp.metrics_store import MultiprocessMetrics  # noqa: E402

BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "+Inf")


def write_worker(directory: str, pid: int, service: str) -> None:
    """The files one worker leaves: the same keys prometheus_client writes."""
    counter = MmapedDict(os.path.join(directory, f"counter_{pid}.db"))
    counter.write_value(mmap_key("jobs", "jobs_total", ["service"], [service], "jobs"), 3.0,
                        0.0)
    counter.close()
    hist = MmapedDict(os.path.join(directory, f"histogram_{pid}.db"))
    for bound in BUCKETS:
        hist.write_value(mmap_key("latency", "latency_bucket", ["le"], [bound], "latency"), 1.0,
                         0.0)
    hist.write_value(mmap_key("latency", "latency_sum", [], [], "latency"), 0.12, 0.0)
    hist.write_value(mmap_key("latency", "latency_count", [], [], "latency"), 1.0, 0.0)
    hist.close()
    for mode, value in (("livesum", 1.0), ("max", float(pid % 97))):
        gauge = MmapedDict(os.path.join(directory, f"gauge_{mode}_{pid}.db"))
        gauge.write_value(mmap_key(f"g_{mode}", f"g_{mode}", [], [], mode), value, 0.0)
        gauge.close()


def scrape_ms(collector: object, repeats: int) -> float:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        generate_latest(registry)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0 and 1,000 restarts only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    checkpoints = [0, 1000] if args.quick else [0, 1000, 10000]
    stock_dir = tempfile.mkdtemp(prefix="bench-stock-")
    janus = MultiprocessMetrics(tempfile.mkdtemp(prefix="bench-janus-"))
    janus.prepare()
    rows = []
    try:
        live = [10_000_000 + i for i in range(4)]
        for pid in live:
            write_worker(stock_dir, pid, "svc")
            write_worker(janus.path or "", pid, "svc")
        restarts = 0
        fold_ms: list[float] = []
        for target in checkpoints:
            while restarts < target:
                pid = 20_000_000 + restarts
                write_worker(stock_dir, pid, "svc")
                mark_process_dead(pid, stock_dir)
                write_worker(janus.path or "", pid, "svc")
                t0 = time.perf_counter()
                janus.process_dead(pid)
                fold_ms.append((time.perf_counter() - t0) * 1000)
                restarts += 1
            repeats = 5 if target >= 10000 else 21
            stock = scrape_ms(MultiProcessCollector(None, path=stock_dir), repeats)
            ours = scrape_ms(janus.collector(), repeats)
            rows.append({"restarts": target, "stock_ms": stock, "janus_ms": ours,
                         "stock_files": len(list(Path(stock_dir).glob("*.db"))),
                         "janus_files": janus.file_count()})
            print(f"after {target:>6} restarts: stock {stock:9.2f} ms ({rows[-1]['stock_files']}"
                  f" files)   janus-mp {ours:7.2f} ms ({rows[-1]['janus_files']} files)",
                  flush=True)
    finally:
        janus.close()
        shutil.rmtree(stock_dir, ignore_errors=True)
    base = rows[0]
    print(f"\n{'restarts':>9}{'stock ms':>11}{'janus ms':>10}{'stock/0':>9}{'janus/0':>9}"
          f"{'stock/janus':>13}")
    for row in rows:
        stock_ratio = row["stock_ms"] / base["stock_ms"]
        janus_ratio = row["janus_ms"] / base["janus_ms"]
        print(f"{row['restarts']:>9}{row['stock_ms']:>11.2f}{row['janus_ms']:>10.2f}"
              f"{stock_ratio:>9.1f}{janus_ratio:>9.2f}"
              f"{row['stock_ms'] / row['janus_ms']:>13.1f}")
    last = rows[-1]
    goal = last["janus_ms"] <= 2 * base["janus_ms"]
    print(f"\ngoal: janus-mp scrape after {last['restarts']} restarts <= 2x after none: "
          f"{last['janus_ms'] / base['janus_ms']:.2f}x -> {'PASS' if goal else 'MISS'}")
    if fold_ms:
        print(f"compaction per reaped worker (supervisor loop): median "
              f"{statistics.median(fold_ms):.3f} ms, max {max(fold_ms):.3f} ms")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "fold_ms": fold_ms}, indent=1))
    return 0 if all(r["janus_ms"] > 0 and r["stock_ms"] > 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
