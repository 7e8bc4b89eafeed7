"""Rendering one lifecycle event (a JSON object from the `events` stream) as a line."""

from __future__ import annotations

import time
from typing import Any


def render_event(item: dict[str, Any]) -> str:
    if "lost" in item:
        return f"-- {item['lost']} events lost: this client fell behind --"
    at = item.get("at")
    when = (time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"
            if isinstance(at, (int, float)) else "?")
    who = item.get("service", "")
    if item.get("slot") is not None:
        who += f"[{item['slot']}]"
    if item.get("group"):
        who = f"group {item['group']}"
    parts = [when, str(item.get("event", "?")).ljust(18), who]
    if item.get("pid") is not None:
        parts.append(f"pid {item['pid']}")
    if item.get("exit_code") is not None:
        parts.append(f"exit {item['exit_code']}")
    if item.get("reason_text"):
        parts.append(str(item["reason_text"]))
    if item.get("delay") is not None:
        parts.append(f"restart in {item['delay']:.2f}s")
    if item.get("members"):
        parts.append("members " + ",".join(item["members"]))
    if item.get("message"):
        parts.append(str(item["message"]))
    return "  ".join(parts)
