"""Persistent connections: janus-mp's threaded WSGI engine against gunicorn's gthread worker,
the same app, worker count, threads and keepalive, in one run.

    python scripts/bench_http_keepalive.py [--quick] [--workers 2] [--threads 4]
        [--handler-ms 1] [--duration 6] [--rounds 3] [--connections 16] [--idle 200]

Systems, interleaved round by round (the machine is shared and noisy; read the medians and
the ratios measured in the same run):
    janus-mp         janus-mp run --wsgi ... --threads T --keep-alive K (--keepalive, 2 s)
    gunicorn-gthread gunicorn -k gthread --threads T --keep-alive K
    janus-mp-close   janus-mp with --keep-alive 0: a new connection per request (the anchor
                     showing what persistence saves)
Load: wrk (keeps its connections open) when installed, else a Python generator in its own
process holding one persistent http.client connection per client thread. ``--idle N`` also
holds N idle persistent connections open during the run (each made one request first; give a
``--keepalive`` longer than the run, else both servers close them after K seconds): with
janus-mp they wait in the poller, not in a request thread, so the throughput should not drop.
The exit status is 1 only when a system failed to produce numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

import bench_http  # noqa: E402
import bench_http_app  # noqa: E402

SYSTEMS = ("janus-mp", "gunicorn-gthread", "janus-mp-close")


def command(system: str, workers: int, threads: int, port: int,
            keepalive: float) -> list[str] | None:
    bindir = Path(sys.executable).parent
    if system.startswith("janus-mp"):
        keepalive_flag = "0" if system == "janus-mp-close" else f"{keepalive:g}"
        return [str(bindir / "janus-mp"), "run", "--wsgi", "bench_http_app:app", "-w",
                str(workers), "--threads", str(threads), "--keep-alive", keepalive_flag,
                "--bind", f"127.0.0.1:{port}", "--metrics-bind", "off", "--socket", "off",
                "--log-level", "warning"]
    gunicorn = shutil.which("gunicorn", path=f"{bindir}:{os.environ.get('PATH', '')}")
    if gunicorn is None:
        return None
    return [gunicorn, "-w", str(workers), "-k", "gthread", "--threads", str(threads),
            "--keep-alive", f"{keepalive:g}", "-b", f"127.0.0.1:{port}", "--log-level", "warning",
            "bench_http_app:app"]


def run_python_load(port: int, duration: float, connections: int) -> dict[str, Any]:
    """Fallback generator: one thread per client, each on one persistent connection
    (reconnecting only when the server closes it)."""
    code = f"""
import http.client, threading, time, json
deadline = time.monotonic() + {duration}
lat, errors, lock = [], [0], threading.Lock()
def client():
    conn = http.client.HTTPConnection("127.0.0.1", {port}, timeout=10)
    while time.monotonic() < deadline:
        began = time.perf_counter()
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            ok = response.status == 200 and response.read() == b"done\\n"
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
        with lock:
            if ok: lat.append(time.perf_counter() - began)
            else: errors[0] += 1
    conn.close()
