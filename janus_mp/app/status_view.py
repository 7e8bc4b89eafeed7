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
        out.append([svc["name"], "", svc["phase"], f"{svc['ready']}/{svc['desired']}",
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
    lines += stack_dump_lines(data.get("recent_exits") or [])
    return "\n".join(lines)


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


def run_top(fetch: Callable[[], dict[str, Any]], interval: float, once: bool) -> None:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.table import Table

    def frame() -> Group:
        data = fetch()
        sup = data.get("supervisor", {})
        table = Table(title=f"janus-mp · pid {data['pid']} · {data['state']} · up "
                            f"{data['uptime_secs']:.0f}s · supervisor CPU "
                            f"{_cpu(sup.get('cpu_percent'))} RSS {_mb(sup.get('rss_bytes'))}",
                      expand=True)
        for header in HEADERS:
            table.add_column(header, no_wrap=header != "LAST")
        for row in rows(data):
            table.add_row(*row, style="bold" if row[0] else None)
        history = Table(title="recent exits", expand=True)
        for header in ("WHEN", "SERVICE", "WORKER", "PID", "REASON", "UPTIME"):
            history.add_column(header)
        for exit_ in reversed(data.get("recent_exits", [])[-8:]):
            history.add_row(time.strftime("%H:%M:%S", time.localtime(exit_["at"])),
                            exit_["service"], str(exit_["worker"]), str(exit_["pid"]),
                            exit_["reason"], f"{exit_['uptime_secs']:.1f}s")
        return Group(table, history)

    console = Console()
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
