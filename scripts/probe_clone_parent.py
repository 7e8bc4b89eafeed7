"""Can a small Python process fork workers that are its *parent's* children? (zygote design)

    python scripts/probe_clone_parent.py

A "zygote" (here forked from this process, the "supervisor") calls the raw clone system call
with CLONE_PARENT through ctypes — ``os.fork`` has no such flag — and the child runs
``PyOS_AfterFork_Child`` itself, as ``os.fork`` would. The child then checks what a worker
needs: its parent is the supervisor, raising a signal, a thread, ``os.fork``, ``subprocess``,
``multiprocessing``; the supervisor reaps it and reads its exit status. Prints one line per
check and exits 1 if any failed. glibc's ``pthread_atfork`` handlers do not run in such a
child: the zygote must be single-threaded and load no C library that relies on them.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import subprocess
import sys
import threading

SYS_CLONE = 56  # x86-64
CLONE_PARENT = 0x00008000
EXIT_CODE = 7


def child_checks() -> list[tuple[str, bool]]:
    ctypes.pythonapi.PyOS_AfterFork_Child()
    got: list[int] = []
    signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
    signal.raise_signal(signal.SIGUSR1)
    thread = threading.Thread(target=lambda: got.append(2))
    thread.start()
    thread.join()
    grandchild = os.fork()
    if grandchild == 0:
        os._exit(3)
    forked = os.waitstatus_to_exitcode(os.waitpid(grandchild, 0)[1]) == 3
    sub = subprocess.run(["true"], check=False).returncode == 0
    proc = multiprocessing.get_context("fork").Process(target=int)
    proc.start()
    proc.join()
    return [("signal raised", 1 in got), ("thread", 2 in got), ("os.fork", forked),
            ("subprocess", sub), ("multiprocessing", proc.exitcode == 0)]


def main() -> int:
    supervisor = os.getpid()
    read_fd, write_fd = os.pipe()
    zygote = os.fork()
    if zygote == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        pid = libc.syscall(SYS_CLONE, CLONE_PARENT | signal.SIGCHLD, 0, 0, 0, 0)
        if pid == 0:
            checks = [("parent is the supervisor", os.getppid() == supervisor),
                      *child_checks()]
            os.write(write_fd, "".join(f"{name}={int(ok)};" for name, ok in checks).encode())
            os._exit(EXIT_CODE)
        os._exit(0 if pid > 0 else 1)
    os.close(write_fd)
    os.waitpid(zygote, 0)
    report = b""
    while chunk := os.read(read_fd, 4096):
        report += chunk
    checks = [item.split("=") for item in report.decode().strip(";").split(";") if item]
    pid, status = os.waitpid(-1, 0)  # the zygote was reaped above: this is its clone
    checks.append(["supervisor reaps it with its status",
                   str(int(os.waitstatus_to_exitcode(status) == EXIT_CODE))])
    for name, ok in checks:
        print(f"  [{'ok' if ok == '1' else 'FAILED'}] {name}")
    return 0 if checks and all(ok == "1" for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
