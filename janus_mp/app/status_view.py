"""Rendering a status reply: a plain table for `status`, a live rich view for `top`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1_048_576:.1f}M"


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def rows(data: dict[str, Any]) -> list[list[str]]:
    out = []
    for svc in data["services"]:
        reason = svc.get("termination_reason") or {}
        listening = " ".join(svc.get("listening") or ())
        last = reason.get("text", "") if reason else (svc.get("last_error") or "")
        phase = svc["phase"] if svc.get("started", True) else "not started"
        out.append([svc["name"], "", phase, f"{svc['ready']}/{svc['desired']}",
                    str(svc["restarts"]), svc["breaker"], listening, "", "",
                    svc.get("waiting") or last])
        for w in svc["workers"]:
            procs = w.get("processes") or []
            cpu = sum(p["cpu_percent"] or 0 for p in procs) if procs else None
            rss = sum(p["rss_bytes"] or 0 for p in procs) if procs else None
            last = "" if w["last_exit_code"] is None else f"exit {w['last_exit_code']}"
            out.append(["", str(w["worker"]), w["phase"], f"gen {w['generation']}",
                        str(w["restarts"]), "", " ".join(str(p) for p in w["pids"]),
                        _cpu(cpu), _mb(rss), w.get("last_error") or last])
        standby = svc.get("standby") or {}
        if standby.get("wanted") or standby.get("parked") or standby.get("booting"):
            parked, booting = standby.get("parked", []), standby.get("booting", [])
            out.append(["", "standby", "standby", f"{len(parked)}/{standby['wanted']} parked",
                        "", "", " ".join(str(p) for p in parked + booting), "", "",
                        f"{len(booting)} booting" if booting else ""])
    return out


HEADERS = ["SERVICE", "WORKER", "PHASE", "READY/GEN", "RESTARTS", "BREAKER", "PIDS", "CPU",
           "RSS", "LAST"]


def render_text(data: dict[str, Any]) -> str:
    table = [HEADERS, *rows(data)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
    lines = [f"supervisor pid {data['pid']}  {data['state']}  up {data['uptime_secs']:.0f}s"]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip() for row in table]
    lines += [f"group {g['name']}  {g['strategy']}  {g['phase']}  restarts {g['restarts']} "
              f"(max {g['max_restarts']} in {g['within']:g}s)  members {', '.join(g['members'])}"
              for g in data.get("groups", ())]
    lines += pool_lines(data.get("pools") or {})
    lines += stack_dump_lines(data.get("recent_exits") or [])
    return "\n".join(lines)


def pool_lines(pools: dict[str, Any]) -> list[str]:
    """One line per hosted task pool: its queue, its busy workers, its outcomes so far."""
    lines = []
    for name, pool in sorted(pools.items()):
        outcomes = "  ".join(f"{outcome} {count}" for outcome, count in pool["outcomes"].items())
        lines.append(f"pool {name}  queued {pool['queued']}  running {pool['running']}  "
                     f"workers {pool['workers']}  {outcomes}")
    return lines


def stack_dump_lines(exits: list[dict[str, Any]]) -> list[str]:
    """The newest stack dump among the recent exits (a stuck worker's, taken before its
    SIGKILL), indented under a heading naming the worker."""
    dumped = [e for e in exits if e.get("stack_dump")]
    if not dumped:
        return []
    last = dumped[-1]
    when = time.strftime("%H:%M:%S", time.localtime(last["at"]))
    heading = (f"stack dump of {last['service']}[{last['worker']}] (pid {last['pid']}, "
               f"{last['reason']}, {when}):")
    return ["", heading, *("  " + line for line in str(last["stack_dump"]).splitlines())]


#: `top`'s columns from the one kept longest to the one dropped first in a narrow terminal.
KEEP_ORDER = ("SERVICE", "PHASE", "WORKER", "READY/GEN", "PIDS", "CPU", "RSS", "RESTARTS",
              "LAST", "BREAKER")
EXIT_HEADERS = ["WHEN", "SERVICE", "WORKER", "PID", "REASON", "UPTIME"]
EXIT_KEEP_ORDER = ("SERVICE", "REASON", "WHEN", "WORKER", "PID", "UPTIME")
POOL_HEADERS = ["POOL", "QUEUED", "RUNNING", "WORKERS", "OUTCOMES"]
POOL_KEEP_ORDER = ("POOL", "QUEUED", "RUNNING", "OUTCOMES", "WORKERS")
#: A column as rich draws it: one space of padding each side and a rule.
_COLUMN_EDGES = 3
#: Long cells are shortened with an ellipsis down to this before any column is dropped.
_SHORTENED = {"LAST": 12, "PIDS": 16, "REASON": 16, "SERVICE": 16}


def fitting_columns(table: list[list[str]], width: int, headers: list[str] = HEADERS,
                    keep_order: tuple[str, ...] = KEEP_ORDER) -> list[tuple[int, int]]:
    """(index, width) of the columns that fit ``width`` columns of terminal, in display
    order: the least useful go first (``keep_order``), the first two always stay; a long cell
    is cut (with an ellipsis) before a column is dropped for it."""
    widths = [max([len(headers[i]), *(len(row[i]) for row in table)])
              for i in range(len(headers))]
    shortest = [min(w, _SHORTENED.get(h, w)) for h, w in zip(headers, widths, strict=True)]
    kept = [headers.index(name) for name in keep_order]
    while len(kept) > 2 and sum(shortest[i] + _COLUMN_EDGES for i in kept) + 1 > width:
        kept.pop()
    # the room left lengthens the shortened cells again, in keep_order, up to their content
    spare = width - 1 - sum(shortest[i] + _COLUMN_EDGES for i in kept)
    given = {i: shortest[i] for i in kept}
    for i in kept:
        extra = max(0, min(spare, widths[i] - shortest[i]))
        given[i] += extra
        spare -= extra
    return [(i, given[i]) for i in sorted(kept)]


def top_frame(data: dict[str, Any], width: int) -> Any:
    """One frame of `top` for a terminal ``width`` columns wide: no line longer than that."""
    from rich.console import Group

    sup = data.get("supervisor", {})
    title = (f"janus-mp · pid {data['pid']} · {data['state']} · up "
             f"{data['uptime_secs']:.0f}s · supervisor CPU "
             f"{_cpu(sup.get('cpu_percent'))} RSS {_mb(sup.get('rss_bytes'))}")
    exits = [[time.strftime("%H:%M:%S", time.localtime(e["at"])), e["service"],
              str(e["worker"]), str(e["pid"]), e["reason"], f"{e['uptime_secs']:.1f}s"]
             for e in reversed(data.get("recent_exits", [])[-8:])]
    services = _table(title, HEADERS, rows(data), width, KEEP_ORDER, bold_first=True)
    history = _table("recent exits", EXIT_HEADERS, exits, width, EXIT_KEEP_ORDER)
    pools = data.get("pools") or {}
    if not pools:
        return Group(services, history)
    pool_rows = [[name, str(pool["queued"]), str(pool["running"]), str(pool["workers"]),
                  "  ".join(f"{k} {v}" for k, v in pool["outcomes"].items() if v)]
                 for name, pool in sorted(pools.items())]
    return Group(services, _table("task pools", POOL_HEADERS, pool_rows, width, POOL_KEEP_ORDER),
                 history)


def _table(title: str, headers: list[str], table_rows: list[list[str]], width: int,
           keep_order: tuple[str, ...], bold_first: bool = False) -> Any:
    from rich.table import Table

    table = Table(title=title)
    columns = fitting_columns(table_rows, width, headers, keep_order)
    for i, column_width in columns:  # widths settled here: rich only draws them
        table.add_column(headers[i], no_wrap=True, overflow="ellipsis", width=column_width)
    for row in table_rows:
        table.add_row(*(row[i] for i, _ in columns),
                      style="bold" if bold_first and row[0] else None)
    return table


def run_top(fetch: Callable[[], dict[str, Any]], interval: float, once: bool) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console()  # its width follows the terminal (or $COLUMNS), resizes included

    def frame() -> Any:
        return top_frame(fetch(), console.width)

    if once:
        console.print(frame())
        return
    with Live(frame(), console=console, refresh_per_second=4, screen=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(frame())
        except KeyboardInterrupt:
            pass


def readiness(data: dict[str, Any]) -> tuple[bool, str]:
    """`status --check`: the verdict ``/readyz`` gives (core/readiness.py), and one line."""
    from janus_mp.core.readiness import readiness as verdict

    answer = verdict(data)
    started = [svc for svc in data["services"] if svc.get("started", True)]
    return answer.ready, answer.line(len(started), sum(svc["ready"] for svc in started))
