"""The floor: what raw ``multiprocess`` (fork) costs with no supervisor logic at all.

    restart/storm  keep N processes alive: wait on their sentinels, join the dead, fork anew
                   (with one worker: fork, wait, repeat — the fork-and-wait loop)
    idle           N processes wait on one Event; SIGTERM (sigwait) → set it → join them all
    crash:KIND     restart, ending in workload.crash's KIND
    preload        idle, after importing preload_app (the app workers inherit)

Harness side: :class:`Floor` builds the command. Supervisor side: this file run as a program,
``python floor.py MODE EVENTS WORKERS``.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path

from common import BENCH_DIR, Launch, Scenario


class Floor:
    key = "floor"
    label = "floor (multiprocess fork)"

    def missing(self) -> str | None:
        return None if importlib.util.find_spec("multiprocess") else "not installed"

    def version(self) -> str:
        from importlib.metadata import version

        return f"multiprocess {version('multiprocess')}"

    def launch(self, scenario: Scenario, workdir: Path) -> Launch:
        return Launch([sys.executable, str(BENCH_DIR / "floor.py"), scenario.mode,
                       str(scenario.events), str(scenario.workers)], cwd=workdir)


# ── the supervisor side ──────────────────────────────────────────────────────────────────────

def keep_alive(mode: str, events: str, workers: int) -> None:
    import multiprocess as mp
    import workload
    from multiprocess.connection import wait

    if mode.startswith("crash:"):
        target, args = workload.crash, (events, mode.partition(":")[2])
    else:
        target, args = {"restart": workload.restart, "storm": workload.storm}[mode], (events,)
    ctx = mp.get_context("fork")
    alive = {}
    for _ in range(workers):
        proc = ctx.Process(target=target, args=args)
        proc.start()
        alive[proc.sentinel] = proc
    while True:  # until the harness stops us (SIGTERM: default action)
        for sentinel in wait(list(alive)):
            alive.pop(sentinel).join()
            proc = ctx.Process(target=target, args=args)
            proc.start()
            alive[proc.sentinel] = proc


def idle(events: str, workers: int) -> None:
    import multiprocess as mp
    import workload

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # before any fork
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    workload.record(events, "begin")
    procs = [ctx.Process(target=workload.idle, args=(events, stop.wait)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    signal.sigwait({signal.SIGTERM})
    stop.set()
    for proc in procs:
        proc.join()


def main(argv: list[str]) -> None:
    mode, events, workers = argv[0], argv[1], int(argv[2])
    if mode == "preload":
        import preload_app  # noqa: F401 - imported for its memory: the app workers inherit
    if mode in ("idle", "preload"):
        idle(events, workers)
    else:
        keep_alive(mode, events, workers)


if __name__ == "__main__":
    main(sys.argv[1:])
