"""The functions every pool runs, in one importable module (workers started by spawn,
forkserver or loky's fork+exec import it by name: scripts/bench is on their PYTHONPATH).

    tiny(x)           the throughput task: next to no work, so the pool's own cost is measured
    echo(x)           the round-trip task
    task(i, role, c)  one task of a robustness batch; ``role`` says what it does:
        work     spin ``c.spin_s``, note ``done i pid`` in the batch's log, return (i, pid)
        victim   the first run writes its pid to ``c.marker`` and waits to be SIGKILLed from
                 outside; a second run (a retry) finds the marker and works normally
        hang     sleep for an hour (a task that never ends)
        poison   note ``death i pid``, then SIGKILL its own worker, on every run
        leak     note ``leak i pid``, allocate ``c.leak_mib`` MiB, keep them in the worker for
                 good, then work
        gather   the capacity probe: mark its worker's pid in ``c.gather_dir`` and wait (up to
                 ``c.gather_s``) until ``c.gather_n`` distinct workers have marked at once;
                 returns (i, how many it saw): all of them only if that many are free together
                 within the wait

The log is the ground truth of what ran: ``done`` lines count executions, so a task run twice
is seen even when its caller got one result. One O_APPEND write per line: atomic for lines this
short, shared by every worker without a lock.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

#: Memory a ``leak`` task keeps alive in its worker (never freed: that is the point).
_LEAKED: list[bytes] = []
#: One append-only descriptor per worker process and log path.
_LOGS: dict[str, int] = {}


@dataclass(frozen=True)
class Context:
    """What a robustness batch's tasks share (pickled with each task: keep it small)."""

    log: str
    spin_s: float = 0.0
    marker: str = ""
    leak_mib: int = 0
    gather_dir: str = ""
    gather_n: int = 0
    gather_s: float = 0.0


def tiny(x: int) -> int:
    return x + 1


def echo(x: int) -> int:
    return x


def task(i: int, role: str, c: Context) -> tuple[int, int]:
    if role == "victim" and _claim(c.marker):
        time.sleep(3600)  # SIGKILLed by the harness well before this ends
    elif role == "hang":
        time.sleep(3600)
    elif role == "poison":
        _note(c.log, f"death {i} {os.getpid()}")
        os.kill(os.getpid(), signal.SIGKILL)
    elif role == "gather":
        return i, _gather(c)
    elif role == "leak":
        _note(c.log, f"leak {i} {os.getpid()}")
        _LEAKED.append(b"\x01" * (c.leak_mib << 20))  # written, so resident, not just mapped
    _spin(c.spin_s)
    _note(c.log, f"done {i} {os.getpid()}")
    return i, os.getpid()


def _claim(marker: str) -> bool:
    """The first caller gets True, and ``marker`` appears holding its pid; later callers get
    False (``marker.claim`` stays behind as the record that the claim was made)."""
    try:
        os.close(os.open(marker + ".claim", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    with open(marker + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(marker + ".tmp", marker)  # the harness sees the marker only once the pid is in
    return True


def _gather(c: Context) -> int:
    """How many workers are in the probe at once. Once one probe task has given up waiting
    (``gather_dir.over``), later ones answer at once: a pool short of workers runs them one
    after the other, and each waiting the full time again would only repeat the answer."""
    open(os.path.join(c.gather_dir, str(os.getpid())), "w").close()
    deadline = time.monotonic() + c.gather_s
    while len(os.listdir(c.gather_dir)) < c.gather_n and time.monotonic() < deadline:
        if os.path.exists(c.gather_dir + ".over"):
            break
        time.sleep(0.005)  # a task waiting for its peers, not a test synchronising
    seen = len(os.listdir(c.gather_dir))
    if seen < c.gather_n:
        open(c.gather_dir + ".over", "w").close()
    return seen


def _spin(seconds: float) -> None:
    """Busy CPU for ``seconds`` (a CPU-bound task, not a sleep the scheduler could overlap)."""
    if seconds > 0:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass


def _note(log: str, line: str) -> None:
    fd = _LOGS.get(log)
    if fd is None:
        fd = _LOGS[log] = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (line + "\n").encode())
