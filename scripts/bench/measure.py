"""The five measurements, each the same procedure for every system.

    restart   one worker that serves RUN_SECONDS and exits 1; latency = each crash stamp to
              the next start stamp (both written by the workers themselves)
    shutdown  N idle cooperative workers, all ready and the whole tree asleep; SIGTERM to the
              supervisor → the moment its pidfd says it exited
    idle      N idle workers under each system at once, one fixed window: the supervisor's own
              CPU seconds and context switches (all its threads)
    scale     N idle workers: the supervisor's ``begin`` stamp → the last worker's ``ready``
              stamp; the supervisor's RSS at N and at 1 worker give RSS per worker
    storm     N workers that exit at once, forever: starts per second and supervisor CPU over
              one fixed window, after every slot has started once
    crashes   restart latency again, for each way a worker can end (workload.CRASHES)
    memory    N idle workers: USS per worker; with a preloaded app, total PSS of the whole tree

Each function returns plain data for the JSON file; a system that fails gets ``{"error": ...}``
and the others go on.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil
from common import (
    EventLog,
    Launch,
    Scenario,
    Supervised,
    cpu_seconds,
    descendants,
    median,
    quiescent,
    restart_latencies_ms,
    rss_bytes,
    summarize,
    supervised,
    thread_count,
    wait_until,
    wakeups,
)

#: Generous deadlines for things that normally take a fraction of them (a 2-core shared box).
BOOT_TIMEOUT = 60.0
EXIT_TIMEOUT = 120.0


class System(Protocol):
    key: str
    label: str

    def missing(self) -> str | None: ...
    def version(self) -> str: ...
    def launch(self, scenario: Scenario, workdir: Path) -> Launch: ...


@dataclass
class Workspace:
    """A run's temp dir: one subdirectory per supervisor started, named after what it ran."""

    root: Path
    count: int = 0

    def new(self, system: System, what: str) -> Path:
        self.count += 1
        path = self.root / f"{self.count:03d}-{system.key.replace('/', '-')}-{what}"
        path.mkdir()
        return path


@contextlib.contextmanager
def run_system(system: System, scenario_mode: str, workers: int, ws: Workspace,
               what: str) -> Iterator[tuple[Supervised, EventLog]]:
    workdir = ws.new(system, what)
    events = EventLog(workdir / "events")
    launch = system.launch(Scenario(scenario_mode, workers, events.path), workdir)
    with supervised(launch, workdir / "supervisor.log", system.key) as sup:
        yield sup, events


def _reached(sup: Supervised, events: EventLog, word: str, count: int) -> Callable[[], bool]:
    def condition() -> bool:
        sup.assert_running()
        return events.count(word) >= count
    return condition


def boot_timeout(workers: int) -> float:
    return BOOT_TIMEOUT + 0.2 * workers


