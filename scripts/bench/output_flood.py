"""Restart latency of one service while another floods its stdout (issue 16).

    python scripts/bench/output_flood.py [--rate-mb 50] [--restarts 20] [--seconds-between 0.3]

Starts `janus-mp run` with two services: ``flood`` writes RATE MB/s of 100-byte lines to its
stdout (paced in 64 KiB writes), ``victim`` notes "start <monotonic_ns> <pid>" and waits. The
script SIGKILLs the victim worker RESTARTS times and measures from the kill to the replacement's
first line of Python (CLOCK_MONOTONIC is system-wide, so the stamps compare directly); once
without the flood, once with it. Also prints the flood's achieved rate, the lines the
supervisor dropped (janus_supervisor_log_lines_dropped_total) and the supervisor's peak RSS.
The victim's backoff starts at 0 s, so the latency is the supervisor's own.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]

SERVICES = '''
import os, time

def flood(ctx):
    rate = float(os.environ["FLOOD_RATE"])
    block = (b"f" * 99 + b"\\n") * 655          # 65,500 bytes
    interval = len(block) / rate
    written, started = 0, time.monotonic()
    next_at = started
    while not ctx.shutdown.is_cancelled():
        os.write(1, block)
        written += len(block)
        next_at += interval
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if written % (len(block) * 200) == 0:
            with open(os.environ["FLOOD_STATS"], "w") as f:
                f.write(f"{written} {time.monotonic() - started}\\n")

def victim(ctx):
    with open(os.environ["EVENTS"], "a") as f:
        f.write(f"start {time.monotonic_ns()} {os.getpid()}\\n")
    ctx.shutdown.wait()
'''

CONFIG = '''
[supervisor]
shutdown_timeout = 2
kill_timeout = 1
metrics_port = {port}
log_dir = "{logs}"
log_max_bytes = "50MiB"
log_backups = 1

[services.victim]
target = "floodmod:victim"
restart = "always"
[services.victim.backoff]
initial_delay = 0.0
max_delay = 0.0
max_retries = 0
{flood}
'''

FLOOD = '''
[services.flood]
target = "floodmod:flood"
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def starts(events: Path) -> list[tuple[int, int]]:
    if not events.exists():
        return []
    out = []
    for line in events.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "start":
            out.append((int(parts[1]), int(parts[2])))
    return out


def replacement_of(events: Path, seen: int):  # type: ignore[no-untyped-def]
    return lambda: len(starts(events)) > seen and starts(events)[-1]


def wait_for(condition, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.001)
    raise SystemExit("timed out")


def run(with_flood: bool, rate: float, restarts: int, between: float) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="janus-flood-"))
    (tmp / "floodmod.py").write_text(textwrap.dedent(SERVICES))
    port = free_port()
    (tmp / "bench.toml").write_text(CONFIG.format(port=port, logs=tmp / "logs",
                                                  flood=FLOOD if with_flood else ""))
    events, stats = tmp / "events", tmp / "flood_stats"
    env = dict(os.environ, PYTHONPATH=f"{tmp}:{ROOT}", EVENTS=str(events),
               FLOOD_STATS=str(stats), FLOOD_RATE=str(rate * 1e6))
    log = open(tmp / "supervisor.log", "w")  # noqa: SIM115 - closed when the run ends
    proc = subprocess.Popen([sys.executable, "-m", "janus_mp", "run", "-c", "bench.toml",
                             "--socket", str(tmp / "ctl.sock")], cwd=tmp, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    supervisor = psutil.Process(proc.pid)
    latencies: list[float] = []
    peak_rss = 0
    try:
        wait_for(lambda: starts(events))
        if with_flood:
            wait_for(lambda: stats.exists())
        for _ in range(restarts):
            known = starts(events)
            _, pid = known[-1]
            time.sleep(between)
            peak_rss = max(peak_rss, supervisor.memory_info().rss)
            killed_at = time.monotonic_ns()
            os.kill(pid, signal.SIGKILL)
            new = wait_for(replacement_of(events, len(known)))
            latencies.append((new[0] - killed_at) / 1e6)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        dropped = sum(float(line.split()[-1]) for line in metrics.decode().splitlines()
                      if line.startswith("janus_supervisor_log_lines_dropped_total{"))
        achieved = None
        if with_flood:
            written, seconds = stats.read_text().split()
            achieved = int(written) / float(seconds) / 1e6
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        log.close()
    latencies.sort()
    return {"flood": with_flood, "median_ms": statistics.median(latencies),
            "p90_ms": latencies[int(len(latencies) * 0.9) - 1], "max_ms": latencies[-1],
            "flood_mb_s": achieved, "dropped_lines": dropped,
            "supervisor_peak_rss_mib": peak_rss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate-mb", type=float, default=50.0)
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--seconds-between", type=float, default=0.3)
    args = parser.parse_args()
    for with_flood in (False, True):
        result = run(with_flood, args.rate_mb, args.restarts, args.seconds_between)
        print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
