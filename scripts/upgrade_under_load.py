"""`janus-mp upgrade` under load: how many requests were sent and failed, how long it took.

    .venv/bin/python scripts/upgrade_under_load.py [--workers 2] [--clients 4] [--upgrades 3]

Starts `janus-mp run --wsgi` on a small WSGI app in a temporary directory, keeps CLIENTS threads
sending requests (a new connection each, no keep-alive), rewrites the app and runs
`janus-mp upgrade` UPGRADES times, each time waiting for the old supervisor to exit, then prints
the requests sent and failed and, per upgrade, the time from the command to the new supervisor
being ready and to the old one being gone.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
APP = '''
def app(environ, start_response):
    body = {text!r}
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--upgrades", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="janus-upgrade-") as tmp:
        run(Path(tmp), args.workers, args.clients, args.upgrades)


def janus(tmp: Path, *argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "janus_mp", *argv], cwd=tmp, text=True,
                          capture_output=True, env=_env(), check=False, **kwargs)  # type: ignore[call-overload]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")


def run(tmp: Path, workers: int, clients: int, upgrades: int) -> None:
    (tmp / "webapp.py").write_text(APP.format(text=b"version 0"))
    with open(tmp / "run.log", "w") as log:
        measure(tmp, log, workers, clients, upgrades)


def measure(tmp: Path, log: IO[str], workers: int, clients: int, upgrades: int) -> None:
    sock = str(tmp / "ctl.sock")
    proc = subprocess.Popen([sys.executable, "-m", "janus_mp", "run", "--wsgi", "webapp:app",
                             "-b", "127.0.0.1:0", "-w", str(workers), "--socket", sock,
                             "--metrics-bind", "off", "--shutdown-timeout", "10"],
                            cwd=tmp, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    port = 0
    deadline = time.monotonic() + 30
    while not port:
        match = re.search(r"listening on 127.0.0.1:(\d+)", (tmp / "run.log").read_text())
        if match and janus(tmp, "status", "--socket", sock).returncode == 0:
            port = int(match.group(1))
        elif time.monotonic() > deadline or proc.poll() is not None:
            sys.exit(f"janus-mp did not start:\n{(tmp / 'run.log').read_text()}")
        else:
            time.sleep(0.1)
    bodies: Counter[bytes] = Counter()
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/", headers={"Connection": "close"})
                response = conn.getresponse()
                body = response.read()
                with lock:
                    if response.status == 200:
                        bodies[body] += 1
                    else:
                        failures.append(f"HTTP {response.status}")
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # a benchmark's warm-up, not synchronisation
    old_pid = proc.pid
    try:
        for n in range(1, upgrades + 1):
            (tmp / "webapp.py").write_text(APP.format(text=f"version {n}".encode()))
            started = time.monotonic()
            result = janus(tmp, "upgrade", "--socket", sock, timeout=180)
            if result.returncode != 0:
                sys.exit(f"upgrade {n} failed: {result.stderr.strip()}")
            new_pid = int(re.search(r"supervisor pid (\d+) serves", result.stdout).group(1))
            ready = float(re.search(r"ready in ([\d.]+)s", result.stdout).group(1))
            answered = time.monotonic() - started
            while os.path.exists(f"/proc/{old_pid}") and _state(old_pid) != "Z":
                time.sleep(0.01)
            gone = time.monotonic() - started
            if old_pid == proc.pid:
                proc.wait()
            text = (tmp / "run.log").read_text()
            drain = _stamp(text, rf"\[{old_pid}\] INFO janus_mp.supervisor: janus-mp: supervisor "
                           "stopped") - _stamp(text, rf"\[{old_pid}\] INFO janus_mp.upgrade: "
                                               "upgrade: supervisor pid \\d+ is ready")
            print(f"upgrade {n}: pid {old_pid} -> {new_pid}: the new one ready {ready:.2f}s "
                  f"after it was started, the old one drained and stopped {drain:.2f}s later; "
                  f"`janus-mp upgrade` answered after {answered:.2f}s (its own start "
                  f"included), old pid gone {gone:.2f}s after the command")
            old_pid = new_pid
            time.sleep(1.0)  # load on the new version before the next upgrade
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        janus(tmp, "shutdown", "--socket", sock)
        while os.path.exists(f"/proc/{old_pid}") and _state(old_pid) != "Z":
            time.sleep(0.05)
    sent = sum(bodies.values()) + len(failures)
    print(f"requests: {sent} sent, {len(failures)} failed; by response: "
          f"{ {k.decode(): v for k, v in sorted(bodies.items())} }")
    for failure in failures[:10]:
        print(f"  failed: {failure}")


def _stamp(text: str, pattern: str) -> float:
    """The time of the first log line matching ``pattern``, in seconds of the day."""
    match = re.search(r"^\S+ (\d+):(\d+):(\d+),(\d+) " + pattern, text, re.MULTILINE)
    if match is None:
        return float("nan")
    h, m, sec, ms = (int(g) for g in match.groups())
    return h * 3600 + m * 60 + sec + ms / 1000


def _state(pid: int) -> str:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return ""
    return data[data.rfind(b")") + 2:][:1].decode()


if __name__ == "__main__":
    main()
