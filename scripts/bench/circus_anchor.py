"""circus at its defaults: one watcher, ``numprocesses`` workers, loopback endpoints.

Workers are programs (fork+exec of ``python workload.py MODE EVENTS``). circus reaps and
respawns from a periodic callback every ``check_delay`` (5 s by default) and does not act on
SIGCHLD, so its restart latency is that period, not a mechanism cost.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from common import BENCH_DIR, Launch, Scenario, free_loopback_port

CONFIG = """\
; circus configuration for the janus-mp benchmark (written by scripts/bench/circus_anchor.py).
; circus's parser takes no inline comments and reads indented lines as continuations: every
; comment here stands on its own line.
[circus]
; the default, spelled out: the arbiter's reap-and-respawn period
check_delay = 5
; the default host with free ports (the default 5555 and 5556 may be taken on a shared machine)
endpoint = tcp://127.0.0.1:{control}
pubsub_endpoint = tcp://127.0.0.1:{pubsub}
; off: by default circusd binds UDP 0.0.0.0:12027 and joins the multicast group 237.219.251.97
; for cluster auto-discovery; an empty value disables it
multicast_endpoint =
; statsd and httpd: off by default

[watcher:worker]
cmd = {python}
args = {workload} {mode} {events}
numprocesses = {workers}
; respawn = true, copy_env = false, graceful_timeout = 30, max_retry = 5: defaults
"""


class Circus:
    key = "circus"
    label = "circus"

    def missing(self) -> str | None:
        return None if importlib.util.find_spec("circus") else "not installed"

    def version(self) -> str:
        from importlib.metadata import version

        return f"circus {version('circus')}"

    def launch(self, scenario: Scenario, workdir: Path) -> Launch:
        config = CONFIG.format(control=free_loopback_port(), pubsub=free_loopback_port(),
                               python=sys.executable, workload=BENCH_DIR / "workload.py",
                               mode=scenario.mode, events=scenario.events,
                               workers=scenario.workers)
        path = workdir / "circus.ini"
        path.write_text(config)
        return Launch([sys.executable, "-m", "circus.circusd", str(path)], cwd=workdir)