def guarded(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one system's measurement; a failure becomes that row's error, not the run's end."""
    try:
        return fn(*args)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # reported in the table and the JSON; the run goes on
        return {"error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=4)}


# ── restart latency ──────────────────────────────────────────────────────────────────────────

def restart_round(system: System, target: int, budget: float, ws: Workspace,
                  mode: str = "restart") -> dict[str, Any]:
    """Samples from one supervisor run: ``target`` of them, or what ``budget`` seconds give
    (at least one). ``mode``: restart, or crash:KIND."""
    with run_system(system, mode, 1, ws, mode.replace(":", "-")) as (sup, events):
        wait_until(_reached(sup, events, "start", 1), BOOT_TIMEOUT, f"{system.key} to start")
        began = time.monotonic()
        taken: list[float] = []

        def enough() -> bool:
            sup.assert_running()
            taken[:] = restart_latencies_ms(events.refresh())
            spent = time.monotonic() - began
            return len(taken) >= target or (spent >= budget and len(taken) >= 1)

        wait_until(enough, budget + BOOT_TIMEOUT, f"{system.key}'s restarts")
        return {"samples_ms": taken[:target]}


def restart(rounds: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Fold one system's rounds (the caller interleaves the systems)."""
    samples = [x for got in rounds for x in got]
    return {**summarize(samples), "samples_ms": samples, "per_round": [len(x) for x in rounds]}


# ── shutdown ─────────────────────────────────────────────────────────────────────────────────

def shutdown_trial(system: System, workers: int, ws: Workspace) -> dict[str, Any]:
    with run_system(system, "idle", workers, ws, f"shutdown{workers}") as (sup, events):
        _ready_and_asleep(sup, events, workers)
        tree = descendants(sup.pid)
        sent = time.monotonic_ns()
        sup.terminate(group=False)  # the supervisor alone: its shutdown does the rest
        exited = sup.wait_exit(EXIT_TIMEOUT)
        if exited is None:
            raise TimeoutError(f"{system.key} still running {EXIT_TIMEOUT:g} s after SIGTERM")
        # Workers still alive once their supervisor has gone (not counted in the time).
        stragglers = sum(1 for p in tree if _alive(p))
        return {"ms": (exited - sent) / 1e6, "stragglers": stragglers}


def _alive(proc: Any) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != "zombie")
    except Exception:
        return False


def shutdown(trials: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Fold one system's trials, by worker count (the caller interleaves the systems)."""
    row: dict[str, Any] = {}
    for size, got in trials.items():
        times = [t["ms"] for t in got]
        row[str(size)] = {"median_ms": median(times), "min_ms": min(times),
                          "max_ms": max(times), "samples_ms": times,
                          "stragglers": [t["stragglers"] for t in got]}
    return row


# ── idle cost ────────────────────────────────────────────────────────────────────────────────

def idle(systems: Sequence[System], workers: int, window: float,
         ws: Workspace) -> dict[str, dict[str, Any]]:
    """All systems at once, one window: same machine noise for each, a third of the time."""
    rows: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        started: dict[str, tuple[Supervised, EventLog]] = {}
        for system in systems:  # start them all, then wait: their boots overlap
            def start(system: System = system) -> dict[str, Any]:
                sup, events = stack.enter_context(
                    run_system(system, "idle", workers, ws, f"idle{workers}"))
                started[system.key] = (sup, events)
                return {}
            rows[system.key] = guarded(start)
        for key, (sup, events) in started.items():
            rows[key] = guarded(_ready_and_asleep, sup, events, workers)
        running = {key: sup for key, (sup, _) in started.items() if "error" not in rows[key]}
        before = {key: guarded(_idle_counters, sup) for key, sup in running.items()}
        began = time.monotonic()
        time.sleep(window)  # the idle window itself: the one sleep that is the measurement
        spent = time.monotonic() - began
        for key, sup in running.items():
            after = guarded(_idle_counters, sup)
            if "error" in before[key] or "error" in after:
                rows[key] = before[key] if "error" in before[key] else after
                continue
            woke = after["wakeups"] - before[key]["wakeups"]
            rows[key] = {"workers": workers, "window_s": spent,
                         "cpu_s": after["cpu_s"] - before[key]["cpu_s"], "wakeups": woke,
                         "wakeups_per_10s": woke * 10 / spent, "threads": after["threads"]}
        for sup, _ in started.values():
            sup.terminate()  # all at once; each teardown then only waits for its own
    return rows


def _ready_and_asleep(sup: Supervised, events: EventLog, workers: int) -> dict[str, Any]:
    wait_until(_reached(sup, events, "ready", workers), boot_timeout(workers),
               f"{workers} {sup.name} workers to be ready")
    wait_until(lambda: quiescent(sup.pid), BOOT_TIMEOUT, f"{sup.name}'s tree to sleep")
    return {}


def _idle_counters(sup: Supervised) -> dict[str, Any]:
    sup.assert_running()
    return {"cpu_s": cpu_seconds(sup.pid), "wakeups": wakeups(sup.pid),
            "threads": thread_count(sup.pid)}


# ── scale ────────────────────────────────────────────────────────────────────────────────────

def scale_run(system: System, workers: int, ws: Workspace) -> dict[str, Any]:
    available = mem_available()
    with run_system(system, "idle", workers, ws, f"scale{workers}") as (sup, events):
        wait_until(_reached(sup, events, "ready", workers), boot_timeout(workers),
                   f"{workers} {system.key} workers to be ready")
        begin = events.stamps("begin")[0]
        ready = sorted((ns - begin) / 1e9 for ns in events.stamps("ready"))
        rss = rss_bytes(sup.pid)
        # The machine's memory the whole tree took (noisy on a shared machine: an estimate for
        # deciding whether a larger run fits, not a figure to report).
        used_per_worker = max(0, available - mem_available()) / workers
        sent = time.monotonic_ns()
        sup.terminate(group=False)  # the supervisor alone: its shutdown does the rest
        exited = sup.wait_exit(EXIT_TIMEOUT)
        return {"workers": workers, "ready_s": ready[-1], "rss_bytes": rss,
                "machine_bytes_per_worker": used_per_worker,
                "stop_s": None if exited is None else (exited - sent) / 1e9,
                "ready_offsets_s": [round(x, 6) for x in ready]}


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def big_scale_refusal(workers: int, per_worker_bytes: float) -> str | None:
    """Why this machine cannot run ``workers`` workers now, or None when it can: memory (with a
    quarter to spare), open files (janus-mp holds two fds per worker), processes."""
    import resource

    need = workers * per_worker_bytes * 1.25
    have = mem_available()
    if need > have:
        return (f"skipped: needs ~{need / 2**30:.1f} GiB (measured {per_worker_bytes / 2**20:.1f}"
                f" MiB/worker at 1,000), MemAvailable {have / 2**30:.1f} GiB")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and 2 * workers + 256 > hard:
        return f"skipped: {2 * workers + 256} open files needed, RLIMIT_NOFILE hard {hard}"
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    if workers + 1024 > min(pid_max, nproc if nproc != resource.RLIM_INFINITY else pid_max):
        return f"skipped: {workers} processes exceed pid_max {pid_max} / RLIMIT_NPROC {nproc}"
    return None


def scale(system: System, workers: int, ws: Workspace) -> dict[str, Any]:
    one = scale_run(system, 1, ws)
    many = scale_run(system, workers, ws)
    return {**many, "rss_bytes_1": one["rss_bytes"], "ready_s_1": one["ready_s"],
            "rss_per_worker_bytes": (many["rss_bytes"] - one["rss_bytes"]) / (workers - 1)}


# ── crash storm ──────────────────────────────────────────────────────────────────────────────

def storm(system: System, workers: int, window: float, ws: Workspace) -> dict[str, Any]:
    with run_system(system, "storm", workers, ws, "storm") as (sup, events):
        wait_until(_reached(sup, events, "start", workers), boot_timeout(workers),
                   f"every {system.key} slot to start once")
        t0, cpu0 = time.monotonic_ns(), cpu_seconds(sup.pid)
        time.sleep(window)  # the measurement window
        sup.assert_running()
        t1, cpu1 = time.monotonic_ns(), cpu_seconds(sup.pid)
        starts = [(ns - t0) / 1e9 for ns in events.stamps("start") if t0 <= ns < t1]
        spent = (t1 - t0) / 1e9
        return {"window_s": spent, "restarts": len(starts),
                "start_offsets_s": [round(x, 6) for x in starts],
                "restarts_per_s": len(starts) / spent, "cpu_s": cpu1 - cpu0,
                "cpu_percent": 100 * (cpu1 - cpu0) / spent}


# ── memory ───────────────────────────────────────────────────────────────────────────────────

def memory(system: System, mode: str, workers: int, ws: Workspace) -> dict[str, Any]:
    """N idle workers, ready and asleep: each worker's USS (what it alone holds) and the PSS
    of the whole tree (supervisor, helpers and workers: shared pages counted once in all)."""
    with run_system(system, mode, workers, ws, f"{mode}{workers}") as (sup, events):
        _ready_and_asleep(sup, events, workers)
        worker_pids = {event.pid for event in events.refresh() if event.word == "ready"}
        tree = [psutil.Process(sup.pid), *descendants(sup.pid)]
        uss: list[int] = []
        pss = 0
        for proc in tree:
            info = proc.memory_full_info()
            pss += int(info.pss)
            if proc.pid in worker_pids:
                uss.append(int(info.uss))
        if len(uss) != workers:
            raise RuntimeError(f"found {len(uss)} of {workers} workers in the tree")
        return {"workers": workers, "processes": len(tree), "pss_bytes": pss,
                "uss_per_worker_bytes": sum(uss) / len(uss), "uss_bytes": uss}
