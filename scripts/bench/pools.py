"""janus-mp's TaskPool beside ProcessPoolExecutor, multiprocess.Pool, loky and pebble, in one run.

    python scripts/bench/pools.py [--quick] [--only perf,kill9,hang,poison,memory] [--json PATH]

Run it with a Python that has janus_mp and the anchors installed (``pip install -e '.[bench]'``);
an anchor that is not installed gets a "not installed" row. The janus_mp measured is the first
one on the PYTHONPATH given, else this checkout's (its path is printed in the header).

    perf      throughput: map() of 100,000 tiny tasks, each library at its best chunksize (the
              fastest of a small set, searched on a smaller map in the first round); then
              single-submit round trips (submit, wait for the result), p50/p99. Rounds
              interleave the libraries, each round in fresh processes.
    kill9     a batch of 10,000 tasks; one worker, in the middle of a task, gets SIGKILL
    hang      a batch in which one task sleeps forever (each library's timeout facility)
    poison    a batch in which one task SIGKILLs every worker it runs on
    memory    a batch in which one task keeps 320 MiB in its worker (limit 256 MiB)

Every library × scenario runs in a process of its own (pool_run.py) in its own session, with a
deadline: a pool that hangs is recorded as hung, and its whole process tree is killed (the
harness is a child subreaper, so nothing escapes). Outcomes per task: completed / failed /
lost / hung (see pool_run.py); "workers after": how many workers could still run a task at
the same time once the batch was over.

Goals are printed PASS/MISS, never enforced. ``--quick`` (small sizes, under 30 s) exits 1
unless janus-mp and every installed anchor produced numbers; so does the full run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
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

import pool_report
from common import (
    BENCH_DIR,
    ROOT,
    Launch,
    Supervised,
    become_subreaper,
    descendants,
    exit_on_termination_signals,
    median,
    progress,
    reap_orphans,
    selection,
    summarize,
    supervised,
)
from pool_libs import ANCHORS, LIBRARIES, Facility

RESULTS = ROOT / "scripts" / "results"
SCENARIOS = ("kill9", "hang", "poison", "memory")
SELECTABLE = ("perf", *SCENARIOS)
#: Libraries in every table, janus-mp first; the retry row only where it means something.
PERF_KEYS = ("janus-mp", *ANCHORS)
ROBUST_KEYS = {"kill9": ("janus-mp", "janus-mp/retry", *ANCHORS)}
#: Beyond a scenario's own deadlines: interpreter, imports and pool start-up.
START_MARGIN_S = 60.0


@dataclass(frozen=True)
class Plan:
    quick: bool
    workers: int
    perf_rounds: int
    perf_n: int  # tasks in the timed map
    perf_repeats: int  # timed maps per round
    search_n: int  # tasks in each chunksize candidate's map (first round)
    chunksizes: tuple[int, ...]
    roundtrip_samples: int  # per round
    kill9_n: int
    kill9_spin_s: float  # each task's CPU: the map lasts long enough to be killed in
    batch_n: int  # hang, poison, memory
    batch_spin_s: float
    task_timeout_s: float  # hang: T
    stall_s: float  # no outcome for this long while tasks are pending: those are hung
    deadline_s: float  # a batch's hard end
    gather_s: float  # how long the capacity probe waits for the pool's full strength
    leak_mib: int
    limit_mib: int
    recycle_s: float  # how long the leaking worker is watched after the batch
    parallel: int  # scenario processes at a time (perf: always one)


FULL = Plan(quick=False, workers=os.cpu_count() or 2, perf_rounds=3, perf_n=100_000,
            perf_repeats=3, search_n=20_000, chunksizes=(1, 10, 100, 1000),
            roundtrip_samples=1000, kill9_n=10_000, kill9_spin_s=0.0002, batch_n=40,
            batch_spin_s=0.01, task_timeout_s=2.0, stall_s=8.0, deadline_s=120.0, gather_s=5.0,
            leak_mib=320, limit_mib=256, recycle_s=12.0, parallel=1)
QUICK = Plan(quick=True, workers=2, perf_rounds=1, perf_n=5_000, perf_repeats=3,
             search_n=2_000, chunksizes=(10, 100, 1000), roundtrip_samples=100, kill9_n=1_000,
             kill9_spin_s=0.0002, batch_n=12, batch_spin_s=0.005, task_timeout_s=1.0,
             stall_s=4.0, deadline_s=20.0, gather_s=3.0, leak_mib=160, limit_mib=128,
             recycle_s=4.0, parallel=8)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    plan = QUICK if args.quick else FULL
    become_subreaper()
    exit_on_termination_signals()
    env = _env()
    began = time.monotonic()
    results: dict[str, Any] = {"meta": _meta(plan, args.only), "libraries": _inventory(env)}
    available = {k for k, info in results["libraries"].items() if "status" not in info}
    with tempfile.TemporaryDirectory(prefix="janus-poolbench-") as tmp:
        runner = Runner(Path(tmp), env, available)
        try:
            if "perf" in args.only:
                results["perf"] = run_perf(plan, runner)
            results.update(run_scenarios(plan, args.only, runner))
        finally:
            reap_orphans()
    results["meta"]["seconds"] = round(time.monotonic() - began, 1)
    results["meta"]["left_running"] = len(descendants(os.getpid()))
    results["goals"] = [g.as_dict() for g in pool_report.goals(results, plan.task_timeout_s)]
    results["problems"] = problems = check(results)
    json_path = args.json or RESULTS / ("pools_quick.json" if plan.quick else "pools.json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    print(pool_report.render(results))
    print(f"json: {json_path}   ({results['meta']['seconds']:.0f} s)")
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[4:]))
    parser.add_argument("--quick", action="store_true",
                        help="under 30 s: 5,000-task maps, 1,000-task kill batch, 1 s timeouts")
    parser.add_argument("--only", type=selection(SELECTABLE), default=SELECTABLE,
                        help=f"comma-separated subset of {','.join(SELECTABLE)}")
    parser.add_argument("--json", type=Path, help="default: scripts/results/pools.json "
                                                  "(pools_quick.json with --quick)")
    return parser.parse_args(argv)


def _env() -> dict[str, str]:
    """The pools' processes import pool_tasks from here, janus_mp from the PYTHONPATH given
    (a checkout to measure), else from this checkout."""
    path = [str(BENCH_DIR), os.environ.get("PYTHONPATH", ""), str(ROOT)]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))


def _meta(plan: Plan, selected: Sequence[str]) -> dict[str, Any]:
    return {"started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "quick": plan.quick, "selected": list(selected), "plan": dataclasses.asdict(plan),
            "cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "executable": sys.executable}


def _inventory(env: dict[str, str]) -> dict[str, Any]:
    """Each library's label, and why it cannot run if it cannot (the import that failed).
    The imports are tried at once, each in a fresh interpreter with the pools' PYTHONPATH."""
    # cwd: not the checkout's root, whose janus_mp "-c" would put ahead of the PYTHONPATH.
    probes = {probe: subprocess.Popen([sys.executable, "-c", probe], env=env, text=True,
                                      cwd=BENCH_DIR, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
              for probe in {probe for _, probe in LIBRARIES.values()}}
    failures = {}
    for probe, proc in probes.items():
        _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failures[probe] = (err.strip().splitlines() or ["?"])[-1]
    out: dict[str, Any] = {}
    for key, (label, probe) in LIBRARIES.items():
        out[key] = {"label": label}
        if probe in failures:
            out[key]["status"] = f"not installed: {failures[probe]}"
    return out


# ── one library × one scenario, in a process of its own ─────────────────────────────────────

@dataclass
class Job:
    """One library × one scenario: a pool_run.py process and what became of it."""

    key: str
    spec: dict[str, Any]
    budget_s: float  # past this the process tree is killed and the row says hung
    result: dict[str, Any] | None = None


class Runner:
    def __init__(self, root: Path, env: dict[str, str], available: set[str]) -> None:
        self.root = root
        self.env = env
        self.available = available
        self.count = 0

    def run(self, jobs: Sequence[Job], parallel: int = 1) -> None:
        """Run ``jobs`` (``parallel`` at a time, all from this thread), filling each result:
        pool_run.py's, {"status": "not installed"} or {"error": ...}."""
        waiting = list(jobs)
        with contextlib.ExitStack() as everything:
            running: list[tuple[Job, contextlib.ExitStack, Supervised, float, Path]] = []
            while waiting or running:
                while waiting and len(running) < parallel:
                    job = waiting.pop(0)
                    if job.key not in self.available:
                        job.result = {"status": "not installed"}
                        continue
                    progress(f"{job.spec['scenario']} {job.key}")
                    stack = everything.enter_context(contextlib.ExitStack())
                    sup, work = self._start(job, stack)
                    running.append((job, stack, sup, time.monotonic() + job.budget_s, work))
                for entry in list(running):
                    job, stack, sup, deadline, work = entry
                    if sup.running() and time.monotonic() < deadline:
                        continue
                    hung = sup.running()
                    stack.close()  # the whole tree torn down, whatever it left
                    running.remove(entry)
                    job.result = _outcome(job, work, hung)
                if running:
                    time.sleep(0.02)  # pacing the harness's poll of its children

    def _start(self, job: Job, stack: contextlib.ExitStack) -> tuple[Supervised, Path]:
        self.count += 1
        work = self.root / f"{self.count:03d}-{job.key.replace('/', '-')}-{job.spec['scenario']}"
        work.mkdir()
        spec = {**job.spec, "key": job.key, "workdir": str(work)}
        (work / "spec.json").write_text(json.dumps(spec))
        # TMPDIR: the pools' own temporary directories (sockets, fork servers) land in the
        # job's directory, which the harness removes: a pool left by os._exit cleans nothing.
        launch = Launch([sys.executable, str(BENCH_DIR / "pool_run.py"), str(work / "spec.json"),
                         str(work / "result.json")], cwd=work,
                        env={**self.env, "TMPDIR": str(work)})
        return stack.enter_context(supervised(launch, work / "output.log", job.key)), work


def _outcome(job: Job, work: Path, hung: bool) -> dict[str, Any]:
    if hung:
        return {"error": f"hung: the scenario process did not finish in {job.budget_s:g} s "
                         "(killed with its whole tree)", "hung_at_deadline": True}
    result = work / "result.json"
    if not result.exists():
        tail = (work / "output.log").read_text(errors="replace").strip().splitlines()[-5:]
        return {"error": "no result; output ends: " + " | ".join(tail)}
    return json.loads(result.read_text())  # type: ignore[no-any-return]


def _rotated(keys: Sequence[str], by: int) -> list[str]:
    """Each round starts with a different library, so drifts in load hit all alike."""
    by %= max(1, len(keys))
    return [*keys[by:], *keys[:by]]


def run_perf(plan: Plan, runner: Runner) -> dict[str, Any]:
    rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in PERF_KEYS}
    rows: dict[str, Any] = {}
    spec = {"scenario": "perf", "workers": plan.workers, "n": plan.perf_n,
            "gather_s": plan.gather_s,
            "search_n": plan.search_n, "samples": plan.roundtrip_samples,
            "repeats": plan.perf_repeats}
    for r in range(plan.perf_rounds):
        jobs = [Job(key, {**spec, "round": r + 1, "chunksizes": list(plan.chunksizes) if r == 0
                          else [int(c) for c in rounds[key][0]["tasks_per_s"]]},
                    _perf_budget(plan))
                for key in _rotated(PERF_KEYS, r)
                if key not in rows]  # not installed, or failed in an earlier round
        runner.run(jobs)  # one at a time: these are timings
        for job in jobs:
            assert job.result is not None
            if "error" in job.result or "status" in job.result:
                rows[job.key] = job.result
            else:
                rounds[job.key].append(job.result)
    for key, got_rounds in rounds.items():
        if key not in rows:
            rows[key] = _fold_perf(got_rounds)
    rows = {key: rows[key] for key in PERF_KEYS}  # the tables' order, whatever ended first
    return {"workers": plan.workers, "n": plan.perf_n, "search_n": plan.search_n,
            "chunksizes": list(plan.chunksizes), "rounds": plan.perf_rounds,
            "repeats": plan.perf_repeats, "rows": rows}


