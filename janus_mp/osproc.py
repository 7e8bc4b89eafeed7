"""Thin Linux process helpers: prctl, pidfds, process groups and /proc trees.

Everything here is a direct system call or a /proc read; policy lives elsewhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import signal
from collections.abc import Iterable

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc: ctypes.CDLL | None = None


def _prctl(option: int, arg: int) -> bool:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return bool(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) == 0)


def set_child_subreaper(on: bool = True) -> bool:
    """Orphaned descendants are re-parented to us (not to init), so we can find and stop them."""
    return _prctl(PR_SET_CHILD_SUBREAPER, int(on))




def pidfd_open(pid: int) -> int | None:
    """An fd that turns readable when ``pid`` exits (None: process gone or no pidfd support)."""
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def signal_group(pgid: int, signum: int) -> bool:
    """Signal a whole process group; False if it no longer exists."""
    try:
        os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def signal_process(pid: int, signum: int) -> bool:
    try:
        os.kill(pid, signum)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's), from /proc/<pid>/task/*/children."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                kids.extend(int(p) for p in f.read().split())
        except OSError:
            continue
    return kids


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid``, parents before children, from one scan of /proc.

    A full ppid scan, not /proc/*/children: the kernel documents those lists as unreliable
    while processes exit or are re-parented, which is exactly when we call this.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
            ppid = int(data[data.rfind(b")") + 2 :].split(b" ", 2)[1])
        except (OSError, ValueError, IndexError):
            continue  # gone, or caught half-way through exiting
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    frontier = [pid]
    while frontier:
        nxt = [child for parent in frontier for child in children.get(parent, ())]
        found.extend(nxt)
        frontier = nxt
    return found


def kill_all(pids: Iterable[int], signum: int = signal.SIGKILL) -> int:
    """Signal each pid; return how many existed."""
    return sum(signal_process(pid, signum) for pid in pids)


def _live(pids: Iterable[int]) -> list[int]:
    return [p for p in pids if process_state(p) not in (None, "Z")]


def kill_descendants(pid: int, rounds: int = 8) -> int:
    """SIGKILL every live descendant of ``pid``, which must itself stay alive meanwhile.

    Invariant: ``pid`` (a subreaper) outlives its descendants' deaths, so an orphan is always
    re-parented to it and stays findable; a caller kills ``pid`` only after this returns.
    Each round freezes what it finds (SIGSTOP: nothing forks past the sweep), looks again for
    anything forked before the freeze landed, then kills the lot; zombies are left to reapers.
    """
    killed = 0
    for _ in range(rounds):
        live = _live(descendants(pid))
        if not live:
            break
        kill_all(live, signal.SIGSTOP)
        late = [p for p in _live(descendants(pid)) if p not in live]
        kill_all(late, signal.SIGSTOP)
        killed += kill_all(live + late, signal.SIGKILL)
    return killed




def process_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat ('Z' zombie, 'T' stopped...), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split(b" ", 1)[0].decode()


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid`` from /proc/<pid>/stat, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rfind(b")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` in clock ticks: with the pid, a unique process identity."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[19])


def reap_nonblocking(pid: int) -> int | None:
    """waitpid(pid, WNOHANG) returning the raw status, None if not yet exited or not ours."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return status if got == pid else None


def wait_for_exit(pid: int, timeout: float) -> int | None:
    """Reap our child ``pid``, waiting up to ``timeout`` seconds (its pidfd, else polling)."""
    fd = pidfd_open(pid)
    try:
        if fd is not None:
            select.select([fd], [], [], timeout)
        return reap_nonblocking(pid)
    finally:
        if fd is not None:
            os.close(fd)


def has_children() -> bool:
    """Whether this process has any child, alive or not, without touching /proc (a /proc
    lookup leaves dentries that the kernel must invalidate when this process is reaped)."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def peek_exited_child() -> int | None:
    """The pid of some exited child that is still a zombie (not reaped), or None."""
    try:
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return None
    if info is None:
        return None
    return int(info.si_pid)


def open_file_limit() -> int:
    """One more than the highest fd number this process may use."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def close_fds(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def usable_cpus(proc_root: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota
    (v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``) rounded up; at least 1."""
    count = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota(proc_root, cgroup_root)
    if quota is not None:
        count = min(count, max(1, -(-quota[0] // quota[1])))
    return max(1, count)


def _cgroup_cpu_quota(proc_root: str, cgroup_root: str) -> tuple[int, int] | None:
    """(quota, period) in microseconds of this process's cgroup, None when unlimited."""
    try:
        with open(os.path.join(proc_root, "self", "cgroup")) as f:
            memberships = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    for _hierarchy, controllers, path in (m for m in memberships if len(m) == 3):
        relative = path.lstrip("/")
        if controllers == "":  # cgroup v2
            text = _read(os.path.join(cgroup_root, relative, "cpu.max"))
            parts = text.split() if text else []
            if len(parts) == 2 and parts[0] != "max":
                return int(parts[0]), int(parts[1])
        elif "cpu" in controllers.split(","):  # cgroup v1
            base = os.path.join(cgroup_root, controllers, relative)
            if not os.path.isdir(base):
                base = os.path.join(cgroup_root, "cpu", relative)
            quota, period = (_read(os.path.join(base, name))
                             for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
            if quota and period and int(quota) > 0 and int(period) > 0:
                return int(quota), int(period)
    return None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None
