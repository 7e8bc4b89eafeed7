"""Where should workers be forked from? The candidate sources of a fork, measured side by side.

    python scripts/bench_fork_sources.py [--quick] [--app-mb 100] [--state-mb 30] [--samples 40]

Each candidate holds the same preloaded app (scripts/bench/preload_app.py, ``--app-mb``):

    supervisor   fork from a process that also holds the supervisor's own state (``--state-mb``
                 of tables: dicts and lists) and two idle threads, as janus-mp forks today
    zygote       fork from a small process started by exec that imported the app and nothing
                 else, asked over a socketpair (one byte in, the pid back)
    forkserver   multiprocess's forkserver with the app in its preload list (a zygote with
                 multiprocess's protocol: a pickled Process, fds passed over a unix socket)

Per candidate: request → the child's first line (p50, ms); the child's ``os._exit`` → its pidfd
readable in the asking process (p50, ms: the teardown the supervisor waits for after a real
crash); USS of an idle child (MiB: what a worker costs on its own). Ratios are to "supervisor".
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent / "bench"
STAMP = struct.Struct("q")

ZYGOTE = r'''
import os, signal, socket, struct, sys, time
sys.path.insert(0, sys.argv[1])
import preload_app  # the app, and nothing of a supervisor
sock = socket.socket(fileno=int(sys.argv[2]))
stamps = int(sys.argv[3])
while True:
    req = sock.recv(1)
    if not req:
        os._exit(0)
    try:  # reap the last ones (their pidfds were watched from outside)
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
    pid = os.fork()
    if pid == 0:
        sock.close()
        os.write(stamps, struct.pack("q", time.monotonic_ns()))
        if req == b"x":
            os.write(stamps, struct.pack("q", time.monotonic_ns()))
            os._exit(0)
        signal.pause()
        os._exit(0)
    sock.send(struct.pack("i", pid))
'''


def _uss(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return sum(int(line.split()[1]) * 1024 for line in f
                   if line.startswith(("Private_Clean:", "Private_Dirty:")))


def _child_in_parent(stamps_w: int, leave: bool) -> None:
    os.write(stamps_w, STAMP.pack(time.monotonic_ns()))
    if leave:
        os.write(stamps_w, STAMP.pack(time.monotonic_ns()))
        os._exit(0)
    import signal

    signal.pause()
    os._exit(0)


def _read_stamp(fd: int) -> int:
    return int(STAMP.unpack(os.read(fd, STAMP.size))[0])


def _exit_seen(pid: int, stamps_r: int) -> tuple[int, int]:
    """Open the pidfd, then wait for the child's exit stamp and for the pidfd."""
    pidfd = os.pidfd_open(pid)
    try:
        left = _read_stamp(stamps_r)
        select.select([pidfd], [], [])
        return left, time.monotonic_ns()
    finally:
        os.close(pidfd)


def measure_supervisor(samples: int, state_mb: int) -> dict[str, float]:
    state = [{"k": i, "v": [i, i, i]} for i in range(state_mb * 2**20 // 330)]
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    stamps_r, stamps_w = os.pipe()
    boot, teardown = [], []
    for _ in range(samples):
        began = time.monotonic_ns()
        pid = os.fork()
        if pid == 0:
            _child_in_parent(stamps_w, True)
        pidfd = os.pidfd_open(pid)
        boot.append(_read_stamp(stamps_r) - began)
        left = _read_stamp(stamps_r)
        select.select([pidfd], [], [])
        teardown.append(time.monotonic_ns() - left)
        os.close(pidfd)
        os.waitpid(pid, 0)
    pid = os.fork()
    if pid == 0:
        _child_in_parent(stamps_w, False)
    _read_stamp(stamps_r)
    uss = _uss(pid)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    stop.set()
    del state
    return _row(boot, teardown, uss)


def measure_zygote(samples: int) -> dict[str, float]:
    ours, theirs = socket.socketpair()
    stamps_r, stamps_w = os.pipe()
    zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(BENCH), str(theirs.fileno()),
                               str(stamps_w)],
                              pass_fds=(theirs.fileno(), stamps_w), stdin=subprocess.DEVNULL)
    theirs.close()
    os.close(stamps_w)
    boot, teardown = [], []
    try:
        for i in range(samples + 1):
            began = time.monotonic_ns()
            ours.send(b"x")
            first = _read_stamp(stamps_r)
            pid = struct.unpack("i", ours.recv(4))[0]
            if i:  # the first fork pays for the zygote's import-time state: not a sample
                boot.append(first - began)
            left, seen = _exit_seen(pid, stamps_r)
            if i:
                teardown.append(seen - left)
        ours.send(b"s")
        _read_stamp(stamps_r)
        pid = struct.unpack("i", ours.recv(4))[0]
        uss = _uss(pid)
        os.kill(pid, 9)
    finally:
        ours.close()
        zygote.wait(10)
    return _row(boot, teardown, uss)


