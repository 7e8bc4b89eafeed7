"""janus-mp beside gunicorn, supervisord, circus and the raw fork floor, in one run.

    python scripts/bench/run.py [--quick] [--only restart,shutdown,...] [--json PATH] [--chart PATH]

Run it with a Python that has janus_mp and the anchors installed (``pip install -e '.[bench]'``);
an anchor that is not installed gets a "not installed" row. The machine is shared and noisy:
every system runs in this one invocation, interleaved where a measurement repeats, and the
ratios to janus-mp are what the figures mean.

    restart   crash → replacement's first line, p50/p90/p99 (janus-mp three times: backoff 0,
              default backoff, standby=1 with backoff 0)
    shutdown  SIGTERM → supervisor exit with idle cooperative workers
    idle      supervisor CPU and wake-ups over a window with idle workers
    scale     time until N workers are ready; supervisor RSS per worker
    storm     restarts per second and supervisor CPU while every worker exits at once
    crashes   restart latency for each way a worker ends (clean return, sys.exit, os._exit,
              SIGKILL, SIGSEGV): janus-mp (backoff 0, and standby=1) beside the floor's same crash
    memory    USS per idle worker; total PSS of the whole tree with a ~100 MB preloaded app
              (numpy arrays and Python objects) beside gunicorn --preload
    scrape    scripts/bench_scrape.py (another benchmark, run as it is; --quick passed on)
    http      scripts/bench_http.py, when it exists (HTTP throughput; --quick passed on)

``--quick`` runs in under a minute with small counts and fails (exit 1) unless every
measurement produced numbers; the full run takes under ten minutes. Both exit 1 when a
measurement of an installed system failed; goals are reported, never enforced.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import measure
import report
from circus_anchor import Circus
from common import (
    ROOT,
    become_subreaper,
    exit_on_termination_signals,
    progress,
    reap_orphans,
    selection,
)
from floor import Floor
from gunicorn_anchor import Gunicorn
from janus import Janus
from measure import System, Workspace, guarded
from supervisord_anchor import Supervisord
from workload import CRASHES, REAL_CRASHES, RUN_SECONDS

RESULTS = ROOT / "scripts" / "results"
EXTERNAL = {"scrape": ROOT / "scripts" / "bench_scrape.py",
            "http": ROOT / "scripts" / "bench_http.py"}
SELECTABLE = (*report.MEASUREMENTS, *EXTERNAL)
#: janus-mp and the floor must always produce numbers; anchors may be missing.
REQUIRED = ("janus-mp", "janus-mp/defaults", "janus-mp/standby", "floor")


@dataclass(frozen=True)
class Plan:
    quick: bool
    restart_rounds: int  # systems interleaved round by round
    restart_per_round: int  # samples wanted from each system per round
    restart_budget_s: float  # ...or what this many seconds give (slow systems: circus)
    defaults_budget_s: float  # janus-mp at default backoff: one continuous run this long
    shutdown_sizes: tuple[int, ...]
    shutdown_repeats: int
    idle_workers: int
    idle_window_s: float
    scale_workers: int
    scale_big: int  # a second scale row, run where the machine allows it (0: never)
    storm_workers: int
    storm_window_s: float
    external_timeout_s: float
    crash_kinds: tuple[str, ...] = CRASHES
    crash_rounds: int = 2
    crash_per_round: int = 30
    crash_budget_s: float = 10.0
    memory_workers: int = 8  # idle workers whose USS is measured
    preload_mb: int = 100  # the preloaded app's size
    preload_workers: int = 2


FULL = Plan(quick=False, restart_rounds=3, restart_per_round=50, restart_budget_s=15.0,
            defaults_budget_s=30.0, shutdown_sizes=(50, 200), shutdown_repeats=2,
            idle_workers=200, idle_window_s=30.0, scale_workers=1000, scale_big=10000,
            storm_workers=4,
            storm_window_s=8.0, external_timeout_s=300.0)
QUICK = Plan(quick=True, restart_rounds=1, restart_per_round=5, restart_budget_s=2.0,
             defaults_budget_s=1.5, shutdown_sizes=(20,), shutdown_repeats=1,
             idle_workers=20, idle_window_s=3.0, scale_workers=100, scale_big=0, storm_workers=4,
             storm_window_s=1.0, external_timeout_s=60.0, crash_kinds=("sys.exit", "sigkill"),
             crash_rounds=1, crash_per_round=2,
             crash_budget_s=1.0, memory_workers=2, preload_mb=20, preload_workers=2)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    plan = QUICK if args.quick else FULL
    selected = args.only
    become_subreaper()
    exit_on_termination_signals()
    systems: dict[str, System] = {s.key: s for s in (Janus("zero"), Janus("defaults"),
                                                     Janus("standby"), Floor(),
                                                     Gunicorn(), Supervisord(), Circus())}
    results: dict[str, Any] = {"meta": _meta(plan, selected), "systems": {}}
    available = _inventory(systems, results["systems"])
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="janus-bench-") as tmp:
        ws = Workspace(Path(tmp))
        try:
            for name in report.MEASUREMENTS:
                if name in selected:
                    progress(f"{name} …")
                    results[name] = RUNNERS[name](plan, systems, available, ws)
            external = {name: _external(name, path, plan)
                        for name, path in EXTERNAL.items() if name in selected}
            if external:
                results["external"] = external
        finally:
            reap_orphans()
        results["configs"] = _configs(Path(tmp))
    results["meta"]["seconds"] = round(time.monotonic() - began, 1)
    results["goals"] = [g.as_dict() for g in report.goals(results)]
    problems = check(results, selected)
    results["problems"] = problems
    results = report.jsonable(results)
    json_path = args.json or RESULTS / ("bench_quick.json" if plan.quick else "bench.json")
    chart_path = args.chart or RESULTS / ("bench_restart_quick.png" if plan.quick
                                          else "bench_restart.png")
    report.write_json(results, json_path)
    print(report.render(results))
    if "restart" in selected:
        print(report.write_chart(results, chart_path))
    print(f"json: {json_path}   ({results['meta']['seconds']:.0f} s)")
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[4:]))
    parser.add_argument("--quick", action="store_true",
                        help="under a minute: few samples, 20 workers instead of 200, 100 "
                             "instead of 1,000, a 3 s idle window; exit 1 unless every "
                             "measurement produced numbers")
    parser.add_argument("--only", type=selection(SELECTABLE), default=SELECTABLE,
                        help=f"comma-separated subset of {','.join(SELECTABLE)}")
    parser.add_argument("--json", type=Path, help="default: scripts/results/bench.json "
                                                  "(bench_quick.json with --quick)")
    parser.add_argument("--chart", type=Path, help="default: scripts/results/bench_restart.png "
                                                   "(bench_restart_quick.png with --quick)")
    return parser.parse_args(argv)


def _meta(plan: Plan, selected: Sequence[str]) -> dict[str, Any]:
    return {"started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "quick": plan.quick, "selected": list(selected), "plan": dataclasses.asdict(plan),
            "cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "executable": sys.executable,
            "kernel": platform.release(), "run_seconds": RUN_SECONDS}


def _inventory(systems: dict[str, System], out: dict[str, Any]) -> set[str]:
    available = set()
    for key, system in systems.items():
        reason = system.missing()
        info: dict[str, Any] = {"label": system.label}
        if reason:
            info["status"] = reason
        else:
            info["version"] = system.version()
            available.add(key)
        out[key] = info
    return available


def _rows(keys: Sequence[str], available: set[str],
          systems: dict[str, System]) -> tuple[dict[str, Any], list[System]]:
    """Rows for systems that cannot run, and the systems that can, in ``keys`` order."""
    rows: dict[str, Any] = {}
    runnable = []
    for key in keys:
        if key in available:
            rows[key] = {}
            runnable.append(systems[key])
        else:
            rows[key] = {"status": "not installed"}
    return rows, runnable


def _rotated(items: list[System], by: int) -> list[System]:
    """Each round starts with a different system, so slow drifts in load hit all alike."""
    by %= max(1, len(items))
    return items[by:] + items[:by]


# ── the measurements, system by system ───────────────────────────────────────────────────────

def _restart_rounds(systems: list[System], rows: dict[str, Any], rounds_n: int,
                    per_round: int, budget_s: float, ws: Workspace, label: str,
                    *workload: str) -> None:
    """Restart rounds of ``systems``, interleaved and rotated; each row becomes the summary of
    its rounds, or the first error it met."""
    rounds: dict[str, list[list[float]]] = {s.key: [] for s in systems}
    for r in range(rounds_n):
        for system in _rotated(systems, r):
            if "error" in rows[system.key]:
                continue
            progress(f"  {label}: {system.key} round {r + 1}/{rounds_n}")
            got = guarded(measure.restart_round, system, per_round, budget_s, ws, *workload)
            if "error" in got:
                rows[system.key] = got
            else:
                rounds[system.key].append(got["samples_ms"])
    for key, got_rounds in rounds.items():
        if "error" not in rows[key]:
            rows[key] = measure.restart(got_rounds)


def run_restart(plan: Plan, systems: dict[str, System], available: set[str],
                ws: Workspace) -> dict[str, Any]:
    keys = ("janus-mp", "janus-mp/standby", "janus-mp/defaults", "floor", "gunicorn",
            "supervisord", "circus")
    rows, runnable = _rows(keys, available, systems)
    _restart_rounds([s for s in runnable if s.key != "janus-mp/defaults"], rows,
                    plan.restart_rounds, plan.restart_per_round, plan.restart_budget_s, ws,
                    "restart")
    if "janus-mp/defaults" in available:
        # One continuous run: the default backoff grows with consecutive failures, so cutting
        # it into rounds would restart the growth and change the distribution.
        progress(f"  restart janus-mp/defaults (one run, {plan.defaults_budget_s:g} s)")
        got = guarded(measure.restart_round, systems["janus-mp/defaults"], 10**6,
                      plan.defaults_budget_s, ws)
        rows["janus-mp/defaults"] = got if "error" in got else measure.restart(
            [got["samples_ms"]])
    return {"reference": "janus-mp", "run_seconds": RUN_SECONDS, "rounds": plan.restart_rounds,
            "samples_per_round": plan.restart_per_round, "budget_s": plan.restart_budget_s,
            "defaults_budget_s": plan.defaults_budget_s, "rows": rows}


def run_shutdown(plan: Plan, systems: dict[str, System], available: set[str],
                 ws: Workspace) -> dict[str, Any]:
    rows, runnable = _rows(("janus-mp", "floor", "gunicorn", "supervisord"), available, systems)
    trials: dict[str, dict[int, list[dict[str, Any]]]] = {s.key: {} for s in runnable}
    for r in range(plan.shutdown_repeats):
        for size in plan.shutdown_sizes:
            for system in _rotated(runnable, r):
                if "error" in rows[system.key]:
                    continue
                progress(f"  shutdown {system.key} {size} workers "
                          f"({r + 1}/{plan.shutdown_repeats})")
                got = guarded(measure.shutdown_trial, system, size, ws)
                if "error" in got:
                    rows[system.key] = got
                else:
                    trials[system.key].setdefault(size, []).append(got)
    for key, by_size in trials.items():
        if "error" not in rows[key]:
            rows[key] = measure.shutdown(by_size)
    return {"reference": "janus-mp", "sizes": list(plan.shutdown_sizes),
            "repeats": plan.shutdown_repeats, "rows": rows}


def run_idle(plan: Plan, systems: dict[str, System], available: set[str],
             ws: Workspace) -> dict[str, Any]:
    rows, runnable = _rows(("janus-mp", "gunicorn", "supervisord"), available, systems)
    progress(f"  idle: {', '.join(s.key for s in runnable)} together, "
              f"{plan.idle_window_s:g} s window")
    rows.update(measure.idle(runnable, plan.idle_workers, plan.idle_window_s, ws))
    return {"reference": "janus-mp", "workers": plan.idle_workers,
            "window_s": plan.idle_window_s, "rows": rows}


def run_scale(plan: Plan, systems: dict[str, System], available: set[str],
              ws: Workspace) -> dict[str, Any]:
    rows, runnable = _rows(("janus-mp", "floor"), available, systems)
    for system in runnable:
        progress(f"  scale {system.key} {plan.scale_workers} workers")
        rows[system.key] = guarded(measure.scale, system, plan.scale_workers, ws)
    out: dict[str, Any] = {"reference": "janus-mp", "workers": plan.scale_workers, "rows": rows}
    if plan.scale_big:
        out["big"] = _scale_big(plan.scale_big, runnable, rows, ws)
    return out


def _scale_big(workers: int, runnable: list[System], small: dict[str, Any],
               ws: Workspace) -> dict[str, Any]:
    """The same measurement at ``workers``, for each system the machine can hold right now
    (judged from what each took per worker in the smaller run): a row says why not otherwise."""
    rows: dict[str, Any] = {}
    for system in runnable:
        per_worker = small.get(system.key, {}).get("machine_bytes_per_worker")
        refusal = "skipped: the smaller run failed" if per_worker is None else \
            measure.big_scale_refusal(workers, per_worker)
        if refusal is not None:
            rows[system.key] = {"status": refusal}
            continue
        progress(f"  scale {system.key} {workers} workers")
        rows[system.key] = guarded(measure.scale, system, workers, ws)
    return {"reference": "janus-mp", "workers": workers, "rows": rows}


def run_storm(plan: Plan, systems: dict[str, System], available: set[str],
              ws: Workspace) -> dict[str, Any]:
    rows, runnable = _rows(("janus-mp/defaults", "janus-mp/standby", "gunicorn", "floor"),
                           available, systems)
    for system in runnable:
        progress(f"  storm {system.key}")
        rows[system.key] = guarded(measure.storm, system, plan.storm_workers,
                                   plan.storm_window_s, ws)
    return {"reference": "janus-mp/defaults", "workers": plan.storm_workers,
            "window_s": plan.storm_window_s, "rows": rows}


def run_crashes(plan: Plan, systems: dict[str, System], available: set[str],
                ws: Workspace) -> dict[str, Any]:
    """The restart measurement for each crash kind: janus-mp and the floor, interleaved."""
    keys = ("janus-mp", "janus-mp/standby", "floor")
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in plan.crash_kinds:
        rows, runnable = _rows(keys, available, systems)
        _restart_rounds(runnable, rows, plan.crash_rounds, plan.crash_per_round,
                        plan.crash_budget_s, ws, kind, f"crash:{kind}")
        by_kind[kind] = {"real_crash": kind in REAL_CRASHES, "rows": rows}
    return {"reference": "floor", "run_seconds": RUN_SECONDS, "rounds": plan.crash_rounds,
            "samples_per_round": plan.crash_per_round, "budget_s": plan.crash_budget_s,
            "kinds": by_kind, "rows": {f"{kind}/{key}": row for kind, m in by_kind.items()
                                      for key, row in m["rows"].items()}}


def run_memory(plan: Plan, systems: dict[str, System], available: set[str],
               ws: Workspace) -> dict[str, Any]:
    os.environ["BENCH_PRELOAD_MB"] = str(plan.preload_mb)  # read by preload_app.py
    idle_rows, runnable = _rows(("janus-mp", "floor"), available, systems)
    for system in runnable:
        progress(f"  memory {system.key} {plan.memory_workers} idle workers")
        idle_rows[system.key] = guarded(measure.memory, system, "idle", plan.memory_workers, ws)
    preload_rows, runnable = _rows(("janus-mp", "gunicorn", "floor"), available, systems)
    for system in runnable:
        progress(f"  memory {system.key} {plan.preload_mb} MB preloaded app, "
                  f"{plan.preload_workers} workers")
        preload_rows[system.key] = guarded(measure.memory, system, "preload",
                                           plan.preload_workers, ws)
    kind = subprocess.run([sys.executable, "-c", "import preload_app; print(preload_app.KIND)"],
                          cwd=Path(measure.__file__).parent, capture_output=True, text=True,
                          check=False).stdout.strip()
    return {"reference": "floor", "workers": plan.memory_workers, "idle": idle_rows,
            "preload_workers": plan.preload_workers, "preload_kind": kind,
            "preload": preload_rows,
            "rows": {**{f"idle/{k}": v for k, v in idle_rows.items()},
                     **{f"preload/{k}": v for k, v in preload_rows.items()}}}


RUNNERS = {"restart": run_restart, "shutdown": run_shutdown, "idle": run_idle,
           "scale": run_scale, "storm": run_storm, "crashes": run_crashes, "memory": run_memory}


# ── other benchmarks, run from the same entry point ──────────────────────────────────────────

def _external(name: str, script: Path, plan: Plan) -> dict[str, Any]:
    """Run another benchmark script as it is: ``--quick`` passed on, its output kept."""
    hook: dict[str, Any] = {"script": str(script.relative_to(ROOT))}
    if not script.exists():
        return {**hook, "status": "skipped: not written yet"}
    progress(f"{name}: {hook['script']} …")
    argv = [sys.executable, str(script), *(["--quick"] if plan.quick else [])]
    began = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                              timeout=plan.external_timeout_s, start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout or b""  # bytes even with text=True (CPython keeps it raw)
        if isinstance(partial, bytes):
            partial = partial.decode("utf-8", "replace")
        return {**hook, "status": f"failed: timed out after {exc.timeout:g} s",
                "output": partial}
    output = done.stdout + (f"\n(stderr)\n{done.stderr}" if done.returncode else "")
    return {**hook, "status": "ok" if done.returncode == 0 else f"failed: exit {done.returncode}",
            "seconds": time.monotonic() - began, "returncode": done.returncode, "output": output}


def _configs(tmp: Path) -> dict[str, str]:
    """One copy of each anchor's config file as this run wrote it (the last one of each)."""
    found: dict[str, str] = {}
    for path in sorted(tmp.glob("*/*")):
        if path.suffix in (".conf", ".ini", ".py") and path.is_file():
            found[path.name] = path.read_text()
    return found


# ── the smoke check ──────────────────────────────────────────────────────────────────────────

def check(results: dict[str, Any], selected: Sequence[str]) -> list[str]:
    """Every selected measurement has numbers for janus-mp and the floor, and no installed
    system failed; an external benchmark that exists ran cleanly."""
    problems = []
    for name in report.MEASUREMENTS:
        if name not in selected:
            continue
        for key, row in results[name]["rows"].items():
            if "error" in row:
                problems.append(f"{name}/{key}: {row['error']}")
            elif row.get("status") == "not installed":
                if key in REQUIRED:
                    problems.append(f"{name}/{key}: {results['systems'][key]['status']}")
            elif not _has_numbers(row):
                problems.append(f"{name}/{key}: no numbers")
    for name, hook in results.get("external", {}).items():
        if hook["status"].startswith("failed"):
            problems.append(f"{name}: {hook['status']}")
    return problems


def _has_numbers(row: Any) -> bool:
    numbers = [v for v in _leaves(row) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return bool(numbers) and all(v == v for v in numbers)  # no NaN


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as exc:
        cause = exc.args[0] if exc.args else "SIGINT"
        print(f"interrupted by {cause}: every supervisor started was torn down", file=sys.stderr)
        sys.exit(130)
