"""What every measurement shares: statistics, the event log, deadlines and owned process trees.

    system module ──► Launch (argv, cwd, env) ──► supervised() ──► Supervised
                                                        │  own session, log file, pidfd
    workers ──► EventLog file ("start <ns> <pid>") ◄── wait_until(...) in measure.py
                                                        │
    teardown, always: killpg TERM → grace → killpg KILL → kill what the tree left behind

Timestamps are CLOCK_MONOTONIC nanoseconds (``time.monotonic_ns()``): system-wide on Linux, so a
worker's stamp and the harness's compare directly, and a wall-clock step cannot fake a latency.

The harness makes itself a child subreaper: whatever a supervisor under test leaves behind
(circus workers call setsid, janus-mp workers lead their own process groups) is re-parented to
the harness instead of init, where the teardown finds, kills and reaps it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent.parent
T = TypeVar("T")

#: After SIGTERM to a supervisor's process group, how long teardown waits before SIGKILL.
TEARDOWN_GRACE = 15.0


# ── statistics ───────────────────────────────────────────────────────────────────────────────

def percentile(samples: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) with linear interpolation between order statistics."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    return {"n": len(samples), "p50": percentile(samples, 0.5), "p90": percentile(samples, 0.9),
            "p99": percentile(samples, 0.99), "min": min(samples, default=math.nan),
            "max": max(samples, default=math.nan)}


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 0.5)


# ── deadlines ────────────────────────────────────────────────────────────────────────────────

class WaitTimeout(TimeoutError):
    pass


def wait_until(condition: Callable[[], T], timeout: float, what: str,
               interval: float = 0.01) -> T:
    """Return the first truthy ``condition()``; raise WaitTimeout after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)  # the deadline loop's pacing, not synchronisation


# ── the event log the workers write ──────────────────────────────────────────────────────────

@dataclass(frozen=True)
class Event:
    word: str  # start | crash | ready | begin
    ns: int
    pid: int


