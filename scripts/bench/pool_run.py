"""One library, one scenario, in a process of its own: ``python pool_run.py SPEC RESULT``.

SPEC is a JSON file written by pools.py; RESULT is where this process writes its JSON result,
once, by rename. Then it leaves with os._exit: no pool shutdown, no atexit join (either can
hang on a stuck worker, which is what some scenarios measure); the harness then kills every
process this one leaves behind.

    perf      warm up; time map() of ``search_n`` tiny tasks at each candidate chunksize
              (``repeats`` times for a contender), then of ``n`` tasks at the two fastest
              (``repeats`` times each); then ``samples`` single-submit round trips
    kill9     a batch of ``n`` tasks; the victim task (index n/3) waits, the harness side of
              this process SIGKILLs its worker; per-task outcomes counted
    hang      a batch of ``n`` tasks, one of which sleeps forever
    poison    a batch of ``n`` tasks, one of which SIGKILLs every worker it runs on
    memory    a batch of ``n`` tasks, one of which keeps ``leak_mib`` MiB in its worker

A batch is submitted task by task (what concurrent.futures' map does inside), so each task's
outcome can be counted: completed (its own result), failed (an exception reached the caller),
lost (cancelled, or dropped by a map that gave up), hung (no outcome: nothing arrived for
``stall_s`` while it was still pending, or the scenario's deadline passed). janus-mp's retry
row calls map() itself: with retries=1 the whole map must come back.
After the batch, a capacity probe asks how many workers can still run a task at once.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
from pool_libs import Facility, Pool, facility_text, open_pool, version
from pool_tasks import Context, echo, task, tiny


def main(spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result: dict[str, Any]
    try:
        result = {"version": version(spec["key"])}
        result.update(SCENARIOS[spec["scenario"]](spec))
    except Exception as exc:  # the harness shows it in the row; the other rows go on
        result = {"error": f"{type(exc).__name__}: {exc}"}
    tmp = result_path + ".tmp"
    Path(tmp).write_text(json.dumps(result))
    os.rename(tmp, result_path)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# ── performance ──────────────────────────────────────────────────────────────────────────────

def perf(spec: dict[str, Any]) -> dict[str, Any]:
    pool = open_pool(spec["key"], spec["workers"], Facility())
    _probe(pool, spec["workers"], Path(spec["workdir"]) / "warm", spec["gather_s"])
    _timed_map(pool, spec["workers"] * 20, 1)  # every worker started and warm
    out: dict[str, Any] = {}
    finalists = spec["chunksizes"]
    if len(finalists) > FINALISTS:
        search = _search(pool, finalists, spec["search_n"], spec["repeats"])
        out["search_tasks_per_s"] = {str(c): rate for c, rate in search.items()}
        finalists = sorted(search, key=lambda c: -search[c])[:FINALISTS]
    # A map of 100,000 tiny tasks lasts a tenth of a second: each finalist a few times.
    out["tasks_per_s"] = {str(c): [spec["n"] / _timed_map(pool, spec["n"], c)
                                   for _ in range(spec["repeats"])] for c in finalists}
    for i in range(min(20, spec["samples"])):  # the round trip's own warm-up
        pool.call(echo, i)
    samples = []
    for i in range(spec["samples"]):
        began = time.perf_counter_ns()
        got = pool.call(echo, i)
        samples.append((time.perf_counter_ns() - began) / 1e6)
        if got != i:
            raise AssertionError(f"round trip {i} came back as {got!r}")
    out["roundtrip_ms"] = samples
    return out


#: Chunksizes the search passes on to the full-size maps: the search's own maps are short and
#: noisy, so the best two are measured at full size in every round and the rounds decide.
FINALISTS = 2


def _search(pool: Pool, candidates: list[int], n: int, repeats: int) -> dict[int, float]:
    """Tasks/s of a map of ``n`` at each chunksize: the median of ``repeats`` maps for each
    contender (one noisy map must not pick the chunksize), one map for a candidate whose first
    is under a quarter of the best so far (chunksize 1 of tiny tasks: seconds, never close)."""
    found: dict[int, float] = {}
    for chunksize in candidates:
        rates = [n / _timed_map(pool, n, chunksize)]
        if rates[0] * 4 >= max(found.values(), default=0.0):
            rates += [n / _timed_map(pool, n, chunksize) for _ in range(repeats - 1)]
        found[chunksize] = sorted(rates)[len(rates) // 2]
    return found


def _timed_map(pool: Pool, n: int, chunksize: int) -> float:
    began = time.perf_counter()
    got = pool.map(tiny, range(n), chunksize)
    elapsed = time.perf_counter() - began
    if len(got) != n or sum(got) != n * (n + 1) // 2:
        raise AssertionError(f"map of {n} at chunksize {chunksize}: wrong results")
    return elapsed


# ── robustness ───────────────────────────────────────────────────────────────────────────────

class Batch:
    """Per-task outcomes of one batch, collected within a stall window and a deadline."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.outcome: dict[int, str] = {}  # index → completed | failed | lost | wrong
        self.errors: Counter[str] = Counter()
        self.last_at = 0.0
        self.began = time.monotonic()
        self.special: int | None = None
        self.special_at_s: float | None = None  # when the special task got its outcome

    def settle(self, index: int, future: cf.Future[Any]) -> None:
        if future.cancelled():
            self.outcome[index] = "lost"
            self.errors["cancelled"] += 1
        elif (exc := future.exception()) is not None:
            self.outcome[index] = "failed"
            self.errors[type(exc).__name__] += 1
        else:
            value = future.result()
            self.outcome[index] = "completed" if value[0] == index else "wrong"
        self.last_at = time.monotonic()
        if index == self.special:
            self.special_at_s = self.last_at - self.began

    def refused(self, index: int, exc: BaseException) -> None:
        self.outcome[index] = "failed"
        self.errors[f"{type(exc).__name__} at submit"] += 1
        self.last_at = time.monotonic()

    def counts(self) -> dict[str, Any]:
        tally = Counter(self.outcome.values())
        return {"completed": tally["completed"], "failed": tally["failed"],
                "lost": tally["lost"], "wrong": tally["wrong"],
                "hung": self.n - len(self.outcome), "errors": dict(self.errors)}


