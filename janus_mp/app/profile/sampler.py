"""Runs py-spy on every worker of a service at once and reads back their stacks.

One ``py-spy record --pid PID --format raw --function`` per worker (frames by function, not by
line, so a hot function is one box), all started together so every worker
is sampled over the same seconds; a worker that exits meanwhile (a recycle, a crash) costs its
own samples only. py-spy attaches with ptrace: a supervisor's workers belong to the user who
started it, so that user (or root) can profile them where the kernel's ptrace_scope allows.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from janus_mp.app.profile.flame_graph import Stacks, parse_collapsed
from janus_mp.errors import JanusError

#: Seconds py-spy may take past the duration to attach and write its file.
_GRACE = 30.0


@dataclass(frozen=True)
class Sampled:
    """Stacks per worker pid (empty for a worker that was idle throughout: py-spy records
    busy threads only), and why the workers that could not be sampled failed."""

    stacks: dict[int, Stacks]
    failures: dict[int, str]


def find_py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise JanusError("py-spy is not installed: pip install 'janus-mp[profile]'")
    return found


def sample(pids: Iterable[int], duration: int, rate: int, *, nonblocking: bool = False,
           gil_only: bool = False, py_spy: str | None = None) -> Sampled:
    program = py_spy or find_py_spy()
    with tempfile.TemporaryDirectory(prefix="janus-mp-profile-") as scratch:
        running: dict[int, tuple[subprocess.Popen[bytes], Path]] = {}
        try:
            for pid in pids:
                output = Path(scratch) / f"{pid}.txt"
                argv = [program, "record", "--pid", str(pid), "--duration", str(duration),
                        "--rate", str(rate), "--format", "raw", "--function",
                        "--output", str(output)]
                if nonblocking:
                    argv.append("--nonblocking")
                if gil_only:
                    argv.append("--gil")
                running[pid] = (subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.PIPE), output)
            stacks: dict[int, Stacks] = {}
            failures: dict[int, str] = {}
            for pid, (process, output) in running.items():
                try:
                    _, err = process.communicate(timeout=duration + _GRACE)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.communicate()
                    failures[pid] = f"py-spy did not finish within {duration + _GRACE:g} s"
                    continue
                if process.returncode == 0:  # no file, or an empty one: the worker was idle
                    stacks[pid] = parse_collapsed(output.read_text() if output.exists()
                                                  else "")
                else:
                    failures[pid] = _reason(err.decode(errors="replace"), process.returncode)
        finally:
            for process, _ in running.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()
    return Sampled(stacks, failures)


def _reason(stderr: str, status: int) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = next((line for line in lines if "Error" in line or "error" in line),
                lines[-1] if lines else f"py-spy exited with status {status}")
    if "Permission denied" in stderr or "Operation not permitted" in stderr:
        text += (" (py-spy attaches with ptrace: run as the supervisor's user or root, with "
                 "kernel.yama.ptrace_scope at 0 or 1, or CAP_SYS_PTRACE in a container)")
    return text