def _perf_budget(plan: Plan) -> float:
    # Generous: 2,000 tasks/s at worst, every map, plus round trips at 50 ms each.
    tasks = (2 * plan.perf_n + plan.search_n * len(plan.chunksizes)) * plan.perf_repeats
    return START_MARGIN_S + tasks / 2000 + plan.roundtrip_samples * 0.05


def _fold_perf(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The finalist chunksize with the best median over every round's maps is the library's."""
    by_chunk: dict[str, list[float]] = {}
    for r in rounds:
        for chunksize, rates in r["tasks_per_s"].items():
            by_chunk.setdefault(chunksize, []).extend(rates)
    medians = {c: median(rates) for c, rates in by_chunk.items()}
    best = max(medians, key=lambda c: medians[c])
    trips = [x for r in rounds for x in r["roundtrip_ms"]]
    return {"version": rounds[0]["version"], "chunksize": int(best),
            "search_tasks_per_s": rounds[0].get("search_tasks_per_s", {}),
            "finalists_tasks_per_s": by_chunk, "tasks_per_s": medians[best],
            "roundtrip": summarize(trips)}


def run_scenarios(plan: Plan, selected: Sequence[str], runner: Runner) -> dict[str, Any]:
    """Every selected scenario for every library; ``plan.parallel`` processes at a time (their
    timings are only the wall column, and the hang goal's slack covers a busy machine)."""
    jobs = {s: _scenario_jobs(plan, s) for s in SCENARIOS if s in selected}
    # The hang scenario's jobs all last at least a task timeout: started first, they overlap
    # the shorter ones instead of trailing at the end.
    order = sorted(jobs, key=lambda s: s != "hang")
    runner.run([job for s in order for job in jobs[s]], plan.parallel)
    return {s: {"n": batch[0].spec["n"], "workers": plan.workers, **_scenario_meta(plan, s),
                "rows": {job.key: job.result for job in batch}} for s, batch in jobs.items()}


def _scenario_jobs(plan: Plan, scenario: str) -> list[Job]:
    n = plan.kill9_n if scenario == "kill9" else plan.batch_n
    base = {"scenario": scenario, "workers": plan.workers, "n": n,
            "spin_s": plan.kill9_spin_s if scenario == "kill9" else plan.batch_spin_s,
            "stall_s": plan.stall_s + (plan.task_timeout_s if scenario == "hang" else 0),
            "deadline_s": plan.deadline_s, "gather_s": plan.gather_s,
            "leak_mib": plan.leak_mib, "limit_mib": plan.limit_mib,
            "recycle_s": plan.recycle_s}
    budget = START_MARGIN_S + plan.deadline_s + 2 * plan.gather_s + plan.recycle_s + 20
    return [Job(key, {**base, "facility": dataclasses.asdict(_facility(plan, scenario, key))},
                budget) for key in ROBUST_KEYS.get(scenario, PERF_KEYS)]


def _facility(plan: Plan, scenario: str, key: str) -> Facility:
    """What each scenario asks for; pool_libs.open_pool gives it only where a library can."""
    if scenario == "kill9":
        return Facility(retries=1 if key == "janus-mp/retry" else 0)
    if scenario == "hang":
        return Facility(task_timeout=plan.task_timeout_s)
    if scenario == "poison":
        return Facility(retries=5, max_worker_deaths=3)
    return Facility(max_memory_mib=plan.limit_mib)


def _scenario_meta(plan: Plan, scenario: str) -> dict[str, Any]:
    if scenario == "hang":
        return {"task_timeout_s": plan.task_timeout_s}
    if scenario == "memory":
        return {"leak_mib": plan.leak_mib, "limit_mib": plan.limit_mib,
                "recycle_s": plan.recycle_s}
    return {}


# ── the smoke check ──────────────────────────────────────────────────────────────────────────

def check(results: dict[str, Any]) -> list[str]:
    """janus-mp must be measured; every installed library must produce a row without error
    (a hung pool is a finding, not an error: its row says so); nothing may be left running."""
    problems = []
    if "status" in results["libraries"]["janus-mp"]:
        problems.append(f"janus-mp: {results['libraries']['janus-mp']['status']}")
    for name in SELECTABLE:
        for key, row in results.get(name, {}).get("rows", {}).items():
            if "error" in row and not row.get("hung_at_deadline"):
                problems.append(f"{name}/{key}: {row['error']}")
    if results["meta"]["left_running"]:
        problems.append(f"{results['meta']['left_running']} processes left running")
    return problems


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as exc:
        cause = exc.args[0] if exc.args else "SIGINT"
        print(f"interrupted by {cause}: every pool started was torn down", file=sys.stderr)
        sys.exit(130)