threads = [threading.Thread(target=client) for _ in range({connections})]
[t.start() for t in threads]; [t.join() for t in threads]
lat.sort()
print(json.dumps({{"rps": len(lat) / {duration}, "p50_ms": lat[len(lat)//2] * 1000,
                  "p99_ms": lat[int(len(lat) * .99)] * 1000, "errors": str(errors[0] or "")}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=duration + 60).stdout
    return dict(json.loads(out))


def hold_idle(port: int, count: int, stack: ExitStack) -> int:
    """Open ``count`` connections that each make one request and then stay idle; how many
    are still open (the server may close idle ones after its keepalive)."""
    held = 0
    for _ in range(count):
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        if sock.recv(4096).startswith(b"HTTP/1.1 200"):
            held += 1
    return held


def measure(system: str, args: argparse.Namespace, env: dict[str, str],
            load: Any) -> dict[str, Any]:
    port = bench_http.free_port()
    argv = command(system, args.workers, args.threads, port, args.keepalive)
    if argv is None:
        return {"status": "not installed"}
    with tempfile.TemporaryFile() as log, ExitStack() as idle:
        proc = subprocess.Popen(argv, cwd=SCRIPTS, env=env, stdout=log, stderr=log,
                                start_new_session=True)
        try:
            bench_http.wait_answering(port, proc)
            load(port, min(1.0, args.duration), args.connections)  # warm-up
            held = hold_idle(port, args.idle, idle) if args.idle else 0
            return {"status": "ok", "idle_held": held,
                    **load(port, args.duration, args.connections)}
        except Exception as exc:
            log.seek(0)
            tail = log.read()[-600:].decode(errors="replace").strip()
            return {"status": f"failed: {exc}" + (f" ({tail})" if tail else "")}
        finally:
            idle.close()
            bench_http.stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s: a smoke run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--handler-ms", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--idle", type=int, default=0)
    parser.add_argument("--keepalive", type=float, default=2.0,
                        help="keepalive seconds of both servers (gunicorn's default: 2)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds = 2.0, 1
    iterations = bench_http.calibrate(args.handler_ms)
    env = {**os.environ, "BENCH_HTTP_ITERATIONS": str(iterations),
           "PYTHONPATH": os.pathsep.join([str(SCRIPTS), os.environ.get("PYTHONPATH", "")])}
    wrk = shutil.which("wrk")
    load = bench_http.run_wrk if wrk else run_python_load
    generator = "wrk -t1 (persistent)" if wrk else "python http.client threads (persistent)"
    handler_ms = 1000 * min(bench_http._time(bench_http_app.work, iterations) for _ in range(5))
    print(f"handler: {iterations} iterations ~ {handler_ms:.2f} ms "
          f"of CPU; load: {generator}, {args.connections} connections"
          f"{f' + {args.idle} idle' if args.idle else ''}, {args.duration:g} s x "
          f"{args.rounds} rounds; {args.workers} workers x {args.threads} threads, "
          f"keepalive {args.keepalive:g} s; "
          f"{os.cpu_count()} CPUs", flush=True)
    samples: dict[str, list[dict[str, Any]]] = {}
    for round_no in range(args.rounds):
        for system in SYSTEMS if round_no % 2 == 0 else reversed(SYSTEMS):
            result = measure(system, args, env, load)
            samples.setdefault(system, []).append(result)
            print(f"  round {round_no + 1}: {system:16} "
                  + (f"{result['rps']:8.1f} req/s p50 {result['p50_ms']:.2f} ms "
                     f"p99 {result['p99_ms']:.2f} ms idle opened {result['idle_held']} "
                     f"{result['errors']}" if result["status"] == "ok" else result["status"]),
                  flush=True)
    summary: dict[str, dict[str, float]] = {}
    for system, runs in samples.items():
        ok = [r for r in runs if r["status"] == "ok"]
        if ok:
            summary[system] = {key: statistics.median(r[key] for r in ok)
                               for key in ("rps", "p50_ms", "p99_ms")}
    print("\nmedians              req/s    p50 ms   p99 ms   vs gunicorn-gthread")
    anchor = summary.get("gunicorn-gthread")
    for system in SYSTEMS:
        row = summary.get(system)
        if row is None:
            print(f"  {system:16} (no numbers)")
            continue
        ratio = f"{row['rps'] / anchor['rps']:.2f}x" if anchor else "-"
        print(f"  {system:16} {row['rps']:9.1f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f}   "
              f"{ratio}")
    if "janus-mp" in summary and "janus-mp-close" in summary:
        print(f"  keep-alive vs a connection per request (janus-mp): "
              f"{summary['janus-mp']['rps'] / summary['janus-mp-close']['rps']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"iterations": iterations, "generator": generator,
                                         "args": vars(args) | {"json": str(args.json)},
                                         "samples": samples, "summary": summary}, indent=1))
    failed = [s for s, runs in samples.items()
              if any(r["status"].startswith("failed") for r in runs)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