def run_batch(pool: Pool, roles: list[str], ctx: Context, stall_s: float,
              deadline_s: float) -> tuple[Batch, float]:
    """Submit every task, then collect outcomes until all are in, nothing has arrived for
    ``stall_s``, or ``deadline_s`` has passed. Returns the batch and its wall time.

    Each future reports itself through a done callback into one queue: waiting on thousands
    of futures at once with cf.wait would cost the caller O(pending) per outcome, CPU taken
    from the in-process threads of the pool being measured."""
    batch = _batch_of(roles)
    began = batch.last_at = batch.began
    arrived: queue.SimpleQueue[tuple[int, cf.Future[Any]]] = queue.SimpleQueue()
    pending = 0
    for i, role in enumerate(roles):
        try:
            future = pool.submit(task, i, role, ctx)
        except Exception as exc:  # a broken pool refuses the rest
            batch.refused(i, exc)
            continue
        pending += 1
        future.add_done_callback(lambda f, i=i: arrived.put((i, f)))  # type: ignore[misc]
    while pending:
        left = min(batch.last_at + stall_s, began + deadline_s) - time.monotonic()
        try:
            index, future = arrived.get(timeout=max(left, 0.0)) if left > 0 else \
                arrived.get_nowait()
        except queue.Empty:
            break
        batch.settle(index, future)
        pending -= 1
    wall = (batch.last_at if not pending else time.monotonic()) - began
    return batch, wall


def run_map(pool: Pool, roles: list[str], ctx: Context, deadline_s: float) -> tuple[Batch, float]:
    """janus-mp's retry row: the batch through map() itself, chunksize 1."""
    batch = _batch_of(roles)
    began = batch.began
    n = len(roles)
    results = pool.map_many(task, range(n), roles, [ctx] * n,  # type: ignore[attr-defined]
                            chunksize=1, timeout=deadline_s)
    index = 0
    try:
        for value in results:
            batch.outcome[index] = "completed" if value[0] == index else "wrong"
            if index == batch.special:
                batch.special_at_s = time.monotonic() - began
            index += 1
    except Exception as exc:
        if type(exc) is TimeoutError:  # map's own deadline (a TaskTimeout is a subclass)
            return batch, time.monotonic() - began  # the rest are hung
        batch.outcome[index] = "failed"
        batch.errors[type(exc).__name__] += 1
        for rest in range(index + 1, n):  # a map that raised yields nothing more
            batch.outcome[rest] = "lost"
    return batch, time.monotonic() - began


def _batch_of(roles: list[str]) -> Batch:
    batch = Batch(len(roles))
    batch.special = next((i for i, role in enumerate(roles) if role != "work"), None)
    return batch


def robustness(spec: dict[str, Any]) -> dict[str, Any]:
    scenario, key, n, workers = spec["scenario"], spec["key"], spec["n"], spec["workers"]
    work = Path(spec["workdir"])
    facility = Facility(**spec["facility"])
    ctx = Context(log=str(work / "tasks.log"), spin_s=spec["spin_s"],
                  marker=str(work / "victim"), leak_mib=spec.get("leak_mib", 0))
    special = {"kill9": "victim", "hang": "hang", "poison": "poison", "memory": "leak"}[scenario]
    where = n // 3
    roles = ["work"] * n
    roles[where] = special
    pool = open_pool(key, workers, facility)
    _probe(pool, workers, work / "warm", spec["gather_s"])  # every worker up before timing
    killer = _Killer(Path(ctx.marker)) if scenario == "kill9" else None
    if key == "janus-mp/retry":
        batch, wall = run_map(pool, roles, ctx, spec["deadline_s"])
    else:
        batch, wall = run_batch(pool, roles, ctx, spec["stall_s"], spec["deadline_s"])
    out: dict[str, Any] = {"facility": facility_text(key, scenario, facility),
                           "wall_s": wall, **batch.counts(), "special_index": where,
                           "special_outcome": batch.outcome.get(where, "hung"),
                           "special_at_s": batch.special_at_s,
                           "hung_at_deadline": len(batch.outcome) < n}
    if killer is not None:
        out["killed_pid"] = killer.stop()
    out.update(_ran(Path(ctx.log), batch))
    if scenario == "memory":
        # Only a library with a facility is given time to act (with work to do: some check
        # between tasks); the others are looked at once.
        watch = 0.0 if out["facility"] == "none" else spec["recycle_s"]
        out["memory"] = _leaker(pool, Path(ctx.log), spec["limit_mib"], watch)
    out["capacity_after"] = _probe(pool, workers, work / "probe", spec["gather_s"])
    return out