def measure_forkserver(samples: int) -> dict[str, float]:
    import multiprocess as mp
    import multiprocess.connection

    sys.path.insert(0, str(BENCH))
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["preload_app"])
    stamps_r, stamps_w = os.pipe()
    writer = mp.connection.Connection(stamps_w, readable=False)  # travels as a passed fd
    boot, teardown = [], []
    for i in range(samples + 1):
        began = time.monotonic_ns()
        proc = ctx.Process(target=_forkserver_child, args=(writer, True))
        proc.start()
        first = _read_stamp(stamps_r)
        if i:
            boot.append(first - began)
        left = _read_stamp(stamps_r)
        select.select([proc.sentinel], [], [])
        if i:
            teardown.append(time.monotonic_ns() - left)
        proc.join()
    proc = ctx.Process(target=_forkserver_child, args=(writer, False))
    proc.start()
    _read_stamp(stamps_r)
    uss = _uss(proc.pid)
    proc.kill()
    proc.join()
    return _row(boot, teardown, uss)


def _forkserver_child(writer: object, leave: bool) -> None:
    _child_in_parent(writer.fileno(), leave)  # type: ignore[attr-defined]


def _row(boot: list[int], teardown: list[int], uss: int) -> dict[str, float]:
    return {"boot_ms": statistics.median(boot) / 1e6,
            "teardown_ms": statistics.median(teardown) / 1e6 if teardown else float("nan"),
            "uss_mib": uss / 2**20, "n": len(boot)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few samples, a 20 MB app")
    parser.add_argument("--app-mb", type=int, default=100)
    parser.add_argument("--state-mb", type=int, default=30)
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    if args.quick:
        args.app_mb, args.samples = 20, 5
    os.environ["BENCH_PRELOAD_MB"] = str(args.app_mb)
    rows = {"forkserver": measure_forkserver(args.samples),
            "zygote": measure_zygote(args.samples)}
    sys.path.insert(0, str(BENCH))
    import preload_app  # the supervisor candidate holds the app too (imported after the
    # others started, so their processes do not inherit it)

    rows["supervisor"] = measure_supervisor(args.samples, args.state_mb)
    ref = rows["supervisor"]
    print(f"fork sources: app {preload_app.KIND}; supervisor state {args.state_mb} MB; "
          f"{args.samples} samples; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"  {'source':<11} {'request→first line ms':>22} {'×':>6} {'exit→pidfd ms':>14} "
          f"{'×':>6} {'idle child USS MiB':>19} {'×':>6}")
    for name in ("supervisor", "zygote", "forkserver"):
        row = rows[name]
        print(f"  {name:<11} {row['boot_ms']:>22.2f} {row['boot_ms'] / ref['boot_ms']:>5.2f}× "
              f"{row['teardown_ms']:>14.2f} {row['teardown_ms'] / ref['teardown_ms']:>5.2f}× "
              f"{row['uss_mib']:>19.2f} {row['uss_mib'] / ref['uss_mib']:>5.2f}×")


if __name__ == "__main__":
    main()
