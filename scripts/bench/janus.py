"""janus-mp under test, as its own process, through its public API only.

    backoff "zero"      BackoffConfig(initial_delay=0, max_delay=0, max_retries=0): the restart
                        mechanism alone
    backoff "defaults"  BackoffConfig(max_retries=0): the default exponential backoff with full
                        jitter, the circuit breaker off so a crash loop is not ended by it

    backoff "standby"   "zero" plus SpawnOptions(standby=1): a parked standby is promoted
                        instead of forking the replacement

Everything else is at its default: SupervisorConfig() (30 s cooperative grace, fork, signal
handlers, orphan reaping), SpawnOptions(restart=ALWAYS). The working tree's janus_mp is put first
on PYTHONPATH, so the benchmark measures this checkout.

Modes beyond workload.py's: ``crash:KIND`` (workload.crash), ``preload`` (idle workers under a
supervisor that imported preload_app first, as a preloaded app would be).

Harness side: :class:`Janus`. Supervisor side: this file run as a program,
``python janus.py MODE EVENTS WORKERS BACKOFF``.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import BENCH_DIR, ROOT, Launch, Scenario

BACKOFFS = ("zero", "defaults", "standby")
KEYS = {"zero": "janus-mp", "defaults": "janus-mp/defaults", "standby": "janus-mp/standby"}
LABELS = {"zero": "janus-mp (backoff 0)", "defaults": "janus-mp (default backoff)",
          "standby": "janus-mp (standby=1, backoff 0)"}


@functools.cache
def _probe(pythonpath: str) -> tuple[bool, str]:
    """Can the benchmark's Python import janus_mp? (True, version) or (False, the error)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import janus_mp; janus_mp.JanusSupervisor; "
                               "print(janus_mp.__version__)"],
        env=dict(os.environ, PYTHONPATH=pythonpath), capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return False, (probe.stderr.strip().splitlines() or ["?"])[-1]
    return True, probe.stdout.strip()


class Janus:
    def __init__(self, backoff: str = "zero") -> None:
        assert backoff in BACKOFFS, backoff
        self.backoff = backoff
        self.key = KEYS[backoff]
        self.label = LABELS[backoff]

    def _env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        return dict(os.environ, PYTHONPATH=path)

    def missing(self) -> str | None:
        ok, text = _probe(self._env()["PYTHONPATH"])
        return None if ok else f"janus_mp not importable: {text}"

    def version(self) -> str:
        return f"janus-mp {_probe(self._env()['PYTHONPATH'])[1]} (working tree)"

    def launch(self, scenario: Scenario, workdir: Path) -> Launch:
        return Launch([sys.executable, str(BENCH_DIR / "janus.py"), scenario.mode,
                       str(scenario.events), str(scenario.workers), self.backoff],
                      cwd=workdir, env=self._env())


# ── the supervisor side ──────────────────────────────────────────────────────────────────────

def main(argv: list[str]) -> int:
    import workload

    from janus_mp import (
        BackoffConfig,
        JanusService,
        JanusSupervisor,
        RestartPolicy,
        SpawnOptions,
        SupervisorConfig,
    )

    mode, events, workers, backoff = argv[0], argv[1], int(argv[2]), argv[3]
    if mode == "preload":
        import preload_app  # noqa: F401 - imported for its memory: the app workers inherit

    class Workload(JanusService):
        name = "bench"

        def run(self, ctx: Any) -> None:
            if mode in ("idle", "preload"):
                ctx.ready()
                workload.idle(events, ctx.shutdown.wait)
            elif mode == "restart":
                workload.restart(events)
            elif mode.startswith("crash:"):
                workload.crash(events, mode.partition(":")[2])
            else:
                workload.storm(events)

    if backoff == "defaults":
        policy = BackoffConfig(max_retries=0)
    else:
        policy = BackoffConfig(initial_delay=0.0, max_delay=0.0, max_retries=0,
                               clean_restart_delay=0.0)
    sup = JanusSupervisor(SupervisorConfig(max_workers=max(1024, workers)))
    workload.record(events, "begin")
    sup.spawn_service(Workload(), SpawnOptions(workers=workers, restart=RestartPolicy.ALWAYS,
                                               backoff=policy,
                                               standby=1 if backoff == "standby" else 0))
    return sup.run_until_shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
