"""HTTP throughput: the same CPU-bound WSGI app under janus-mp and gunicorn, in one run.

    python scripts/bench_http.py [--quick] [--workers 1,2] [--duration 8] [--rounds 3]
                                 [--connections 16] [--json PATH]

Each request does ~5 ms of pure-Python work (calibrated once here, then fixed for every system
through BENCH_HTTP_ITERATIONS). janus-mp runs ``janus-mp run --wsgi`` (its sync engine);
gunicorn runs its default sync worker; same worker count, same port type, same load generator:
wrk (Debian's ``wrk`` package) when installed, else a Python generator in its own process.
Systems are interleaved round by round, because the machine is shared and noisy; the medians
and the ratios are what the figures mean. Goals (issue 5): janus-mp >= gunicorn req/s at equal
workers, and >= 1.8x from 1 to 2 workers on a 2-core machine. Goals are reported, not enforced;
the exit status is 1 only when a system failed to produce numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench_http_app  # noqa: E402


def calibrate(target_ms: float = 5.0) -> int:
    iterations = 20000
    for _ in range(3):
        best = min(_time(bench_http_app.work, iterations) for _ in range(5))
        iterations = max(1000, int(iterations * target_ms / 1000 / best))
    return iterations


def _time(fn: Any, arg: int) -> float:
    began = time.perf_counter()
    fn(arg)
    return time.perf_counter() - began


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CANDIDATES = ("waitress", "cheroot")


def command(system: str, workers: int, port: int) -> list[str] | None:
    bindir = Path(sys.executable).parent
    if system in CANDIDATES:
        try:
            __import__(system)
        except ImportError:
            return None
        return [sys.executable, str(SCRIPTS / "bench_http_candidate.py"), system, str(workers),
                str(port)]
    if system == "janus-mp":
        return [str(bindir / "janus-mp"), "run", "--wsgi", "bench_http_app:app", "-w",
                str(workers), "--bind", f"127.0.0.1:{port}", "--metrics-bind", "off",
                "--socket", "off", "--log-level", "warning"]
    gunicorn = shutil.which("gunicorn", path=f"{bindir}:{os.environ.get('PATH', '')}")
    if gunicorn is None:
        return None
    return [gunicorn, "-w", str(workers), "-b", f"127.0.0.1:{port}", "--log-level", "warning",
            "bench_http_app:app"]


def wait_answering(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before answering")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"not answering on port {port} after {timeout:g} s")


def run_wrk(port: int, duration: float, connections: int) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {q: _ms(m.group(1)) for q in ("50", "99")
               if (m := re.search(rf"\s{q}%\s+([\d.]+\w+)", out))}
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": latency.get("50"), "p99_ms": latency.get("99"),
            "errors": (errors.group(1) if errors else "") +
                      (f" non-2xx {non2xx.group(1)}" if non2xx else "")}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_python_load(port: int, duration: float, connections: int) -> dict[str, Any]:
    """Fallback generator: its own process, one thread per connection, HTTP/1.0 requests."""
    code = f"""
import socket, threading, time, json
deadline = time.monotonic() + {duration}
lat, errors, lock = [], [0], threading.Lock()
def client():
    while time.monotonic() < deadline:
        began = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", {port}), timeout=10) as s:
                s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            ok = data.startswith(b"HTTP/1.") and b" 200 " in data[:16]
        except OSError:
            ok = False
        with lock:
            if ok: lat.append(time.perf_counter() - began)
            else: errors[0] += 1
