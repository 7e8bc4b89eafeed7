"""The pools benchmark's results as text, and its goals: a pure fold of the results dict
(see pools.py for its shape)."""

from __future__ import annotations

import math
from typing import Any

from pool_libs import ANCHORS
from report import Goal, _fmt, _ratio, _rows, _table

SCENARIO_TITLES = {
    "kill9": "kill -9 one worker in the middle of a task, during a batch of {n:,} tasks",
    "hang": "one task of {n} sleeps forever (timeout {task_timeout_s:g} s where the library "
            "has one)",
    "poison": "one task of {n} SIGKILLs every worker it runs on",
    "memory": "one task of {n} keeps {leak_mib} MiB in its worker (limit {limit_mib} MiB)",
}


def render(results: dict[str, Any]) -> str:
    parts = [_header(results)]
    if "perf" in results:
        parts += [_throughput(results["perf"], results["libraries"]),
                  _roundtrip(results["perf"], results["libraries"])]
    for scenario in SCENARIO_TITLES:
        if scenario in results:
            parts.append(_robustness(scenario, results[scenario], results["libraries"]))
    parts.append(_goals(results["goals"], results["meta"]["quick"]))
    return "\n\n".join(parts) + "\n"


def _header(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [f"pools benchmark{' (--quick: smoke run, small sizes)' if meta['quick'] else ''} "
             f"— {meta['started']}, {meta['cpus']} CPUs, load {meta['loadavg']}, "
             f"Python {meta['python']}, {meta['plan']['workers']} workers per pool"]
    versions = _versions(results)
    for key, info in results["libraries"].items():
        version = versions.get(key) or versions.get(key.split("/")[0])  # a variant's library
        lines.append(f"  {info['label']:<42} {info.get('status') or version or '?'}")
    return "\n".join(lines)


def _versions(results: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in ("perf", *SCENARIO_TITLES):
        for key, row in results.get(name, {}).get("rows", {}).items():
            if row.get("version"):
                found.setdefault(key, row["version"])
    return found


def _throughput(m: dict[str, Any], libraries: dict[str, Any]) -> str:
    ref = m["rows"].get("janus-mp", {}).get("tasks_per_s")

    def cells(row: dict[str, Any]) -> list[str]:
        search = row["search_tasks_per_s"]
        return [_fmt(row["chunksize"]), _fmt(row["tasks_per_s"], 0),
                _ratio(row["tasks_per_s"], ref),
                " / ".join(_fmt(search.get(str(c)), 0) for c in m["chunksizes"])]

    return _table(f"1. throughput: map() of {m['n']:,} tiny tasks, {m['workers']} workers, "
                  "each library at its best chunksize",
                  ["library", "chunksize", "tasks/s", "× janus-mp",
                   f"search (median, {m['search_n']:,} tasks) at chunksize "
                   + " / ".join(str(c) for c in m["chunksizes"])],
                  _rows(m, libraries, cells),
                  f"the search's two best chunksizes measured at full size in each of "
                  f"{m['rounds']} round(s) × {m['repeats']} maps (each round a fresh pool); the "
                  "better median is shown; pool start-up and warm-up excluded")


def _roundtrip(m: dict[str, Any], libraries: dict[str, Any]) -> str:
    ref = m["rows"].get("janus-mp", {}).get("roundtrip", {}).get("p50")

    def cells(row: dict[str, Any]) -> list[str]:
        trip = row["roundtrip"]
        return [_fmt(trip["p50"], 3), _fmt(trip["p99"], 3), _ratio(trip["p50"], ref),
                _fmt(trip["n"])]

    return _table("2. round trip: submit one task, wait for its result (ms)",
                  ["library", "p50", "p99", "p50 × janus-mp", "samples"],
                  _rows(m, libraries, cells), "sequential; an idle pool between calls")


def _robustness(scenario: str, m: dict[str, Any], libraries: dict[str, Any]) -> str:
    def cells(row: dict[str, Any]) -> list[str]:
        wall = _fmt(row["wall_s"], 2)
        if row.get("hung_at_deadline"):
            wall = f"{wall} (gave up)"
        extra = _errors(row)
        if scenario == "poison":
            extra += f"; {row['poison_deaths']} worker deaths"
        if scenario == "hang" and row.get("special_at_s") is not None:
            extra += f"; hung task's outcome at {row['special_at_s']:.2f} s"
        if scenario == "memory":
            extra += f"; leaking worker: {_memory(row['memory'])}"
        if row.get("ran_twice") or row.get("wrong") or row.get("completed_without_run"):
            extra += f"; ran twice {row['ran_twice']}, wrong results {row['wrong']}"
        cap = row["capacity_after"]
        after = f"{cap['workers']}/{m['workers']}"
        if cap.get("attempts", 1) > 1:  # not at once: when it was whole, or how long it was not
            after += f" at {cap['after_s']:.1f} s"
        after += f" ({cap['note']})" if cap["note"] else ""
        return [row["facility"], _fmt(row["completed"]), _fmt(row["failed"]), _fmt(row["lost"]),
                _fmt(row["hung"]), wall, after, extra.lstrip("; ")]

    title = SCENARIO_TITLES[scenario].format(**m)
    number = 3 + list(SCENARIO_TITLES).index(scenario)
    return _table(f"{number}. {title}",
                  ["library", "facility", "completed", "failed", "lost", "hung", "wall s",
                   "workers after", "what the caller got"],
                  _rows(m, libraries, cells),
                  "hung: no outcome when the wait gave up (nothing new for a while, or the "
                  "deadline); a real caller would still be waiting. workers after: how many "
                  "ran a task at once, probed again each second until whole (\"at\": when)")


def _errors(row: dict[str, Any]) -> str:
    return ", ".join(f"{name} ×{count:,}" for name, count in row["errors"].items())


def _memory(m: dict[str, Any]) -> str:
    if m["verdict"] == "no facility":
        return f"holds {m['rss_mib']:.0f} MiB"
    if m["verdict"] == "still over":
        return f"still {m['rss_mib']:.0f} MiB after {m['after_s']:g} s"
    if "after_s" in m:
        return f"{m['verdict']} after {m['after_s']:.1f} s"
    return str(m["verdict"])


# ── goals ────────────────────────────────────────────────────────────────────────────────────

def goals(results: dict[str, Any], task_timeout_s: float) -> list[Goal]:
    found: list[Goal] = []
    if "perf" in results:
        found += _perf_goals(results["perf"]["rows"])
    if "kill9" in results:
        found.append(_kill9_goal(results["kill9"]))
    if "hang" in results:
        found.append(_hang_goal(results["hang"], task_timeout_s))
    if "poison" in results:
        found.append(_poison_goal(results["poison"]))
    scenarios = [results[s] for s in SCENARIO_TITLES if s in results]
    if scenarios:
        found.append(_once_goal(scenarios))
    return found


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    return float(value) if ok else None


def _perf_goals(rows: dict[str, Any]) -> list[Goal]:
    janus = rows.get("janus-mp", {})
    rates = {k: _number(rows.get(k, {}).get("tasks_per_s")) for k in ANCHORS}
    measured = {k: v for k, v in rates.items() if v is not None}
    name = "throughput ≥ 1.0× the best of the anchors"
    ours = _number(janus.get("tasks_per_s"))
    if ours is None or not measured:
        found = [Goal("perf", name, "not measured", "n/a")]
    else:
        best = max(measured, key=lambda k: measured[k])
        figure = f"{ours:,.0f}/s = {ours / measured[best]:.2f}× {best} ({measured[best]:,.0f}/s)"
        if len(measured) < len(ANCHORS):
            figure += f"; not measured: {', '.join(k for k in ANCHORS if k not in measured)}"
        found = [Goal("perf", name, figure, "PASS" if ours >= measured[best] else "MISS")]
    name = "round trip p50 ≤ ProcessPoolExecutor's"
    ours = _number(janus.get("roundtrip", {}).get("p50"))
    theirs = _number(rows.get("ppe", {}).get("roundtrip", {}).get("p50"))
    if ours is None or theirs is None:
        found.append(Goal("perf", name, "not measured", "n/a"))
    else:
        found.append(Goal("perf", name, f"{ours:.3f} ms vs {theirs:.3f} ms = "
                          f"{ours / theirs:.2f}×", "PASS" if ours <= theirs else "MISS"))
    return found


def _measured(row: dict[str, Any] | None) -> bool:
    return row is not None and "completed" in row


def _kill9_goal(m: dict[str, Any]) -> Goal:
    name = ("kill -9 mid-map: exactly 1 task failed (0 with retries=1), the map completes, "
            "the pool is whole again")
    plain, retry = m["rows"].get("janus-mp"), m["rows"].get("janus-mp/retry")
    if not (_measured(plain) and _measured(retry)):
        return Goal("kill9", name, "not measured", "n/a")
    assert plain is not None and retry is not None
    n = m["n"]
    figure = (f"retries=0: {plain['completed']:,} completed, {plain['failed']} failed "
              f"({_errors(plain) or 'no error'}), {plain['lost'] + plain['hung']} lost/hung; "
              f"retries=1 map(): {retry['completed']:,}/{n:,} results, {retry['failed']} failed")
    ok = (plain["failed"] == 1 and plain["completed"] == n - 1 and retry["completed"] == n
          and retry["failed"] == 0 and not plain["hung"] and not plain["lost"]
          and plain["capacity_after"]["workers"] == m["workers"])
    return Goal("kill9", name, figure, "PASS" if ok else "MISS")


def _hang_goal(m: dict[str, Any], timeout_s: float) -> Goal:
    # "At its timeout": no sooner, and no later than a loaded 2-core machine can explain.
    late = max(1.0, timeout_s / 2)
    name = f"the hung task fails at its timeout ({timeout_s:g} s, +{late:g} s) and the pool goes on"
    row = m["rows"].get("janus-mp")
    if not _measured(row):
        return Goal("hang", name, "not measured", "n/a")
    assert row is not None
    at = row.get("special_at_s")
    figure = (f"{row['special_outcome']} at {'–' if at is None else f'{at:.2f} s'} "
              f"({_errors(row) or 'no error'}); {row['completed']}/{m['n'] - 1} others "
              f"completed; workers after {row['capacity_after']['workers']}/{m['workers']}")
    ok = (row["special_outcome"] == "failed" and row["errors"].get("TaskTimeout") == 1
          and at is not None and timeout_s <= at <= timeout_s + late
          and row["completed"] == m["n"] - 1
          and row["capacity_after"]["workers"] == m["workers"])
    return Goal("hang", name, figure, "PASS" if ok else "MISS")


def _poison_goal(m: dict[str, Any]) -> Goal:
    name = "the poison task fails alone (PoisonTask) after 3 worker deaths"
    row = m["rows"].get("janus-mp")
    if not _measured(row):
        return Goal("poison", name, "not measured", "n/a")
    assert row is not None
    figure = (f"{row['failed']} failed ({_errors(row) or 'no error'}) after "
              f"{row['poison_deaths']} deaths; {row['completed']}/{m['n'] - 1} others completed")
    ok = (row["failed"] == 1 and row["errors"].get("PoisonTask") == 1
          and row["poison_deaths"] == 3 and row["completed"] == m["n"] - 1)
    return Goal("poison", name, figure, "PASS" if ok else "MISS")


def _once_goal(scenarios: list[dict[str, Any]]) -> Goal:
    name = "every janus-mp task counted exactly once (none lost, hung, wrong or run twice)"
    rows = [row for m in scenarios for key, row in m["rows"].items()
            if key.startswith("janus-mp") and _measured(row)]
    if not rows:
        return Goal("once", name, "not measured", "n/a")
    tasks = sum(row["completed"] + row["failed"] + row["lost"] + row["hung"] + row["wrong"]
                for row in rows)
    bad = {k: sum(row[k] for row in rows)
           for k in ("lost", "hung", "wrong", "ran_twice", "completed_without_run")}
    figure = f"{tasks:,} tasks in {len(rows)} batches: " + ", ".join(
        f"{k.replace('_', ' ')} {v}" for k, v in bad.items())
    missing = [m for m in scenarios if not _measured(m["rows"].get("janus-mp"))]
    if missing:
        figure += f"; {len(missing)} scenario(s) without a janus-mp row"
    return Goal("once", name, figure, "PASS" if not any(bad.values()) and not missing
                else "MISS")


def _goals(found: list[dict[str, str]], quick: bool) -> str:
    lines = ["goals" + (" (quick run: small sizes, indicative only)" if quick else "")]
    for goal in found:
        lines.append(f"  [{goal['verdict']:<4}] {goal['goal']}: {goal['figure']}")
    return "\n".join(lines)
