"""Zero-downtime upgrade: a new supervisor (new code, new janus-mp) takes over the sockets of
the running one, and the old one drains only once the new one serves.

    old supervisor (running)                          new supervisor
    ────────────────────────                          ──────────────
    `janus-mp upgrade` / SIGUSR2
    Popen(python -m janus_mp <same argv>) ─ fds ─►    Handover.from_environ(): the listening
      pass_fds: every listening socket,                 sockets, metrics and control sockets are
      the metrics and control sockets,                  adopted, not bound (no EADDRINUSE, no
      the write end of a ready pipe;                    moment with the port closed)
      JANUS_MP_HANDOVER: JSON of plain                starts its workers on the same config
      strings and ints (never pickle)                 every service's workers ready:
    wait on the pipe, upgrade_timeout ◄── "ready" ──    pid file rewritten (tmp + rename),
    ready:  stop accepting control (the file stays),    then a line on the pipe
            MAINPID=<new> to systemd, graceful
            shutdown: in-flight requests finish, exit 0
    EOF (it exited) or timeout: TERM it, KILL what is left after shutdown_timeout +
            kill_timeout, reap it; keep serving, unchanged; one log line says why

Both supervisors accept on the same sockets while the old one drains: the kernel hands each
connection to whichever process waits in accept, so none is refused or lost. Nothing is ever
``shutdown()`` on a shared socket (that would stop it for both).

The metrics archive is not carried over: the new supervisor starts from zero (counters reset,
which Prometheus' rate() and increase() handle as a restart). A configured metrics_dir is
shared while both run; each keeps the other's workers' files.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field

from janus_mp import osproc
from janus_mp.app.control import ControlServer
from janus_mp.errors import JanusError
from janus_mp.runtime.supervisor import JanusSupervisor

log = logging.getLogger("janus_mp.upgrade")

#: The environment variable that carries the handover to the new supervisor.
HANDOVER_VAR = "JANUS_MP_HANDOVER"
#: Longest ready line the new supervisor writes.
_READY_LINE_MAX = 256


@dataclass
class Handover:
    """What the previous supervisor handed to this one (the new side of an upgrade); it owns
    these fds until they are adopted or closed."""

    #: address text as the service asks for it → inherited listening fd
    listeners: Mapping[str, int] = field(default_factory=dict)
    control_fd: int | None = None
    #: where the control socket handed over is bound
    control_path: str = ""
    metrics_fd: int | None = None
    #: write "ready" here once every worker is ready; closing it unsaid means "failed"
    ready_fd: int = -1
    old_pid: int = 0

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Handover | None:
        """The handover in ``JANUS_MP_HANDOVER`` (removed: our workers and our own future
        upgrades must not see it), or None when this supervisor was not started by another."""
        env = os.environ if environ is None else environ
        text = env.pop(HANDOVER_VAR, None)
        if text is None:
            return None
        try:
            data = json.loads(text)
            handover = cls(listeners={str(k): _fd(v) for k, v in data["listeners"].items()},
                           control_fd=_optional_fd(data["control"]),
                           control_path=str(data["control_path"]),
                           metrics_fd=_optional_fd(data["metrics"]),
                           ready_fd=_fd(data["ready"]), old_pid=_fd(data["old_pid"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise JanusError(f"{HANDOVER_VAR} is not a handover from janus-mp upgrade") from None
        for fd in handover.fds():  # ours now; workers get listeners passed explicitly
            os.set_inheritable(fd, False)
        return handover

    def fds(self) -> list[int]:
        return [fd for fd in (*self.listeners.values(), self.control_fd, self.metrics_fd,
                              self.ready_fd) if fd is not None and fd >= 0]

    def close_unused(self, sup: JanusSupervisor, *, metrics: bool,
                     control: str | None) -> None:
        """Close what the new configuration does not serve: a listening socket nobody accepts
        on would hold its clients forever."""
        for address in sup.handover.close_unadopted():
            log.info("upgrade: %s is no longer asked for: closed", address)
        if not metrics and self.metrics_fd is not None:
            os.close(self.metrics_fd)
            self.metrics_fd = None
        if control != self.control_path and self.control_fd is not None:
            os.close(self.control_fd)  # the socket moved (or is off): ours is bound anew
            self.control_fd = None

    def tell_ready(self) -> None:
        """Tell the old supervisor we serve: it drains and exits."""
        try:
            os.write(self.ready_fd, f"ready {os.getpid()}\n".encode())
        except OSError as exc:  # it is gone already: nobody left to tell
            log.warning("upgrade: could not tell supervisor %d we are ready: %s",
                        self.old_pid, exc)
        finally:
            os.close(self.ready_fd)
        log.info("upgrade: ready, taking over from supervisor pid %d", self.old_pid)


def _optional_fd(value: object) -> int | None:
    return None if value is None else _fd(value)


def _fd(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(value)
    return value


class Upgrader:
    """The old side: start the new supervisor, wait for it, then drain, or stop it and stay."""

    def __init__(self, sup: JanusSupervisor, argv: list[str], *,
                 control: Callable[[], ControlServer | None],
                 notify: Callable[..., None]) -> None:
        self.sup = sup
        self.argv = argv
        self._control = control
        self._notify = notify
        self._lock = threading.Lock()
        self.handed_over = False
        self._starting: subprocess.Popen[bytes] | None = None  # the new one, until it serves

    def upgrade(self) -> str:
        """Run one upgrade to its end; the summary line, or JanusError saying why this
        supervisor keeps serving."""
        if not self._lock.acquire(blocking=False):
            raise _refused("an upgrade is already under way")
        try:
            if self.handed_over or self.sup.state != "running":
                raise _refused(f"the supervisor is {self.sup.state}, not running")
            return self._upgrade()
        finally:
            self._lock.release()

    def _upgrade(self) -> str:
        listeners, metrics_fd = self.sup.handover.fds()
        control = self._control()
        control_fd = control.fileno if control is not None else None
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        private = self.sup.private_fds
        for fd in (ready_r, ready_w):
            private.add(fd)  # a worker forked meanwhile must not hold the pipe open
        handover = {"listeners": listeners, "control": control_fd,
                    "control_path": control.path if control is not None else "",
                    "metrics": metrics_fd, "ready": ready_w, "old_pid": os.getpid()}
        env = dict(os.environ, **{HANDOVER_VAR: json.dumps(handover)})
        env.pop("WATCHDOG_PID", None)  # systemd's watchdog follows MAINPID to the new one
        passed = [fd for fd in (*listeners.values(), control_fd, metrics_fd, ready_w)
                  if fd is not None]
        started = time.monotonic()
        try:
            proc = subprocess.Popen(self.argv, pass_fds=passed, env=env)
        except OSError as exc:
            for fd in (ready_r, ready_w):
                private.discard(fd)
                os.close(fd)
            raise self._failed(f"could not start {self.argv[0]}: {exc.strerror or exc}") \
                from None
        self.sup.handover.keep_child(proc.pid)  # not an orphan: never swept or reaped here
        self._starting = proc
        private.discard(ready_w)
        os.close(ready_w)  # the new one holds the only write end: EOF means it is gone
        log.info("upgrade: started supervisor pid %d, waiting up to %gs for it to be ready",
                 proc.pid, self.sup.config.upgrade_timeout)
        try:
            said = _read_ready(ready_r, self.sup.config.upgrade_timeout)
        finally:
            private.discard(ready_r)
            os.close(ready_r)
        took = time.monotonic() - started
        if not said.startswith("ready") or self.sup.state != "running":
            if said == "timeout":
                why = f"was not ready within {self.sup.config.upgrade_timeout:g}s"
            elif said:
                why = f"was ready but this one is {self.sup.state} meanwhile"
            else:
                why = "exited before it was ready"
            status = self._stop(proc)
            if not said:
                why = f"exited with status {status} before it was ready (see its error above)"
            raise self._failed(f"the new supervisor (pid {proc.pid}) {why}")
        self._starting = None
        self._hand_over(proc.pid, control)
        log.info("upgrade: supervisor pid %d is ready after %.2fs; this one (pid %d) drains "
                 "and exits", proc.pid, took, os.getpid())
        self.sup.shutdown(0)
        return (f"upgraded: supervisor pid {proc.pid} serves (ready in {took:.2f}s); "
                f"pid {os.getpid()} drains and exits")

    def abort(self) -> None:
        """This supervisor stops while a new one starts: the new one must not outlive it
        unasked (called as the supervisor exits)."""
        proc = self._starting
        if proc is not None:
            log.warning("upgrade: stopping the new supervisor (pid %d): this one is exiting",
                        proc.pid)
            self._stop(proc)

    def _hand_over(self, pid: int, control: ControlServer | None) -> None:
        self.handed_over = True
        self.sup.handover.hand_over(pid)
        if control is not None:
            control.stop(keep_path=True)  # status and commands reach the new one from now on
        self._notify(MAINPID=pid, STATUS=f"upgraded: supervisor pid {pid} took over")

    def _stop(self, proc: subprocess.Popen[bytes]) -> int:
        """TERM the failed new supervisor (its ready workers finish what they accepted), KILL
        what is left after its grace, and reap it."""
        config = self.sup.config
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(config.shutdown_timeout + config.kill_timeout + 1.0)
                except subprocess.TimeoutExpired:
                    osproc.kill_descendants(proc.pid)
                    proc.kill()
            return proc.wait()
        finally:
            self._starting = None
            self.sup.handover.release_child(proc.pid)

    def _failed(self, why: str) -> JanusError:
        message = f"upgrade failed: {why}; still serving as pid {os.getpid()}, unchanged"
        log.error("%s", message)
        return JanusError(message)


def _refused(why: str) -> JanusError:
    log.warning("upgrade refused: %s", why)
    return JanusError(f"upgrade refused: {why}")


def _read_ready(fd: int, timeout: float) -> str:
    """The new supervisor's line: "ready <pid>", "" at EOF (it exited), or "timeout"."""
    deadline = time.monotonic() + timeout
    data = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while b"\n" not in data and len(data) < _READY_LINE_MAX:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            return "timeout"
        chunk = os.read(fd, _READY_LINE_MAX)
        if not chunk:
            return ""
        data += chunk
    return data.decode(errors="replace").strip()
