"""Scrape cost after many worker restarts: janus-mp's compacting store vs the stock collector.

    python scripts/bench_scrape.py [--quick] [--dir DIR] [--json PATH]

A simulated worker writes what a real one would, through prometheus_client's own file format
and keys: a labelled counter, a histogram, a ``livesum`` and a ``max`` gauge. A restart is that
worker dying:
  stock     its files stay; mark_process_dead removes its live gauge (what gunicorn users do)
  janus-mp  the supervisor's process_dead() folds its files into the archive, deletes them
4 live workers run throughout. Both directories hold the same history, measured in one run.
A scrape is timed two ways: collect() with every sample materialised, and generate_latest()
(what /metrics serves); each is a median of repeats (janus-mp: the best of 5 medians, as its
sub-millisecond scrapes are the ones other load on the machine distorts). Goal: janus-mp after
10,000 restarts <= 2x after none.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from janus_mp.metrics.store import MultiprocessMetrics  # noqa: E402

BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "+Inf")
LIVE_WORKERS = 4


def write_worker(directory: str, pid: int, service: str) -> None:
    """The files one worker leaves, with the keys prometheus_client writes."""
    counter = MmapedDict(f"{directory}/counter_{pid}.db")
    counter.write_value(mmap_key("jobs", "jobs_total", ["service"], [service], "Jobs."), 3.0, 0.0)
    counter.close()
    hist = MmapedDict(f"{directory}/histogram_{pid}.db")
    for bound in BUCKETS:
        hist.write_value(mmap_key("latency", "latency_bucket", ["le"], [bound], "Latency."),
                         1.0 if bound == "0.1" else 0.0, 0.0)
    hist.write_value(mmap_key("latency", "latency_sum", [], [], "Latency."), 0.0625, 0.0)
    hist.close()
    for mode, value in (("livesum", 1.0), ("max", float(pid % 97))):
        gauge = MmapedDict(f"{directory}/gauge_{mode}_{pid}.db")
        gauge.write_value(mmap_key(f"g_{mode}", f"g_{mode}", [], [], mode), value, 0.0)
        gauge.close()


def median_ms(action: Callable[[], object], repeats: int, rounds: int) -> float:
    """The lowest of ``rounds`` medians: other load on the machine only ever adds time."""
    medians = []
    for _ in range(rounds):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            action()
            times.append((time.perf_counter() - t0) * 1000)
        medians.append(statistics.median(times))
    return min(medians)


def scrape_costs(collector: Any, repeats: int, rounds: int) -> tuple[float, float]:
    """(collect ms, generate_latest ms), each the best of ``rounds`` medians of ``repeats``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    def materialise() -> None:
        for family in collector.collect():
            list(family.samples)

    warm_until = time.perf_counter() + 0.3  # warm caches and the CPU before timing
    materialise()
    while time.perf_counter() < warm_until:
        materialise()
    return (median_ms(materialise, repeats, rounds),
            median_ms(lambda: generate_latest(registry), repeats, rounds))


