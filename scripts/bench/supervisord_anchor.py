"""supervisord as documented: one ``[program]`` with ``numprocs`` workers, in the foreground.

Workers are programs (fork+exec of ``python workload.py MODE EVENTS``), supervisord's model.
No ``[unix_http_server]`` or ``[inet_http_server]`` section: it listens on nothing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from common import BENCH_DIR, Launch, Scenario

CONFIG = """\
; supervisord configuration for the janus-mp benchmark
; (written by scripts/bench/supervisord_anchor.py). No server sections: nothing listens.
[supervisord]
nodaemon=true                  ; stay in the foreground: the benchmark owns the process
logfile={workdir}/supervisord.log
pidfile={workdir}/supervisord.pid
childlogdir={workdir}          ; per-worker stdout/stderr logs (AUTO, the default)

[program:worker]
command={python} {workload} {mode} {events}
numprocs={workers}
process_name=%(program_name)s_%(process_num)03d
autorestart=true               ; restart on any exit (the default, "unexpected", does the same
                               ; for exit 1 with exitcodes=0)
startsecs=0                    ; NECESSARY: with the default 1 s a worker that serves 0.2 s
                               ; "exited too quickly", goes to BACKOFF and, after startretries=3,
                               ; FATAL; 0 says it was up from the start
; stopsignal=TERM, stopwaitsecs=10, startretries=3: defaults
"""


class Supervisord:
    key = "supervisord"
    label = "supervisord"

    def missing(self) -> str | None:
        return None if importlib.util.find_spec("supervisor") else "not installed"

    def version(self) -> str:
        from importlib.metadata import version

        return f"supervisor {version('supervisor')}"

    def launch(self, scenario: Scenario, workdir: Path) -> Launch:
        config = CONFIG.format(workdir=workdir, python=sys.executable,
                               workload=BENCH_DIR / "workload.py", mode=scenario.mode,
                               events=scenario.events, workers=scenario.workers)
        path = workdir / "supervisord.conf"
        path.write_text(config)
        return Launch([sys.executable, "-m", "supervisor.supervisord", "-c", str(path)],
                      cwd=workdir)
