"""Runs one supervisor scenario in its own process, driven by the test over two pipes.

argv: scenario.py cmd_fd reply_fd. The scenario module defines ``build(sup)`` and may define
``CONFIG`` (a SupervisorConfig). Commands are JSON lines: {"op": "snapshot"} and so on; each gets
one JSON reply line. Nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import sys
import threading
from typing import Any

from janus_mp import JanusSupervisor, SupervisorConfig


def main() -> None:
    path, cmd_fd, reply_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    spec = importlib.util.spec_from_file_location("scenario", path)
    assert spec is not None and spec.loader is not None
    scenario = importlib.util.module_from_spec(spec)
    sys.modules["scenario"] = scenario
    spec.loader.exec_module(scenario)
    # RNG: a scenario that asserts on a restart delay fixes the jitter (a full-jitter draw of 0
    # restarts at once, with no backing_off step in between).
    sup = JanusSupervisor(getattr(scenario, "CONFIG", SupervisorConfig()),
                          rng=getattr(scenario, "RNG", None))
    scenario.build(sup)
    replies = os.fdopen(reply_fd, "w", buffering=1)
    lock = threading.Lock()

    def reply(obj: Any) -> None:
        with lock:
            replies.write(json.dumps(obj) + "\n")

    def serve() -> None:
        with os.fdopen(cmd_fd) as commands:
            for line in commands:
                request = json.loads(line)
                try:
                    reply({"ok": True, "result": _execute(sup, request)})
                except Exception as exc:
                    reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})

    threading.Thread(target=serve, daemon=True, name="test-control").start()
    status = sup.run_until_shutdown()
    reply({"exit": status})
    sys.exit(status)


def _execute(sup: JanusSupervisor, request: dict[str, Any]) -> Any:
    op = request["op"]
    if op == "snapshot":
        return sup.snapshot().to_dict()
    if op == "metrics":
        return _plain(sup.metrics_snapshot())
    if op == "scale":
        return sup.scale(request["service"], request["workers"])
    if op == "stop":
        return sup.stop_service(request["service"])
    if op == "start":
        return sup.start_service(request["service"])
    if op == "restart":
        return sup.restart_service(request["service"])
    if op == "shutdown":
        return sup.shutdown(request.get("status", 0))
    if op == "wedge":  # block the supervisor loop for a while, as a bug would
        import time
        seconds = float(request["seconds"])
        sup.call_later(0.0, lambda: time.sleep(seconds))
        return None
    if op == "port":
        return sup.metrics_port
    if op == "listening":
        return list(sup.listening_addresses(request["service"]))
    if op == "exits":
        return sup.recent_exits()
    if op == "signal":
        return sup.handle_signal(request["signum"])
    raise ValueError(f"unknown op {op}")


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict) or hasattr(obj, "items"):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


if __name__ == "__main__":
    main()