class _Killer:
    """SIGKILLs the victim task's worker once its pid shows up in the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker
        self.pid: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.marker.exists():
                self.pid = int(self.marker.read_text())
                os.kill(self.pid, signal.SIGKILL)
                return
            self._stop.wait(0.002)

    def stop(self) -> int | None:
        self._stop.set()
        self._thread.join()
        return self.pid


def _ran(log: Path, batch: Batch) -> dict[str, Any]:
    """Executions seen in the task log: tasks run more than once, and worker deaths."""
    done: Counter[int] = Counter()
    deaths = 0
    if log.exists():
        for line in log.read_text().splitlines():
            word, index, _ = line.split()
            if word == "done":
                done[int(index)] += 1
            elif word == "death":
                deaths += 1
    completed = {i for i, o in batch.outcome.items() if o == "completed"}
    return {"ran_twice": sum(1 for c in done.values() if c > 1),
            "completed_without_run": len(completed - set(done)),
            "poison_deaths": deaths}


def _leaker(pool: Pool, log: Path, limit_mib: int, watch_s: float) -> dict[str, Any]:
    """Whether the worker that leaked was recycled (or shrank under the limit) within
    ``watch_s``, while the pool is kept busy with a trickle of tasks."""
    pids = [int(line.split()[2]) for line in log.read_text().splitlines()
            if line.startswith("leak ")] if log.exists() else []
    if not pids:
        return {"verdict": "the leaking task never ran"}
    pid, began, trickled = pids[0], time.monotonic(), 0
    idle = Context(log=os.devnull)
    while True:
        try:
            process = psutil.Process(pid)
            rss = process.memory_info().rss
            gone = process.status() == psutil.STATUS_ZOMBIE  # exited, not reaped yet
        except psutil.Error:
            gone = True
        if gone:
            return {"verdict": "recycled", "after_s": time.monotonic() - began}
        if rss < limit_mib << 20:
            return {"verdict": "back under the limit", "after_s": time.monotonic() - began}
        if time.monotonic() - began >= watch_s:
            return {"verdict": "still over" if watch_s else "no facility", "rss_mib": rss / 2**20,
                    "after_s": watch_s}
        with contextlib.suppress(Exception):  # a pool that broke just gets no more work
            pool.submit(task, 2 * 10**9 + trickled, "work", idle)
            trickled += 1
        time.sleep(0.05)  # the trickle's pace, not a synchronisation


#: One capacity probe's wait for its peers; probes repeat until the pool is whole or the
#: window (``gather_s``) is over.
PROBE_S = 1.0


def _probe(pool: Pool, workers: int, where: Path, window_s: float) -> dict[str, Any]:
    """How many workers can run a task at the same time (``workers`` when all can), and how
    soon. Probes repeat: a pool that holds a queued task behind a running one (prefetch) does
    not hand it to a worker that joins meanwhile, so one probe sent while a replacement was
    starting would see the pool short for as long as the probe waits."""
    began = time.monotonic()
    attempt, seen, notes = 0, 0, Counter[str]()
    while True:
        attempt += 1
        left = window_s - (time.monotonic() - began)
        seen, notes, refused = _probe_once(pool, workers, where / str(attempt),
                                           max(0.1, min(PROBE_S, left)))
        if refused or seen >= workers or left <= PROBE_S:
            break
    note = ", ".join(f"{k} ×{v}" for k, v in notes.items())
    return {"workers": seen, "after_s": time.monotonic() - began, "attempts": attempt,
            "note": note}


def _probe_once(pool: Pool, workers: int, where: Path,
                wait_s: float) -> tuple[int, Counter[str], bool]:
    where.mkdir(parents=True)
    ctx = Context(log=os.devnull, gather_dir=str(where), gather_n=workers, gather_s=wait_s)
    try:
        futures = [pool.submit_untimed(task, 10**9 + i, "gather", ctx) for i in range(workers)]
    except Exception as exc:
        return 0, Counter({f"submit refused: {type(exc).__name__}": 1}), True
    done, pending = cf.wait(futures, timeout=workers * wait_s + 10)
    seen, notes = 0, Counter[str]()
    for future in done:
        if future.exception() is not None:
            notes[type(future.exception()).__name__] += 1
        else:
            seen = max(seen, future.result()[1])
    if pending:
        notes["no answer"] += len(pending)
    return seen, notes, False


SCENARIOS = {"perf": perf, "kill9": robustness, "hang": robustness, "poison": robustness,
             "memory": robustness}

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
