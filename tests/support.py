"""Test support: deadlines instead of sleeps, and process-tree bookkeeping through /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

TAG_VAR = "JANUS_TEST_TAG"


def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.005,
               message: str = "") -> T:
    """Return the first truthy value of ``condition()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{message or getattr(condition, '__name__', 'condition')}")
        time.sleep(interval)  # the deadline loop's pacing, not synchronisation


def tagged_pids(tag: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries ``JANUS_TEST_TAG=tag``."""
    needle = f"{TAG_VAR}={tag}".encode()
    found: list[int] = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0") and stat[stat.rfind(b")") + 2:][:1] != b"Z":
            found.append(int(entry))
    return found


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM a process we started, SIGKILL it if it does not exit in time, and reap it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2:][:1].decode()


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (zombies included), from one /proc scan."""
    from janus_mp.osproc import descendants, parent_pid

    return [p for p in descendants(pid) if parent_pid(p) == pid]


def alive(pid: int) -> bool:
    state = proc_state(pid)
    return state is not None and state != "Z"


@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    """A loopback port someone else is listening on, for the duration of the block."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]
    finally:
        holder.close()
