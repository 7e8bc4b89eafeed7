"""Chaos run: random SIGKILLs at a steady rate against a supervisor doing counted work.

    python scripts/chaos.py [--duration 60] [--rate 20] [--json scripts/results/chaos.json]

3 services x 4 workers; each work unit increments a prometheus Counter, then acknowledges the
unit by appending one byte to its own file. A killer SIGKILLs a random live worker `rate` times
a second. Afterwards it checks, and prints:
  - every kill appears as a restart (janus_supervisor_restarts_total == kills);
  - the summed worker counter vs the work acknowledged: a kill can land between the increment
    and its acknowledgement, so counted - acknowledged must be in [0, kills] (anything outside
    means counts were lost or invented);
  - no zombies; the supervisor's open fds and RSS back to their baseline within 5%;
  - every process of the tree gone after shutdown.
The breaker is off and backoff short (the kills are the point, not what the breaker does).
Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from janus_mp.osproc import descendants, parent_pid, process_state  # noqa: E402

SUPERVISOR = """
import os, sys, time
from prometheus_client import Counter
from janus_mp import *
from janus_mp.app.deploy import Deployment
ACKS, PORT_FILE, SOCKET = sys.argv[1], sys.argv[2], sys.argv[3]
WORK = Counter("chaos_work_units", "units of work done", ["service"])

def work(ctx):
    ctx.ready()
    fd = os.open(os.path.join(ACKS, f"{ctx.service}-{os.getpid()}"),
                 os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    while not ctx.shutdown.is_cancelled():
        sum(i * i for i in range(2000))      # a little CPU per unit
        WORK.labels(ctx.service).inc()
        os.write(fd, b"x")                   # the acknowledgement
        ctx.heartbeat()

sup = JanusSupervisor(SupervisorConfig(metrics_port=0, shutdown_timeout=5, kill_timeout=2,
    backoff=BackoffConfig(initial_delay=0.001, max_delay=0.05, max_retries=0)))
for name in ("alpha", "beta", "gamma"):
    sup.spawn_service(work, SpawnOptions(name=name, workers=4))
def publish():
    with open(PORT_FILE, "w") as f:
        f.write(str(sup.metrics_port))
sup.call_later(0.0, publish)
sys.exit(Deployment(sup, socket_path=SOCKET).run())
"""


def children(pid: int) -> list[int]:
    return [p for p in descendants(pid) if parent_pid(p) == pid]


def state(pid: int) -> str | None:
    return process_state(pid)


def title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def total(body: str, metric: str) -> float:
    pattern = re.compile(rf"^{metric}(\{{[^}}]*\}})? (\S+)$", re.M)
    return sum(float(m.group(2)) for m in pattern.finditer(body))


def workers_of(sup: int) -> list[int]:
    return [p for p in children(sup) if state(p) not in (None, "Z") and " worker " in title(p)]


def wait_for(condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"chaos: timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=20.0, help="kills per second")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="janus-chaos-"))
    acks, port_file, sock = tmp / "acks", tmp / "port", str(tmp / "ctl.sock")
    acks.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(acks), str(port_file), sock],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stderr=subprocess.DEVNULL, start_new_session=True)
    result: dict[str, object] = {}
    try:
        port = int(wait_for(lambda: port_file.exists() and port_file.read_text(), 20, "port"))
        wait_for(lambda: len(workers_of(proc.pid)) == 12, 20, "12 workers")
        time.sleep(1.0)  # let the supervisor settle before taking its baseline
        base_fds, base_rss = fd_count(proc.pid), rss_kb(proc.pid)
        kills = 0
        killed: set[int] = set()  # a pid is killed once: it stays R/S for a moment while dying
        interval = 1.0 / args.rate
        start = next_kill = time.monotonic()
        while time.monotonic() - start < args.duration:
            next_kill += interval
            live = [p for p in workers_of(proc.pid) if p not in killed]
            if live:
                victim = rng.choice(live)
                try:
                    os.kill(victim, signal.SIGKILL)
                    killed.add(victim)
                    kills += 1
                except ProcessLookupError:
                    pass
            time.sleep(max(0.0, next_kill - time.monotonic()))
        elapsed = time.monotonic() - start
        wait_for(lambda: len(workers_of(proc.pid)) == 12, 30, "the pools to refill")
        try:
            body = wait_for(lambda: (b := scrape(port)) and
                            total(b, "janus_supervisor_restarts_total") >= kills and b, 30,
                            "every kill to be restarted")
        except SystemExit:
            restarted = total(scrape(port), "janus_supervisor_restarts_total")
            print(f"kills {kills}, restarts {restarted}")
            raise
        time.sleep(1.0)
        body = scrape(port)
        restarts = total(body, "janus_supervisor_restarts_total")
        zombies = [p for p in children(proc.pid) if state(p) == "Z"]
        fds, rss = fd_count(proc.pid), rss_kb(proc.pid)
        # Stop the work (the supervisor stays up), so counts and acks are both final.
        from janus_mp.app.control import call

        for name in ("alpha", "beta", "gamma"):
            call(sock, "stop", service=name)
        wait_for(lambda: not workers_of(proc.pid), 30, "the workers to stop")
        counted = total(scrape(port), "chaos_work_units_total")
        acked = sum(p.stat().st_size for p in acks.iterdir())
        tree = [proc.pid, *children(proc.pid)]
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(30)
        time.sleep(0.5)
        leftovers = [p for p in tree if state(p) not in (None, "Z")]
        checks = {
            "every kill restarted": restarts == kills,
            "no count lost": 0 <= counted - acked <= kills,
            "no zombies": not zombies,
            "fds back to baseline (5%)": abs(fds - base_fds) <= max(1, 0.05 * base_fds),
            "RSS back to baseline (5%)": abs(rss - base_rss) <= 0.05 * base_rss,
            "clean exit, nothing left": status == 0 and not leftovers,
        }
        result = {
            "duration_s": round(elapsed, 1), "kills": kills,
            "kills_per_s": round(kills / elapsed, 1),
            "restarts_total": restarts, "zombies": len(zombies),
            "counted_at_last_scrape": counted, "acknowledged_total": acked,
            "fds_baseline": base_fds, "fds_after": fds, "rss_kb_baseline": base_rss,
            "rss_kb_after": rss, "exit_status": status, "leftovers": leftovers,
            "checks": checks,
        }
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    checks = result.pop("checks", {})
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    for name, ok in checks.items():  # type: ignore[attr-defined]
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**result, "checks": checks}, indent=1))
    return 0 if checks and all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
