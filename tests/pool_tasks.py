"""Functions the task pool tests run in pool workers (importable by reference)."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path


def square(x):
    return x * x


def flip(data):
    return data[::-1]


def add(x, y=0):
    return x + y


def pid():
    return os.getpid()


def boom(message):
    raise ValueError(message)


def exit_now(code):
    os._exit(code)


def kill_self(sig=signal.SIGKILL):
    os.kill(os.getpid(), sig)
    time.sleep(60)


def segfault():
    ctypes.string_at(0)


def wait_for(path, then=None):
    """Block until ``path`` exists (the test creates it), then return ``then``."""
    while not os.path.exists(path):
        time.sleep(0.01)
    return then


def write_pid(path):
    """Write this process's pid to ``path`` whole (a reader never sees it half-written)."""
    Path(f"{path}.tmp").write_text(str(os.getpid()))
    os.replace(f"{path}.tmp", path)


def mark_and_wait(mark, path):
    write_pid(mark)
    return wait_for(path, os.getpid())


def mark(path):
    write_pid(path)
    return os.getpid()


def hang():
    while True:
        time.sleep(1)


def hang_stubbornly(mark_path):
    """Ignores the cooperative stop: only a kill ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    write_pid(mark_path)
    while True:
        time.sleep(1)


def die_first_time(marker):
    """Kills its worker unless ``marker`` exists (it creates it first)."""
    if not os.path.exists(marker):
        Path(marker).write_text("x")
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


def count_run(directory, value):
    """Record one run (a file per run) and return ``value``."""
    Path(directory, f"{value}-{os.getpid()}-{time.monotonic_ns()}").touch()
    return value


def unpicklable_result():
    return (x for x in range(3))  # a generator: neither pickle nor dill can


def init_worker(path):
    Path(path, str(os.getpid())).touch()


def read_env(name):
    return os.environ.get(name)


def allocate(megabytes):
    global _held
    _held = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(_held), 4096):
        _held[i] = 1
    return os.getpid()


_held = b""


def failing_initializer():
    raise RuntimeError("cannot set up")


def ignore_sigint_then(value):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return value
