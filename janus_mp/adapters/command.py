"""CommandAdapter: an external program as a service worker, like a supervisord ``[program]``.

    supervisor ── worker (Python, leads the process group) ── the program (same group)
                       │ the program inherits the worker's stdout/stderr, which the supervisor
                       │ captures like any worker's: "service[index] out|" / "err|" lines
                       └ exits with the program's exit code, or dies of the program's signal

A stop asked by the supervisor sends ``stop_signal`` to the whole process group (the worker
ignores it); the supervisor's own escalation (SIGTERM, then SIGKILL, to the group) follows at
its deadlines. Whatever the program started, even processes that setsid() and double-fork
away, is killed when the program exits: the worker is a child subreaper.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from janus_mp import osproc
from janus_mp.adapters._stop import when_cancelled
from janus_mp.errors import ConfigError, ServiceLoadError
from janus_mp.service import JanusService

if TYPE_CHECKING:
    from janus_mp.service import WorkerContext

log = logging.getLogger("janus_mp.command")

#: Exit code when the program cannot be started at all (as a shell reports it).
COMMAND_NOT_RUNNABLE = 127
#: The worker's own multiprocess metrics directory is not the program's to write to: its files
#: would never be folded when the program exits (only worker pids are).
_PRIVATE_ENV = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")


class CommandAdapter(JanusService):
    """Run ``argv`` (a list, or a string split like a shell would) in every worker."""

    can_heartbeat = False  # the program cannot reach ctx.heartbeat()

    def __init__(self, argv: Sequence[str] | str, *, name: str | None = None,
                 env: Mapping[str, str] | None = None, cwd: str | None = None,
                 stop_signal: int | str = signal.SIGTERM, ready_after: float = 0.0) -> None:
        args = shlex.split(argv) if isinstance(argv, str) else [str(a) for a in argv]
        if not args:
            raise ConfigError("command", "must name a program")
        self.argv = tuple(args)
        if env is not None and not isinstance(env, Mapping):
            raise ConfigError("env", "must be a table of NAME = value")
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.cwd = cwd
        self.stop_signal = _signal(stop_signal)
        if isinstance(ready_after, bool) or not isinstance(ready_after, (int, float)) or \
                ready_after < 0:
            raise ConfigError("ready_after", "must be a number of seconds >= 0")
        self.ready_after = float(ready_after)
        if cwd is not None and not os.path.isdir(cwd):
            raise ConfigError("cwd", f"{cwd!r} is not a directory")
        if _find_program(self.argv[0], cwd, self.env.get("PATH")) is None:
            raise ServiceLoadError(f"command {self.argv[0]!r}: not found or not executable")
        self.name = name or _name_of(self.argv[0])

    def identity(self) -> object:
        return (type(self), self.argv, tuple(sorted(self.env.items())), self.cwd,
                self.stop_signal, self.ready_after)

    def __repr__(self) -> str:
        return f"CommandAdapter({shlex.join(self.argv)!r}, name={self.name!r})"

    def run(self, ctx: WorkerContext) -> int | None:
        prefix = f"{ctx.service}[{ctx.index}]"
        # Python handlers (not SIG_IGN) so the program starts with default dispositions: exec
        # resets handled signals but keeps ignored ones.
        for signum in {self.stop_signal, signal.SIGTERM, signal.SIGHUP}:
            signal.signal(signum, _ignore)
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        env.update(self.env)
        env.update(JANUS_SERVICE=ctx.service, JANUS_WORKER_INDEX=str(ctx.index),
                   JANUS_WORKER_GENERATION=str(ctx.generation))
        try:
            program = subprocess.Popen(self.argv, env=env, cwd=self.cwd,
                                       stdin=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:
            log.error("%s: cannot start %s: %s", prefix, shlex.join(self.argv),
                      exc.strerror or exc)
            return COMMAND_NOT_RUNNABLE
        log.info("%s: started %s (pid %d)", prefix, _shorten(shlex.join(self.argv)), program.pid)
        when_cancelled(ctx.shutdown, lambda: osproc.signal_group(os.getpgrp(), self.stop_signal))
        if self.ready_after:  # supervisord's startsecs: ready once it has stayed up this long
            try:
                program.wait(timeout=self.ready_after)
            except subprocess.TimeoutExpired:
                pass
        if program.returncode is None:
            ctx.ready()
        returncode = program.wait()
        # The program is gone; nothing it started may outlive it (and hold its pipes open).
        osproc.kill_descendants(os.getpid())
        if returncode < 0:
            log.warning("%s: %s died of %s", prefix, self.argv[0],
                        signal.Signals(-returncode).name)
            return _die_like(-returncode)
        log.info("%s: %s exited with code %d", prefix, self.argv[0], returncode)
        return returncode


def _die_like(signum: int) -> int:
    """Report the program's death by signal as ours, so the supervisor classifies it the same;
    a signal whose default action is not to terminate ends us as a shell would: 128 + N."""
    if signum not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)
    return 128 + signum


def _ignore(_signum: int, _frame: object) -> None:
    pass


def _signal(value: int | str) -> int:
    if isinstance(value, str):
        name = value.upper() if value.upper().startswith("SIG") else f"SIG{value.upper()}"
        try:
            return int(signal.Signals[name])
        except KeyError:
            raise ConfigError("stop_signal", f"unknown signal {value!r}") from None
    try:
        return int(signal.Signals(value))
    except ValueError:
        raise ConfigError("stop_signal", f"unknown signal {value!r}") from None


def _find_program(program: str, cwd: str | None, path: str | None) -> str | None:
    if os.sep in program:
        full = os.path.join(cwd or "", program)
        return full if os.access(full, os.X_OK) and os.path.isfile(full) else None
    return shutil.which(program, path=path)


def _shorten(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _name_of(program: str) -> str:
    base = os.path.basename(program)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in base)[:64] or "command"
