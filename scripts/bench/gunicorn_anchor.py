"""gunicorn as documented: the default sync worker, ``--preload``, loopback only.

The worker behaviour comes from the ``post_worker_init`` server hook, the first code of ours a
sync worker runs (after its signal handlers, heartbeat file and preloaded app are set up):
restart/storm workers run workload.restart/storm there; idle workers record ``ready`` and return
into the sync worker's accept loop, which is gunicorn's idle state. A crash exits 1 (gunicorn
halts the arbiter only on 3, a boot error, and 4, an app load error).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from common import BENCH_DIR, Launch, Scenario

CONFIG = '''\
# gunicorn configuration for the janus-mp benchmark (written by scripts/bench/gunicorn_anchor.py).
import sys
sys.path.insert(0, {bench_dir!r})  # workload.py: the worker code every system runs
import workload

bind = ["127.0.0.1:0"]            # loopback only, an ephemeral port
workers = {workers}
worker_class = "sync"             # the default worker class, spelled out
preload_app = True                # --preload: the app is imported once, workers fork from it
control_socket = {control!r}      # the default socket, moved into the run's temp dir: by
                                  # default it is one fixed path per user ($XDG_RUNTIME_DIR or
                                  # ~/.gunicorn/gunicorn.ctl), which concurrent runs would share
# Everything else at its default: timeout 30 s, graceful_timeout 30 s, loglevel info (stderr).


def post_worker_init(worker):     # the worker's first line of service code
    {hook}
'''

HOOKS = {
    "restart": "workload.restart({events!r})",
    "storm": "workload.storm({events!r})",
    "idle": "workload.record({events!r}, 'ready')  # then back into the accept loop",
    "preload": "workload.record({events!r}, 'ready')  # then back into the accept loop",
}


class Gunicorn:
    key = "gunicorn"
    label = "gunicorn --preload (sync)"

    def missing(self) -> str | None:
        return None if importlib.util.find_spec("gunicorn") else "not installed"

    def version(self) -> str:
        from importlib.metadata import version

        return f"gunicorn {version('gunicorn')}"

    def launch(self, scenario: Scenario, workdir: Path) -> Launch:
        events = str(scenario.events)
        config = CONFIG.format(bench_dir=str(BENCH_DIR), workers=scenario.workers,
                               control=str(workdir / "gunicorn.ctl"),
                               hook=HOOKS[scenario.mode].format(events=events))
        path = workdir / "gunicorn.conf.py"
        path.write_text(config)
        app = "preload_app:wsgi_app" if scenario.mode == "preload" else "workload:wsgi_app"
        return Launch([sys.executable, "-m", "gunicorn", "--config", str(path), app],
                      cwd=workdir)
