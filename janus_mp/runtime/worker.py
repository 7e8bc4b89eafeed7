"""What runs inside a worker process: bootstrap, the context handed to services, and the bridge.

    supervisor                                   worker process
    ──────────                                   ──────────────
    token (SharedEvent) ──── shared memory ────► ctx.shutdown.is_cancelled() / wait()
    heartbeat (RawValue)◄─── shared memory ───── ctx.heartbeat()
    conn  ◄──── b"r" (ready) ─────────────────── ctx.ready()
          ───── b"c" (cancel) ──────────────────► bridge thread → cancels the worker's token
                                                   here: wakes its waiters (which sleep on a
                                                   local, monotonic event) and its children
    pidfd of the supervisor ────────────────────► bridge thread: supervisor died → kill this
                                                   worker's whole tree at once (no orphans)

The worker leads its own process group and is a child subreaper, so everything it starts (even
processes that setsid and double-fork) stays in its subtree until it dies; its exit code is the
service's verdict (see :mod:`janus_mp.core.exits`).
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import logging
import os
import signal
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import multiprocess.connection as mpc

from janus_mp import osproc
from janus_mp.core.cancel import CancellationToken
from janus_mp.core.exits import ReservedExit
from janus_mp.core.process_settings import ProcessSettings
from janus_mp.runtime import cgroups, process_settings
from janus_mp.runtime.output_pipes import redirect_output, report_fatal_signals
from janus_mp.runtime.shared_event import SharedEvent
from janus_mp.service import CANCEL, PARKED, PROMOTE, JanusService, WorkerContext

log = logging.getLogger("janus_mp.worker")


#: Signals whose supervisor-side handlers a forked worker must not inherit.
_RESET_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGTTIN",
                  "SIGTTOU", "SIGCHLD", "SIGWINCH")


@dataclass
class WorkerSpec:
    """Everything a worker needs, passed as the Process argument (pickled under spawn)."""

    service_name: str
    index: int
    generation: int
    supervisor_pid: int
    token: CancellationToken
    conn: Any  # the worker's end of a duplex multiprocess Pipe
    heartbeat: Any  # a RawValue('d') of time.monotonic()
    service: JanusService | bytes  # bytes: dill-pickled for spawn/forkserver
    close_fds: tuple[int, ...] = ()
    close_from: int | None = None  # ...and every fd from here up (one close_range)
    wait_for_ready: bool = False
    direct_child: bool = True  # False under forkserver: our parent is the fork server
    metrics: Any = None  # janus_mp.metrics.store.MultiprocessMetrics, or None
    title: str | None = None
    listeners: tuple[Any, ...] = ()  # sockets bound by the supervisor (runtime.listeners)
    max_requests: int | None = None  # this worker's recycle threshold, jitter already applied
    stop_timeout: float = 30.0  # cooperative grace after a stop is asked, before SIGTERM
    watchdog_timeout: float | None = None  # heartbeat at least this often, if set
    standby: bool = False  # boot, say PARKED, and run only once promoted into a slot
    output: dict[str, Any] | None = None  # write ends for fd 1 and 2 (runtime.output_pipes)
    process: ProcessSettings | None = None  # env, cwd, user, limits... (runtime.process_settings)
    lifeline: int | None = None  # its service's lifeline: EOF = stop (runtime.lifelines)
    cgroup_procs: str | None = None  # its service's cgroup (runtime.cgroups): joined first
    gc_freeze: bool = True  # freeze what was inherited: its pages stay shared (copy-on-write)
    dump_path: str | None = None  # faulthandler writes every thread's stack here on request
    dump_signal: int = int(signal.SIGUSR2)
    post_fork: Callable[[str, int], None] | None = None  # SpawnOptions.post_fork
    worker_exit: Callable[[str, int, int], None] | None = None  # SpawnOptions.worker_exit


class _Parking:
    """A standby's main thread reads the pipe itself while parked, so that a promotion wakes
    the very thread that runs the service (one wake-up, no hand-off between threads); the
    bridge watches only the supervisor meanwhile and takes the pipe over once told."""

    def __init__(self) -> None:
        self.rearm_r, self.rearm_w = os.pipe()


def worker_main(spec: WorkerSpec) -> None:
    """Process target. Ends by raising SystemExit with the worker's exit code."""
    if spec.gc_freeze:
        # What this process inherited is never collected here: the collector never writes
        # to those objects, so their pages stay shared with the supervisor (O(1) to do).
        gc.freeze()
    _leave_supervisor_logging()
    parking = _Parking() if spec.standby else None
    _detach_from_supervisor(spec, parking)
    _arm_stack_dumps(spec)
    ctx: WorkerContext | None = None
    code: int = int(ReservedExit.FAILURE)
    try:
        if spec.cgroup_procs is not None:  # before the settings: a user switch may forbid it
            try:
                cgroups.join(spec.cgroup_procs)
            except cgroups.CgroupError as exc:
                raise _BootError(str(exc)) from None
        if spec.process is not None and not spec.process.empty:
            try:
                process_settings.apply(spec.process)
            except process_settings.SettingsError as exc:
                raise _BootError(f"process settings: {exc}") from None
        if spec.post_fork is not None:
            try:
                spec.post_fork(spec.service_name, spec.index)
            except Exception as exc:
                raise _BootError(f"post_fork failed: {type(exc).__name__}: {exc}") from exc
        service = _load_service(spec)
        if spec.metrics is not None:
            try:
                spec.metrics.worker_init()
            except Exception:  # metrics must never stop a worker from serving
                log.exception("%s[%d]: prometheus multiprocess init failed", spec.service_name,
                              spec.index)
        # Built before a standby parks: its promotion only names the slot it takes.
        prepared = WorkerContext(
            service=spec.service_name, index=spec.index, generation=spec.generation,
            shutdown=spec.token, conn=spec.conn, heartbeat=spec.heartbeat,
            listeners=spec.listeners, max_requests=spec.max_requests,
            stop_timeout=spec.stop_timeout, watchdog_timeout=spec.watchdog_timeout)
        if parking is not None:
            if not _park(spec, parking):
                raise SystemExit(0)  # stopped while parked: it never served
            prepared.index, prepared.generation = spec.index, spec.generation
            prepared.max_requests = spec.max_requests
        ctx = prepared
        if not spec.wait_for_ready:
            ctx.ready()
        code = _run_service(service, ctx)
    except _BootError as exc:
        log.error("%s[%d]: cannot load service: %s", spec.service_name, spec.index, exc)
        code = int(ReservedExit.BOOT_ERROR)
    finally:
        if spec.worker_exit is not None:
            try:
                spec.worker_exit(spec.service_name, spec.index, code)
            except Exception:
                log.exception("%s[%d]: worker_exit failed", spec.service_name, spec.index)
        # Nothing the worker started outlives it, whatever it exits with. A subreaper without
        # children has no descendants at all, so the usual exit skips the /proc scan.
        if osproc.has_children():
            osproc.kill_descendants(os.getpid())
    if ctx is not None and not spec.token.is_cancelled():
        # What is left of this process is its teardown: it yields the CPU to its successor
        # (a standby woken by the announcement, a new fork) and to the supervisor first.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, 19)
        # The supervisor acts on it while this process tears down (a worker it stopped has
        # nothing to tell: that exit was decided already).
        ctx.announce_exit(code)
    raise SystemExit(code)


