"""Core benchmark: restart latency and shutdown time, janus-mp beside the raw fork floor.

    python scripts/bench_core.py [--restarts 200] [--workers 50] [--repeat 5] [--json out.json]

Restart latency: a worker runs ~0.2 s, records ``crash <t>`` and exits 1; its replacement
records ``start <t>`` at its first line of service code. Latency = start - crash, CLOCK_MONOTONIC
(system-wide on Linux). Systems:
  floor        one process: Process(target=work).start(); join(); repeat   (multiprocess, fork)
  janus-mp/0   janus-mp, one worker, backoff delay zero (the mechanism alone)
Shutdown: N idle cooperative workers; time from SIGTERM to the supervisor process's exit.
  floor        N processes waiting on one multiprocess Event; SIGTERM -> set(), join all
  janus-mp     N workers in ctx.shutdown.wait()
Every system runs in its own process, in the same run, alternating, so the ratios compare like
with like on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RESTART_FLOOR = """
import os, sys, time, multiprocess as mp
EVENTS = sys.argv[1]; N = int(sys.argv[2])
def record(word):
    fd = os.open(EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT); os.write(fd, f"{word} {time.monotonic()}\\n".encode()); os.close(fd)
def work():
    record("start"); time.sleep(0.2); record("crash"); sys.exit(1)
ctx = mp.get_context("fork")
for _ in range(N + 1):
    p = ctx.Process(target=work); p.start(); p.join()
"""

RESTART_JANUS = """
import os, sys, time
from janus_mp import *
EVENTS = sys.argv[1]; N = int(sys.argv[2])
def record(word):
    fd = os.open(EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT); os.write(fd, f"{word} {time.monotonic()}\\n".encode()); os.close(fd)
def work(ctx):
    record("start")
    if ctx.generation > N:
        sup_pid = os.getppid(); os.kill(sup_pid, 15); ctx.shutdown.wait(); return
    time.sleep(0.2); record("crash"); sys.exit(1)
sup = JanusSupervisor(SupervisorConfig(shutdown_timeout=5))
sup.spawn_service(work, SpawnOptions(backoff=BackoffConfig(initial_delay=0, max_delay=0, max_retries=0)))
sys.exit(sup.run_until_shutdown())
"""

SHUTDOWN_FLOOR = """
import os, sys, time, signal, multiprocess as mp
READY = sys.argv[1]; N = int(sys.argv[2])
ctx = mp.get_context("fork")
stop = ctx.Event()
def work(stop):
    fd = os.open(READY, os.O_WRONLY | os.O_APPEND | os.O_CREAT); os.write(fd, b"r\\n"); os.close(fd)
    stop.wait()
procs = [ctx.Process(target=work, args=(stop,)) for _ in range(N)]
for p in procs: p.start()
signal.sigwait({signal.SIGTERM})
stop.set()
for p in procs: p.join()
"""

SHUTDOWN_JANUS = """
import os, sys
from janus_mp import *
READY = sys.argv[1]; N = int(sys.argv[2])
def idle(ctx):
    fd = os.open(READY, os.O_WRONLY | os.O_APPEND | os.O_CREAT); os.write(fd, b"r\\n"); os.close(fd)
    ctx.shutdown.wait()
sup = JanusSupervisor(SupervisorConfig())
sup.spawn_service(idle, SpawnOptions(workers=N))
sys.exit(sup.run_until_shutdown())
"""


def run_script(source: str, *args: str, timeout: float = 300.0) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if "SHUTDOWN_FLOOR" in source or "sigwait" in source:
        pass
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(source), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True,
                            preexec_fn=_block_sigterm if "sigwait" in source else None)


def _block_sigterm() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def restart_latencies(source: str, restarts: int, tmp: Path) -> list[float]:
    events = tmp / f"events-{time.monotonic_ns()}"
    proc = run_script(source, str(events), str(restarts))
    try:
        proc.wait(restarts * 2 + 60)
    finally:
        _cleanup(proc)
    lines = [line.split() for line in events.read_text().splitlines()]
    samples, crash_at = [], None
    for word, stamp in lines:
        if word == "crash":
            crash_at = float(stamp)
        elif word == "start" and crash_at is not None:
            samples.append((float(stamp) - crash_at) * 1000)
            crash_at = None
    return samples


def shutdown_time(source: str, workers: int, tmp: Path) -> float:
    ready = tmp / f"ready-{time.monotonic_ns()}"
    proc = run_script(source, str(ready), str(workers))
    try:
        deadline = time.monotonic() + 120
        while _count_lines(ready) < workers:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("workers never became ready")
            time.sleep(0.01)
        time.sleep(0.5)  # let the last workers settle into their wait
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        return (time.monotonic() - t0) * 1000
    finally:
        _cleanup(proc)


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _cleanup(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=200)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        floor: list[float] = []
        janus: list[float] = []
        chunk = max(1, args.restarts // 4)
        for _ in range(4):  # alternate in chunks so drifts in machine load hit both alike
            floor += restart_latencies(RESTART_FLOOR, chunk, tmp)
            janus += restart_latencies(RESTART_JANUS, chunk, tmp)
        print(f"restart latency, crash -> replacement's first line (ms), n={len(janus)}")
        print(f"{'system':<14}{'p50':>9}{'p90':>9}{'p99':>9}{'x floor p50':>13}")
        for name, samples in (("floor", floor), ("janus-mp/0", janus)):
            print(f"{name:<14}{pct(samples, .5):9.2f}{pct(samples, .9):9.2f}"
                  f"{pct(samples, .99):9.2f}{pct(samples, .5) / pct(floor, .5):13.2f}")
        results["restart_ms"] = {"floor": floor, "janus_zero_backoff": janus}
        floor_stop, janus_stop = [], []
        for _ in range(args.repeat):
            floor_stop.append(shutdown_time(SHUTDOWN_FLOOR, args.workers, tmp))
            janus_stop.append(shutdown_time(SHUTDOWN_JANUS, args.workers, tmp))
        print(f"\nshutdown, SIGTERM -> supervisor exit with {args.workers} idle workers (ms), "
              f"n={args.repeat}")
        print(f"{'system':<14}{'median':>9}{'min':>9}{'max':>9}{'x floor':>10}")
        for name, samples in (("floor", floor_stop), ("janus-mp", janus_stop)):
            med = statistics.median(samples)
            print(f"{name:<14}{med:9.1f}{min(samples):9.1f}{max(samples):9.1f}"
                  f"{med / statistics.median(floor_stop):10.2f}")
        results["shutdown_ms"] = {"workers": args.workers, "floor": floor_stop,
                                  "janus": janus_stop}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
