"""Results out: the terminal table with ratios to janus-mp, the goals, the JSON and the chart.

Pure folding of the results dict (see run.py for its shape) into text, plus two writers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MEASUREMENTS = ("restart", "shutdown", "idle", "scale", "storm", "crashes", "memory")


# ── the table ────────────────────────────────────────────────────────────────────────────────

def render(results: dict[str, Any]) -> str:
    parts = [_header(results)]
    for name in MEASUREMENTS:
        if name in results:
            table = _RENDERERS[name](results[name], results["systems"])
            for goal in results.get("goals", []):
                if goal["measurement"] == name:
                    table += f"\n  goal [{goal['verdict']}] {goal['goal']}: {goal['figure']}"
            parts.append(table)
    for name, hook in results.get("external", {}).items():
        parts.append(_external(name, hook))
    if "goals" in results:
        parts.append(_goals(results["goals"], results["meta"]["quick"]))
    return "\n\n".join(parts) + "\n"


def _header(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [f"janus-mp benchmark{' (--quick: smoke run, few samples)' if meta['quick'] else ''}"
             f" — {meta['started']}, {meta['cpus']} CPUs, load {meta['loadavg']}, "
             f"Python {meta['python']}"]
    for info in results["systems"].values():
        lines.append(f"  {info['label']:<28} {info.get('version') or info.get('status')}")
    return "\n".join(lines)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _ratio(value: Any, reference: Any) -> str:
    if not isinstance(value, (int, float)) or not isinstance(reference, (int, float)):
        return "–"
    if reference == 0 or math.isnan(reference) or math.isnan(value):
        return "–"
    return f"{value / reference:.2f}×"


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]],
           note: str = "") -> str:
    full = [r for r in rows if len(r) == len(headers)]
    widths = [max([len(h), *(len(r[i]) for r in full)]) for i, h in enumerate(headers)]
    widths[0] = max([widths[0], *(len(r[0]) for r in rows)])
    lines = [title]
    lines.append("  " + "  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                                  for i, (h, w) in enumerate(zip(headers, widths, strict=True))))
    for row in rows:
        if len(row) == 2 and len(headers) > 2:  # a status spanning the figures
            lines.append(f"  {row[0].ljust(widths[0])}  {row[1]}")
            continue
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    if note:
        lines.append("  " + note)
    return "\n".join(lines)


def _status(row: dict[str, Any]) -> str | None:
    if "status" in row:
        return str(row["status"])
    if "error" in row:
        first = str(row["error"]).splitlines()[0]
        return f"ERROR {first[:90]}{'…' if len(first) > 90 else ''} (details in the JSON)"
    return None


def _label(systems: dict[str, Any], key: str) -> str:
    return str(systems.get(key, {}).get("label", key))


def _rows(m: dict[str, Any], systems: dict[str, Any],
          cells: Callable[[dict[str, Any]], list[str]]) -> list[list[str]]:
    """One table row per system: its label, then its cells, or its status if it has no numbers."""
    rows = []
    for key, row in m["rows"].items():
        status = _status(row)
        rows.append([_label(systems, key), *([status] if status else cells(row))])
    return rows


def _restart(m: dict[str, Any], systems: dict[str, Any]) -> str:
    ref = m["rows"].get(m["reference"], {}).get("p50")
    rows = _rows(m, systems, lambda row: [
        _fmt(row["n"]), _fmt(row["p50"], 2), _fmt(row["p90"], 2), _fmt(row["p99"], 2),
        _fmt(row["max"], 2), _ratio(row["p50"], ref)])
    return _table("1. restart latency: crash → replacement's first line of service code (ms)",
                  ["system", "n", "p50", "p90", "p99", "max", "p50 × janus-mp"], rows,
                  f"worker serves {m['run_seconds']:g} s then exits 1; one worker; "
                  f"{m['rounds']} round(s) of up to {m['samples_per_round']} samples or "
                  f"{m['budget_s']:g} s each")


def _shutdown(m: dict[str, Any], systems: dict[str, Any]) -> str:
    sizes = [str(s) for s in m["sizes"]]
    ref_row = m["rows"].get(m["reference"], {})
    headers = ["system"]
    for size in sizes:
        headers += [f"{size} workers", "× janus-mp"]

    def cells(row: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for size in sizes:
            value = row.get(size, {}).get("median_ms")
            out += [_fmt(value), _ratio(value, ref_row.get(size, {}).get("median_ms"))]
        return out

    rows = _rows(m, systems, cells)
    note = f"median of {m['repeats']} per size, systems interleaved"
    for key, row in m["rows"].items():
        left = sum(n for size in sizes for n in row.get(size, {}).get("stragglers", []))
        if left:
            note += f"\n  {_label(systems, key)} exited leaving {left} worker(s) running"
    return _table("2. shutdown: SIGTERM → supervisor exit, idle cooperative workers "
                  "(ms, median)", headers, rows, note)


def _idle(m: dict[str, Any], systems: dict[str, Any]) -> str:
    ref = m["rows"].get(m["reference"], {})
    rows = _rows(m, systems, lambda row: [
        _fmt(row["cpu_s"], 3), _ratio(row["cpu_s"], ref.get("cpu_s")), _fmt(row["wakeups"]),
        _fmt(row["wakeups_per_10s"], 2), _ratio(row["wakeups"], ref.get("wakeups")),
        _fmt(row["threads"])])
    return _table(f"3. idle cost: supervisor over {m['window_s']:g} s with {m['workers']} idle "
                  "workers", ["system", "CPU s", "× janus-mp", "wake-ups", "per 10 s",
                              "× janus-mp", "threads"], rows,
                  "wake-ups: voluntary + involuntary context switches, all threads; "
                  "all systems in the same window")


def _scale(m: dict[str, Any], systems: dict[str, Any]) -> str:
    ref = m["rows"].get(m["reference"], {})
    ref_pw = (ref.get("rss_per_worker_bytes") or math.nan) / 1024

    def cells(row: dict[str, Any]) -> list[str]:
        per_worker = row["rss_per_worker_bytes"] / 1024
        return [_fmt(row["ready_s"], 2), _ratio(row["ready_s"], ref.get("ready_s")),
                _fmt(per_worker, 1), _ratio(per_worker, ref_pw),
                _fmt(row["rss_bytes"] / 2**20, 1), _fmt(row.get("stop_s"), 2)]

    rows = _rows(m, systems, cells)
    table = _table(f"4. scale: {m['workers']:,} workers", ["system", "all ready s", "× janus-mp",
                                                         "RSS/worker KiB", "× janus-mp",
                                                         "RSS MiB", "then stop s"], rows,
                   "ready: supervisor's first spawn → last worker's ready; RSS/worker: "
                   f"(RSS at {m['workers']:,} − RSS at 1) / {m['workers'] - 1:,}")
    if "big" in m:
        table += "\n\n" + _scale(m["big"], systems)
    return table


def _storm(m: dict[str, Any], systems: dict[str, Any]) -> str:
    ref = m["rows"].get(m["reference"], {})
    rows = _rows(m, systems, lambda row: [
        _fmt(row["restarts"]), _fmt(row["restarts_per_s"]),
        _ratio(row["restarts_per_s"], ref.get("restarts_per_s")), _fmt(row["cpu_percent"]),
        _ratio(row["cpu_s"], ref.get("cpu_s"))])
    return _table(f"5. crash storm: {m['workers']} workers exit at once, forever; "
                  f"{m['window_s']:g} s window", ["system", "restarts", "per s", "× janus-mp",
                                                  "supervisor CPU %", "× janus-mp"], rows,
                  "janus-mp at its default backoff (breaker off); gunicorn has none")


def _external(name: str, hook: dict[str, Any]) -> str:
    head = f"{name}: {hook['script']} — {hook['status']}"
    if hook.get("seconds") is not None:
        head += f" ({hook['seconds']:.1f} s)"
    body = (hook.get("output") or "").rstrip()
    return head + ("\n" + "\n".join("  " + line for line in body.splitlines()) if body else "")


def _crashes(m: dict[str, Any], systems: dict[str, Any]) -> str:
    rows = []
    for kind, got in m["kinds"].items():
        floor = got["rows"].get("floor", {})
        cells = [kind + (" (real crash)" if got["real_crash"] else " (announced)")]
        for key in ("floor", "janus-mp", "janus-mp/standby"):
            row = got["rows"].get(key, {})
            status = _status(row)
            if status:
                cells += [status[:20], ""] if key != "floor" else [status[:20]]
                continue
            cells.append(f"{_fmt(row['p50'], 2)} ({_fmt(row['p90'], 2)})")
            if key != "floor":
                cells.append(_ratio(row["p50"], floor.get("p50")))
        rows.append(cells)
    return _table("6. crash kinds: crash → replacement's first line of service code "
                  "(ms, p50 (p90))",
                  ["crash", "floor", "janus-mp", "× floor", "standby=1", "× floor"], rows,
                  f"one worker serves {m['run_seconds']:g} s then ends as named; backoff 0; "
                  f"{m['rounds']} round(s) of up to {m['samples_per_round']} samples or "
                  f"{m['budget_s']:g} s each, systems interleaved")


def _memory(m: dict[str, Any], systems: dict[str, Any]) -> str:
    idle, preload = m["idle"], m["preload"]
    floor_uss = _number(idle.get("floor"), "uss_per_worker_bytes")
    rows = []
    for key, row in idle.items():
        status = _status(row)
        rows.append([f"USS per idle worker: {_label(systems, key)}",
                     *([status] if status else [
                         _fmt(row["uss_per_worker_bytes"] / 2**20, 2),
                         _ratio(row["uss_per_worker_bytes"], floor_uss)])])
    gunicorn = _number(preload.get("gunicorn"), "pss_bytes")
    for key, row in preload.items():
        status = _status(row)
        rows.append([f"PSS of the whole tree, app preloaded: {_label(systems, key)}",
                     *([status] if status else [_fmt(row["pss_bytes"] / 2**20, 1),
                                                _ratio(row["pss_bytes"], gunicorn)])])
    return _table(f"7. memory (MiB): {m['workers']} idle workers; {m['preload_workers']} "
                  f"workers of a preloaded app ({m['preload_kind']})",
                  ["what", "MiB", "× floor / × gunicorn"], rows,
                  "USS: pages only that worker maps; PSS: every process of the tree, each "
                  "shared page divided among its sharers (a tree's PSS counts it once)")


_RENDERERS = {"restart": _restart, "shutdown": _shutdown, "idle": _idle, "scale": _scale,
              "storm": _storm, "crashes": _crashes, "memory": _memory}


# ── goals ────────────────────────────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class Goal:
    measurement: str
    name: str
    figure: str
    verdict: str  # PASS | MISS | n/a

    def as_dict(self) -> dict[str, str]:
        return {"measurement": self.measurement, "goal": self.name, "figure": self.figure,
                "verdict": self.verdict}


def goals(results: dict[str, Any]) -> list[Goal]:
    found = []
    if "restart" in results:
        found += _restart_goals(results["restart"]["rows"])
    if "shutdown" in results:
        found.append(_shutdown_goal(results["shutdown"]))
    if "idle" in results:
        found.append(_idle_goal(results["idle"]))
    if "scale" in results:
        found += _scale_goals(results["scale"])
    if "crashes" in results:
        found += _crash_goals(results["crashes"])
    if "memory" in results:
        found += _memory_goals(results["memory"])
    return found


def _number(row: dict[str, Any] | None, *path: str) -> float | None:
    value: Any = row
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if isinstance(value, (int, float)) and not math.isnan(value):
        return float(value)
    return None


def _goal_size(measured: int, goal: int) -> str:
    return "" if measured == goal else f" (the goal is for {goal:,})"


def _restart_goals(rows: dict[str, Any]) -> list[Goal]:
    floor = _number(rows.get("floor"), "p50")
    found = []
    for key, bound, what in (("janus-mp", 1.3, "backoff 0"),
                             ("janus-mp/standby", 0.3, "standby=1, backoff 0")):
        name = f"restart p50 ≤ {bound}× the floor ({what})"
        janus = _number(rows.get(key), "p50")
        if janus is None or floor is None:
            found.append(Goal("restart", name, "not measured", "n/a"))
            continue
        figure = f"{janus:.2f} ms = {janus / floor:.2f}× floor ({floor:.2f} ms)"
        gunicorn = _number(rows.get("gunicorn"), "p50")
        figure += "; gunicorn not measured" if gunicorn is None else \
            f"; gunicorn {gunicorn:.2f} ms"
        found.append(Goal("restart", name, figure, "PASS" if janus <= bound * floor else "MISS"))
    return found


def _shutdown_goal(m: dict[str, Any]) -> Goal:
    size = str(max(m["sizes"]))
    name = f"shutdown of {size} workers ≤ 1.5× the floor{_goal_size(int(size), 200)}"
    janus = _number(m["rows"].get("janus-mp"), size, "median_ms")
    floor = _number(m["rows"].get("floor"), size, "median_ms")
    if janus is None or floor is None:
        return Goal("shutdown", name, "not measured", "n/a")
    return Goal("shutdown", name, f"{janus:.1f} ms = {janus / floor:.2f}× floor ({floor:.1f} ms)",
                "PASS" if janus <= 1.5 * floor else "MISS")


def _idle_goal(m: dict[str, Any]) -> Goal:
    name = f"idle supervisor ≤ 1 wake-up per 10 s ({m['workers']} workers, {m['window_s']:g} s)"
    per10 = _number(m["rows"].get("janus-mp"), "wakeups_per_10s")
    if per10 is None:
        return Goal("idle", name, "not measured", "n/a")
    woke = m["rows"]["janus-mp"]["wakeups"]
    return Goal("idle", name, f"{woke} wake-ups = {per10:.2f} per 10 s",
                "PASS" if per10 <= 1 else "MISS")


def _scale_goals(m: dict[str, Any]) -> list[Goal]:
    size = _goal_size(m["workers"], 1000)
    janus, floor = m["rows"].get("janus-mp"), m["rows"].get("floor")
    found = []
    for key, what, bound, unit in (("ready_s", f"{m['workers']:,} workers ready", 1.5, "s"),
                                   ("rss_per_worker_bytes", "supervisor RSS per worker", 2.0,
                                    "KiB")):
        name = f"{what} ≤ {bound:g}× the floor{size}"
        ours, theirs = _number(janus, key), _number(floor, key)
        if ours is None or theirs is None or theirs <= 0:
            found.append(Goal("scale", name, "not measured", "n/a"))
            continue
        scale = 1024 if unit == "KiB" else 1
        figure = f"{ours / scale:.2f} {unit} = {ours / theirs:.2f}× floor " \
                 f"({theirs / scale:.2f} {unit})"
        found.append(Goal("scale", name, figure, "PASS" if ours <= bound * theirs else "MISS"))
    return found


def _crash_goals(m: dict[str, Any]) -> list[Goal]:
    found = []
    for kind, got in m["kinds"].items():
        floor = _number(got["rows"].get("floor"), "p50")
        standby_bound = 0.6 if got["real_crash"] else 0.3
        for key, bound, what in (("janus-mp", 1.3, "backoff 0"),
                                 ("janus-mp/standby", standby_bound, "standby=1")):
            name = f"{kind}: restart p50 ≤ {bound}× the floor's ({what})"
            janus = _number(got["rows"].get(key), "p50")
            if janus is None or floor is None:
                found.append(Goal("crashes", name, "not measured", "n/a"))
                continue
            found.append(Goal("crashes", name,
                              f"{janus:.2f} ms = {janus / floor:.2f}× floor ({floor:.2f} ms)",
                              "PASS" if janus <= bound * floor else "MISS"))
    return found


def _memory_goals(m: dict[str, Any]) -> list[Goal]:
    found = []
    name = "USS per worker ≤ 1.3× the floor's"
    ours = _number(m["idle"].get("janus-mp"), "uss_per_worker_bytes")
    floor = _number(m["idle"].get("floor"), "uss_per_worker_bytes")
    if ours is None or floor is None:
        found.append(Goal("memory", name, "not measured", "n/a"))
    else:
        found.append(Goal("memory", name, f"{ours / 2**20:.2f} MiB = {ours / floor:.2f}× floor "
                          f"({floor / 2**20:.2f} MiB)", "PASS" if ours <= 1.3 * floor else "MISS"))
    name = "preloaded app: total PSS ≤ 1.05× gunicorn --preload's"
    ours = _number(m["preload"].get("janus-mp"), "pss_bytes")
    gunicorn = _number(m["preload"].get("gunicorn"), "pss_bytes")
    if ours is None or gunicorn is None:
        found.append(Goal("memory", name, "not measured", "n/a"))
    else:
        found.append(Goal("memory", name, f"{ours / 2**20:.1f} MiB = {ours / gunicorn:.2f}× "
                          f"gunicorn ({gunicorn / 2**20:.1f} MiB)",
                          "PASS" if ours <= 1.05 * gunicorn else "MISS"))
    return found


def _goals(found: list[dict[str, str]], quick: bool) -> str:
    lines = ["goals" + (" (quick run: smaller counts and windows, indicative only)" if quick
                        else "")]
    for goal in found:
        lines.append(f"  [{goal['verdict']:<4}] {goal['goal']}: {goal['figure']}")
    return "\n".join(lines)


# ── files ────────────────────────────────────────────────────────────────────────────────────

def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=_json_default, allow_nan=False) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON: {value!r}")


def jsonable(value: Any) -> Any:
    """NaN has no JSON spelling: a figure that could not be computed is null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def write_chart(results: dict[str, Any], path: Path) -> str:
    """The restart latency distributions as ECDFs on a log axis. Returns what happened."""
    try:
        import matplotlib
    except ImportError:
        return "chart skipped: matplotlib is not installed (the bench extra has it)"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results.get("restart", {}).get("rows", {})
    series = {key: row["samples_ms"] for key, row in rows.items() if row.get("samples_ms")}
    if not series:
        return "chart skipped: no restart samples"
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=120)
    for key, samples in series.items():
        ordered = sorted(samples)
        # The empirical CDF as steps from 0: one sample still draws a visible riser.
        xs = [ordered[0], *ordered]
        fractions = [0.0, *((i + 1) / len(ordered) for i in range(len(ordered)))]
        label = f"{results['systems'][key]['label']} (n={len(ordered)}, " \
                f"p50 {rows[key]['p50']:.1f} ms)"
        ax.step(xs, fractions, where="post", label=label, linewidth=1.6)
    ax.set_xscale("log")
    ax.set_xlabel("crash → replacement's first line of service code (ms, log scale)")
    ax.set_ylabel("fraction of restarts ≤ x")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    meta = results["meta"]
    ax.set_title(f"Restart latency, one run ({meta['started']}, {meta['cpus']} CPUs"
                 f"{', quick' if meta['quick'] else ''})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return f"chart: {path}"