def _leave_supervisor_logging() -> None:
    """Give this process the logging of a new one, as far as the supervisor's log goes.

    A forked worker inherits the supervisor's loggers. Handlers marked ``supervisor_only``
    (the command line's own log: a queue whose writer thread is not in this process, and
    janus-mp's format) leave every logger, and the loggers they configured return to the
    defaults: so an app's ``logging.basicConfig(format=...)`` in the worker takes effect, and
    what the app writes reaches its stderr as the app formatted it, once. Handlers an app or
    a Python API caller installed in the parent stay, as in any forked process.
    """
    root = logging.getLogger()
    loggers = [root, *(logger for logger in list(logging.Logger.manager.loggerDict.values())
                       if isinstance(logger, logging.Logger))]
    for logger in loggers:
        marked = [h for h in logger.handlers if getattr(h, "supervisor_only", False)]
        if not marked:
            continue
        for handler in marked:
            logger.removeHandler(handler)
        if logger is root:
            root.setLevel(logging.WARNING)  # a new process's root level
        elif not logger.handlers:
            logger.setLevel(logging.NOTSET)
            logger.propagate = True


#: The open dump file: faulthandler writes to this fd, which must stay open as long as we live.
_dump_file: int | None = None


def _arm_stack_dumps(spec: WorkerSpec) -> None:
    """On ``dump_signal``, faulthandler writes every thread's Python stack to our dump file
    (from the signal handler itself: even a worker stuck in C code or a busy loop answers)."""
    global _dump_file
    if spec.dump_path is None or threading.current_thread() is not threading.main_thread():
        return
    try:
        # A bare fd (no Python file object to build): faulthandler writes to it directly.
        _dump_file = os.open(spec.dump_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                             0o600)
        faulthandler.register(spec.dump_signal, file=_dump_file, all_threads=True, chain=False)
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("%s[%d]: stack dumps unavailable: %s", spec.service_name, spec.index, exc)


class _BootError(Exception):
    pass


def _load_service(spec: WorkerSpec) -> JanusService:
    if isinstance(spec.service, bytes):
        try:
            import dill

            service = dill.loads(spec.service)
        except Exception as exc:
            raise _BootError(f"unpickling failed: {type(exc).__name__}: {exc}") from exc
    else:
        service = spec.service
    if not isinstance(service, JanusService):
        raise _BootError(f"{service!r} is not a JanusService")
    return service


def _run_service(service: JanusService, ctx: WorkerContext) -> int:
    try:
        result = service.run(ctx)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code & 0xFF
        log.error("%s[%d]: %s", ctx.service, ctx.index, exc.code)
        return int(ReservedExit.FAILURE)
    except BaseException:
        log.error("%s[%d] (pid %d) crashed:\n%s", ctx.service, ctx.index, ctx.pid,
                  traceback.format_exc().rstrip())
        return int(ReservedExit.FAILURE)
    if result is None:
        return 0
    return int(result) & 0xFF