class EventLog:
    """An append-only file of ``word ns pid`` lines.

    Workers append one line per write with O_APPEND, which is atomic for lines this short, so
    any number of processes share the file without a lock; reading is incremental.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_bytes(b"")
        self._offset = 0
        self._partial = b""
        self.events: list[Event] = []
        self._counts: dict[str, int] = {}

    def refresh(self) -> list[Event]:
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            word, ns, pid = line.decode().split()
            self.events.append(Event(word, int(ns), int(pid)))
            self._counts[word] = self._counts.get(word, 0) + 1
        return self.events

    def count(self, word: str) -> int:
        self.refresh()
        return self._counts.get(word, 0)

    def stamps(self, word: str) -> list[int]:
        return [e.ns for e in self.refresh() if e.word == word]


def restart_latencies_ms(events: Sequence[Event]) -> list[float]:
    """Each crash paired with the next start: the time the replacement took (one worker)."""
    samples: list[float] = []
    crashed_at: int | None = None
    for event in events:
        if event.word == "crash":
            crashed_at = event.ns
        elif event.word == "start" and crashed_at is not None:
            samples.append((event.ns - crashed_at) / 1e6)
            crashed_at = None
    return samples


# ── a supervisor under test, in its own session ──────────────────────────────────────────────

@dataclass(frozen=True)
class Scenario:
    """The same work for every system: ``workers`` processes doing ``mode`` (see workload.py)."""

    mode: str  # restart | storm | idle
    workers: int
    events: Path


@dataclass(frozen=True)
class Launch:
    """How to start one supervisor: what a system module returns."""

    argv: list[str]
    cwd: Path
    env: dict[str, str] | None = None


class SupervisorDied(RuntimeError):
    pass


class Supervised:
    """A running supervisor: its pid, an exit watch (pidfd) and its log."""

    def __init__(self, proc: psutil.Popen, log_path: Path, name: str) -> None:
        self.proc = proc
        self.pid: int = proc.pid
        self.name = name
        self.log_path = log_path
        self._pidfd = os.pidfd_open(proc.pid)
        self.terminated = False

    def terminate(self, group: bool = True) -> None:
        """SIGTERM to the supervisor's process group (or only to it), once: teardown then only
        waits (a second SIGTERM means "hurry" to some supervisors, janus-mp among them)."""
        if not self.terminated:
            self.terminated = True
            if group:
                _killpg(self.pid, signal.SIGTERM)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)

    def running(self) -> bool:
        return not select.select([self._pidfd], [], [], 0)[0]

    def assert_running(self) -> None:
        if not self.running():
            raise SupervisorDied(f"{self.name} exited early; its log ends:\n{self.log_tail()}")

    def wait_exit(self, timeout: float) -> int | None:
        """Block until the supervisor exits; the monotonic ns it was seen to, or None."""
        if select.select([self._pidfd], [], [], timeout)[0]:
            return time.monotonic_ns()
        return None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        os.close(self._pidfd)


@contextlib.contextmanager
def supervised(launch: Launch, log_path: Path, name: str) -> Iterator[Supervised]:
    """Start ``launch`` in its own session; always tear the whole tree down on the way out."""
    with open(log_path, "ab") as log:
        proc = psutil.Popen(launch.argv, cwd=launch.cwd, env=launch.env,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    _LIVE_LEADERS.add(proc.pid)
    try:
        sup = Supervised(proc, log_path, name)
    except BaseException:
        _killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _LIVE_LEADERS.discard(proc.pid)
        raise
    try:
        yield sup
    finally:
        with _signals_deferred():
            teardown(sup)


def teardown(sup: Supervised) -> None:
    """killpg TERM, a grace period, killpg KILL; then whatever the tree left behind."""
    tree = descendants(sup.pid)
    sup.terminate()
    if sup.wait_exit(TEARDOWN_GRACE) is None:
        tree += descendants(sup.pid)
        _killpg(sup.pid, signal.SIGKILL)
        sup.wait_exit(5.0)
    # Group members that outlived their leader. Before reaping it: while the leader is a
    # zombie its pid, the group's id, cannot be handed to another process.
    _killpg(sup.pid, signal.SIGKILL)
    sup.proc.wait()
    sup.close()
    _LIVE_LEADERS.discard(sup.pid)
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            if proc.is_running():  # is_running also checks the pid was not reused
                proc.kill()
    reap_orphans()


def reap_orphans() -> int:
    """Kill and reap children re-parented to the harness (it is a subreaper). Returns count.

    Supervisors still under test (their teardown has not run) are left alone.
    """
    count = 0
    for child in psutil.Process().children():
        if child.pid in _LIVE_LEADERS or child.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            for grandchild in child.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    grandchild.kill()
            child.kill()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child.pid, 0)
        count += 1
    return count


#: Supervisors started by supervised() whose teardown has not finished (the idle measurement
#: runs several at once): the orphan sweep must not take them for orphans.
_LIVE_LEADERS: set[int] = set()


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl-C (or SIGTERM) during a teardown must not cut it short and leave processes behind:
    the signal is held until the teardown is done, then acted on."""
    held: list[int] = []
    try:
        previous = {sig: signal.signal(sig, lambda signum, frame: held.append(signum))
                    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    except ValueError:  # not the main thread: nothing to defer
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            raise KeyboardInterrupt(signal.Signals(held[0]).name)


def become_subreaper() -> bool:
    """PR_SET_CHILD_SUBREAPER: orphans of the systems under test become our children."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(36, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def exit_on_termination_signals() -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so every context manager tears its tree down."""
    def unwind(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, unwind)


# ── process-tree figures (from /proc, through psutil where it reads the same thing) ──────────

def descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def wakeups(pid: int) -> int:
    """Voluntary + involuntary context switches summed over every thread of ``pid``."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            continue  # a thread that ended between listdir and open
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process itself (all its threads; not its children)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def rss_bytes(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def quiescent(pid: int) -> bool:
    """Every process in the tree is asleep: nothing is still booting or settling."""
    try:
        tree = [psutil.Process(pid), *descendants(pid)]
        return all(bool(p.status() == psutil.STATUS_SLEEPING) for p in tree)
    except psutil.Error:
        return False


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for anchors that need a fixed one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def progress(text: str) -> None:
    """One timestamped progress line on stderr (stdout carries the tables)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def selection(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """An argparse type for ``--only a,b``: the names, each one of ``choices``."""
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown) or '(empty)'}: choose from {','.join(choices)}")
        return names
    return parse