threads = [threading.Thread(target=client) for _ in range({connections})]
[t.start() for t in threads]; [t.join() for t in threads]
lat.sort()
print(json.dumps({{"rps": len(lat) / {duration}, "p50_ms": lat[len(lat)//2] * 1000,
                  "p99_ms": lat[int(len(lat) * .99)] * 1000, "errors": str(errors[0] or "")}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=duration + 60).stdout
    return json.loads(out)


def measure(system: str, workers: int, args: argparse.Namespace, env: dict[str, str],
            load: Any) -> dict[str, Any]:
    port = free_port()
    argv = command(system, workers, port)
    if argv is None:
        return {"status": "not installed"}
    with tempfile.TemporaryFile() as log:  # read only on failure; a pipe could fill and block
        proc = subprocess.Popen(argv, cwd=SCRIPTS, env=env, stdout=log, stderr=log,
                                start_new_session=True)
        try:
            wait_answering(port, proc)
            load(port, min(1.0, args.duration), args.connections)  # warm-up
            return {"status": "ok", **load(port, args.duration, args.connections)}
        except Exception as exc:
            log.seek(0)
            tail = log.read()[-600:].decode(errors="replace").strip()
            return {"status": f"failed: {exc}" + (f" ({tail})" if tail else "")}
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s: a smoke run")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--candidates", action="store_true",
                        help="also measure waitress and cheroot (1 thread per worker) on a "
                             "shared socket: how the engine was chosen")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds, args.connections = 2.0, 1, 8
    worker_counts = [int(w) for w in args.workers.split(",")]
    iterations = calibrate()
    env = {**os.environ, "BENCH_HTTP_ITERATIONS": str(iterations),
           "PYTHONPATH": os.pathsep.join([str(SCRIPTS), os.environ.get("PYTHONPATH", "")])}
    load = run_wrk if shutil.which("wrk") else run_python_load
    generator = "wrk -t1" if shutil.which("wrk") else "python threads (wrk not installed)"
    handler_ms = 1000 * min(_time(bench_http_app.work, iterations) for _ in range(5))
    print(f"handler: {iterations} iterations = {handler_ms:.2f} ms of CPU; load: {generator}, "
          f"{args.connections} connections, {args.duration:g} s x {args.rounds} rounds; "
          f"{os.cpu_count()} CPUs", flush=True)
    systems = ("janus-mp", "gunicorn", *(CANDIDATES if args.candidates else ()))
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for round_no in range(args.rounds):
        for workers in worker_counts:
            for system in systems if round_no % 2 == 0 else reversed(systems):
                result = measure(system, workers, args, env, load)
                samples.setdefault((system, workers), []).append(result)
                print(f"  round {round_no + 1}: {system:9} w={workers}: "
                      + (f"{result['rps']:7.1f} req/s p50 {result['p50_ms']:.1f} ms "
                         f"p99 {result['p99_ms']:.1f} ms {result['errors']}"
                         if result["status"] == "ok" else result["status"]), flush=True)
    summary = summarise(samples, worker_counts, systems)
    print_summary(summary, worker_counts, systems)
    if args.json:
        args.json.write_text(json.dumps({"handler_ms": handler_ms, "iterations": iterations,
                                         "generator": generator, "args": vars(args) | {
                                             "json": str(args.json)},
                                         "samples": {f"{s}/{w}": v for (s, w), v in
                                                     samples.items()},
                                         "summary": summary}, indent=1))
    failed = [key for key, runs in samples.items() if key[0] == "janus-mp" and
              any(r["status"] != "ok" for r in runs)]
    failed += [key for key, runs in samples.items() if key[0] != "janus-mp" and
               any(r["status"].startswith("failed") for r in runs)]
    return 1 if failed else 0


def summarise(samples: dict[tuple[str, int], list[dict[str, Any]]], worker_counts: list[int],
              systems: tuple[str, ...]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for system in systems:
        for workers in worker_counts:
            ok = [r for r in samples.get((system, workers), []) if r["status"] == "ok"]
            if ok:
                summary[f"{system}/{workers}"] = {
                    "rps": statistics.median(r["rps"] for r in ok),
                    "p50_ms": statistics.median(r["p50_ms"] for r in ok),
                    "p99_ms": statistics.median(r["p99_ms"] for r in ok)}
    return summary


def print_summary(summary: dict[str, Any], worker_counts: list[int],
                  systems: tuple[str, ...]) -> None:
    print("\nmedians             req/s     p50 ms   p99 ms   janus/gunicorn req/s")
    for workers in worker_counts:
        for system in systems:
            row = summary.get(f"{system}/{workers}")
            if row is None:
                print(f"  {system:9} w={workers}   (no numbers)")
                continue
            ratio = ""
            other = summary.get(f"gunicorn/{workers}")
            if system == "janus-mp" and other:
                ratio = f"{row['rps'] / other['rps']:.2f}x  (goal >= 1.00)"
            print(f"  {system:9} w={workers} {row['rps']:9.1f} {row['p50_ms']:9.1f} "
                  f"{row['p99_ms']:8.1f}   {ratio}")
    if len(worker_counts) >= 2:
        low, high = worker_counts[0], worker_counts[-1]
        for system in systems:
            a, b = summary.get(f"{system}/{low}"), summary.get(f"{system}/{high}")
            if a and b:
                goal = "  (goal >= 1.80)" if system == "janus-mp" and (low, high) == (1, 2) \
                    else ""
                print(f"  scaling {system:9} w={low}->{high}: {b['rps'] / a['rps']:.2f}x{goal}")


if __name__ == "__main__":
    sys.exit(main())