def _park(spec: WorkerSpec, parking: _Parking) -> bool:
    """Say PARKED and wait to be promoted (True, with ``spec`` now naming the slot) or
    stopped (False)."""
    try:
        spec.conn.send_bytes(PARKED)
        while True:
            message = spec.conn.recv_bytes(64)
            if message == CANCEL:
                spec.token.cancel("stop requested by the supervisor")
                return False
            if message.startswith(PROMOTE):
                break
    except (EOFError, OSError):
        return False  # the supervisor is gone: the bridge is taking this worker down
    slot, generation, max_requests = (int(x) for x in message[1:].split())
    spec.index, spec.generation, spec.max_requests = slot, generation, max_requests or None
    os.write(parking.rearm_w, b"!")  # the bridge reads the pipe from now on
    _set_title(f"janus-mp: {spec.service_name} worker {spec.index} (gen {spec.generation})")
    return True


def _detach_from_supervisor(spec: WorkerSpec, parking: _Parking | None) -> None:
    """Undo what fork copied from the supervisor and wire up the worker's own plumbing."""
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    if threading.current_thread() is threading.main_thread():
        signal.set_wakeup_fd(-1)
        for name in _RESET_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None:
                signal.signal(signum, signal.SIG_DFL)
        # Ignored, not default: if the supervisor dies, this worker's group becomes orphaned,
        # and the kernel then SIGHUPs the whole group the moment one stopped member exits —
        # which is exactly what the clean-up sweep (SIGSTOP, then SIGKILL) produces. Dying of
        # that SIGHUP mid-sweep would hand the rest of the tree over to init. (No terminal is
        # ever attached to a worker; the supervisor talks to it through its own channel.)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    osproc.close_fds(spec.close_fds)
    if spec.close_from is not None:
        os.closerange(spec.close_from, osproc.open_file_limit())
    if spec.output is not None:
        redirect_output(spec.output)
        report_fatal_signals(spec.output)  # a segfault announces itself before the teardown
    osproc.set_child_subreaper()
    if spec.title:
        _set_title(spec.title)
    # Watch the supervisor: its pidfd is readable the moment it dies, whoever holds which fds.
    supervisor_fd = osproc.pidfd_open(spec.supervisor_pid)
    if supervisor_fd is None or (spec.direct_child and os.getppid() != spec.supervisor_pid):
        _orphaned()  # the supervisor died before we even started
    if isinstance(spec.token.flag, SharedEvent):
        # From here every cancel by the supervisor reaches this process as CANCEL, and the
        # bridge sets the flag locally: waits sleep on the monotonic clock (see shared_event).
        spec.token.flag.relay_here()
    # A threading.Thread, whose start() waits until the thread runs: a bare _thread saves
    # that wait, but a profiler attaching before the thread has run (py-spy, right after a
    # start under load) cannot tell its thread is idle, and shows it as half the profile.
    bridge = threading.Thread(target=_bridge, args=(spec.conn, spec.token, supervisor_fd,
                                                    parking, spec.lifeline),
                              name="janus-mp-bridge", daemon=True)
    bridge.start()


def _bridge(conn: Any, token: CancellationToken, supervisor_fd: int,
            parking: _Parking | None, lifeline: int | None = None) -> None:
    # A parked standby's main thread reads the pipe until it is promoted (see _Parking).
    watched: list[Any] = [parking.rearm_r, supervisor_fd] if parking else [conn, supervisor_fd]
    if lifeline is not None:
        watched.append(lifeline)
    while True:
        ready = mpc.wait(watched)
        if supervisor_fd in ready:
            _orphaned()
        if lifeline is not None and lifeline in ready:  # cut: the whole service stops
            token.cancel("stop requested by the supervisor")
            watched.remove(lifeline)  # it stays readable (end of file) from now on
            lifeline = None
        if parking is not None and parking.rearm_r in ready:
            watched = [conn, supervisor_fd]
            continue
        if conn in ready:
            try:
                message = conn.recv_bytes(64)
            except (EOFError, OSError):
                _orphaned()
                return
            if message == CANCEL:
                token.cancel("stop requested by the supervisor")


def _orphaned() -> None:
    """The supervisor is gone: take this worker's whole tree down now, without grace.

    This worker dies last: killed first, it would hand its descendants over to init.
    """
    for _ in range(3):
        try:
            osproc.kill_descendants(os.getpid())
            break
        except Exception:  # keep trying: dying now would set the descendants free
            continue
    os.kill(os.getpid(), signal.SIGKILL)


def _set_title(title: str) -> None:
    if _setproctitle is not None:
        _setproctitle.setproctitle(title)


# Imported here, in the supervisor, so forked workers don't each pay the ~2 ms import.
_setproctitle: Any
try:
    import setproctitle as _setproctitle
except ImportError:  # optional: the `cli` extra installs it
    _setproctitle = None
