"""The work every system supervises, in one place, so every system does exactly the same.

    restart  record ``start``, run RUN_SECONDS, record ``crash``, exit 1
    crash    the same, ending in one of CRASHES: a clean return, ``sys.exit(1)``, ``os._exit(1)``,
             SIGKILL, a segmentation fault (a real one: a read of address 0 through ctypes)
    storm    record ``start``, exit 1 at once
    idle     record ``ready``, then wait, cooperatively, to be told to stop

Each function is called at the worker's first line of service code: the target of a
``multiprocess`` Process (floor), a janus-mp service (``fn(ctx)``), gunicorn's
``post_worker_init`` hook (the first code of ours a sync worker runs), or this file's ``main`` as
a program (supervisord and circus fork+exec their workers, so their "first line" comes after an
interpreter start-up: that is their model, measured as it is).

Run as a program: ``python workload.py restart|storm|idle EVENTS``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable

#: How long a restart-test worker serves before it crashes.
RUN_SECONDS = 0.2
#: The exit code of a crash: a plain failure for every system (gunicorn halts on 3 and 4).
CRASH_CODE = 1


def record(events: str, word: str) -> None:
    """Append ``word <monotonic ns> <pid>``: one write, O_APPEND, atomic for a line this short."""
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{word} {time.monotonic_ns()} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def restart(events: str) -> None:
    record(events, "start")
    time.sleep(RUN_SECONDS)
    record(events, "crash")
    sys.exit(CRASH_CODE)


#: How a worker can end, politest first. The first two run Python's exit path and janus-mp's
#: worker announces them; the last three are real crashes: nothing of the worker runs after
#: them (SIGKILL is raised by the worker on itself: the kernel's path is that of a SIGKILL
#: from outside, the OOM killer's included, and the crash stamp is exact).
CRASHES = ("return", "sys.exit", "os._exit", "sigkill", "sigsegv")
#: The ones that announce nothing: a standby's goal is looser for them (the dead worker's
#: teardown comes before anyone can know).
REAL_CRASHES = ("os._exit", "sigkill", "sigsegv")


def crash(events: str, kind: str) -> None:
    record(events, "start")
    time.sleep(RUN_SECONDS)
    record(events, "crash")
    if kind == "return":
        return
    if kind == "sys.exit":
        sys.exit(CRASH_CODE)
    if kind == "os._exit":
        os._exit(CRASH_CODE)
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "sigsegv":
        ctypes.string_at(0)
    raise ValueError(f"unknown crash kind {kind!r}")


def storm(events: str) -> None:
    record(events, "start")
    sys.exit(CRASH_CODE)


def idle(events: str, wait: Callable[[], object]) -> None:
    record(events, "ready")
    wait()


def wsgi_app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
    """The application gunicorn preloads (and a future HTTP throughput benchmark serves)."""
    body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def main(argv: list[str]) -> None:
    mode, events = argv
    if mode == "idle":
        # A cooperative worker: SIGTERM is its stop request, answered by exiting 0.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        idle(events, lambda: signal.sigwait({signal.SIGTERM}))
        sys.exit(0)
    {"restart": restart, "storm": storm}[mode](events)


if __name__ == "__main__":
    main(sys.argv[1:])