def same_output(a: Any, b: Any) -> bool:
    """Both collectors give the same families and samples (sums equal to rounding)."""
    def flat(collector: Any) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
        return sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                      for family in collector.collect() for s in family.samples)

    x, y = flat(a), flat(b)
    return [s[:2] for s in x] == [s[:2] for s in y] and all(
        math.isclose(p[2], q[2], rel_tol=1e-12) for p, q in zip(x, y, strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0 and 1,000 restarts only")
    parser.add_argument("--dir", help="where to make the two directories (default: TMPDIR)")
    parser.add_argument("--json", type=Path, help="default: scripts/results/bench_scrape"
                                                  "[_quick].json")
    args = parser.parse_args()
    checkpoints = [0, 1000] if args.quick else [0, 1000, 10000]
    out = args.json or ROOT / "scripts" / "results" / (
        "bench_scrape_quick.json" if args.quick else "bench_scrape.json")
    stock_dir = tempfile.mkdtemp(prefix="bench-stock-", dir=args.dir)
    janus = MultiprocessMetrics(tempfile.mkdtemp(prefix="bench-janus-", dir=args.dir))
    janus_dir = janus.prepare()
    rows: list[dict[str, Any]] = []
    fold_ms: list[float] = []
    try:
        for i in range(LIVE_WORKERS):
            write_worker(stock_dir, 10_000_000 + i, "svc")
            write_worker(janus_dir, 10_000_000 + i, "svc")
        restarts = 0
        for target in checkpoints:
            while restarts < target:
                pid = 20_000_000 + restarts
                write_worker(stock_dir, pid, "svc")
                mark_process_dead(pid, stock_dir)
                write_worker(janus_dir, pid, "svc")
                t0 = time.perf_counter()
                janus.process_dead(pid)
                fold_ms.append((time.perf_counter() - t0) * 1000)
                restarts += 1
            stock = MultiProcessCollector(None, path=stock_dir)
            ours = janus.collector()
            stock_repeats = 5 if target >= 10000 else 21  # a stock scrape is slow by then
            stock_collect, stock_generate = scrape_costs(stock, stock_repeats, 1)
            janus_collect, janus_generate = scrape_costs(ours, 41, 5)
            rows.append({
                "restarts": target,
                "stock_collect_ms": stock_collect, "stock_ms": stock_generate,
                "janus_collect_ms": janus_collect, "janus_ms": janus_generate,
                "stock_files": len(list(Path(stock_dir).glob("*.db"))),
                "janus_files": janus.file_count(),
                "same_output": same_output(ours, stock),
            })
            print(f"after {target:>6} restarts: measured", file=sys.stderr, flush=True)
    finally:
        janus.close()
        shutil.rmtree(janus_dir, ignore_errors=True)
        shutil.rmtree(stock_dir, ignore_errors=True)

    base = rows[0]
    print(f"{LIVE_WORKERS} live workers; scrape = median ms; collect = collect() with samples "
          "materialised, text = generate_latest()")
    print(f"{'restarts':>8} | {'stock collect':>13} {'text':>8} {'files':>6} | "
          f"{'janus collect':>13} {'text':>6} {'files':>5} | {'janus/0':>7} {'stock/0':>8} "
          f"{'stock/janus':>11} | same")
    for row in rows:
        print(f"{row['restarts']:>8} | {row['stock_collect_ms']:>13.2f} {row['stock_ms']:>8.2f} "
              f"{row['stock_files']:>6} | {row['janus_collect_ms']:>13.3f} "
              f"{row['janus_ms']:>6.3f} {row['janus_files']:>5} | "
              f"{row['janus_ms'] / base['janus_ms']:>7.2f} "
              f"{row['stock_ms'] / base['stock_ms']:>8.1f} "
              f"{row['stock_ms'] / row['janus_ms']:>11.1f} | "
              f"{'yes' if row['same_output'] else 'NO'}")
    last = rows[-1]
    ratio = last["janus_ms"] / base["janus_ms"]
    print(f"goal: janus-mp scrape after {last['restarts']} restarts <= 2x after none: "
          f"{ratio:.2f}x (collect {last['janus_collect_ms'] / base['janus_collect_ms']:.2f}x)"
          f" -> {'PASS' if ratio <= 2 else 'MISS'}")
    if fold_ms:
        ordered = sorted(fold_ms)
        print(f"process_dead per reaped worker (supervisor loop): median "
              f"{statistics.median(ordered) * 1000:.0f} us, p99 "
              f"{ordered[int(len(ordered) * 0.99)] * 1000:.0f} us, max "
              f"{ordered[-1] * 1000:.0f} us")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "live_workers": LIVE_WORKERS, "rows": rows,
        "process_dead_us": {"median": statistics.median(fold_ms) * 1000 if fold_ms else None,
                            "p99": sorted(fold_ms)[int(len(fold_ms) * 0.99)] * 1000
                            if fold_ms else None},
    }, indent=1))
    return 0 if all(row["same_output"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
