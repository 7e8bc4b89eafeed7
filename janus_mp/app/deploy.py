"""A supervisor deployed from the command line: control socket, reload, logs, systemd.

The supervisor core knows nothing of these; this shell attaches them through the core's hooks
(``signal_handlers``, ``on_turn``, ``on_shutdown``, ``call_later``) and serves the control
commands off the loop, asking the loop only for what it must.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psutil

from janus_mp.app import worker_signals
from janus_mp.app.control import STREAM_IDLE_CHECK, ControlServer, StreamReply
from janus_mp.app.log_writer import LogDropsCollector, LogWriter
from janus_mp.app.service_logs import SUPERVISOR, ServiceLogs, follower_items
from janus_mp.app.systemd import SystemdNotifier
from janus_mp.app.upgrade import Handover, Upgrader
from janus_mp.app.watch import FileWatcher
from janus_mp.core.selection import select_services
from janus_mp.core.snapshots import SupervisorSnapshot
from janus_mp.errors import JanusError, UnknownServiceError
from janus_mp.pools.hosted import HostedPools
from janus_mp.pools.metrics import PoolMetrics
from janus_mp.runtime.supervisor import JanusSupervisor

log = logging.getLogger("janus_mp.deploy")

#: Notices an `events -f` client may fall behind by before it loses some (and is told).
EVENTS_BUFFER = 256
#: The most a client may ask for: each notice held for a slow follower costs memory.
MAX_EVENTS_BUFFER = 10_000

#: Re-reads the configuration and applies it to the supervisor; returns a summary line.
Reloader = Callable[[JanusSupervisor], str]


class Deployment:
    def __init__(self, sup: JanusSupervisor, *, socket_path: str | None,
                 reloader: Reloader | None = None,
                 reopen_logs: Callable[[], None] | None = None, title: str | None = None,
                 log_writer: LogWriter | None = None, upgrade_argv: list[str] | None = None,
                 handover: Handover | None = None, watch_root: str | None = None,
                 service_logs: ServiceLogs | None = None,
                 pools: HostedPools | None = None) -> None:
        self.sup = sup
        #: ``[pools.NAME]`` task pools (opened on the first turn, in the loop).
        self.pools = pools
        self._pools_open = False
        self.title = title
        self.socket_path = socket_path
        self.reloader = reloader
        self.reopen_logs = reopen_logs
        self._control: ControlServer | None = None
        self._notifier = SystemdNotifier.from_env()
        self._ready_sent = False
        self._last_status = ""
        self._reload_lock = threading.Lock()
        self._procs: dict[int, psutil.Process] = {}
        self._log_writer_to_serve = log_writer  # its drop counter joins /metrics at start
        #: Called once, in the loop, when every service's workers are first all ready.
        self.on_ready: list[Callable[[], None]] = []
        self._all_ready = False
        #: Set when the previous supervisor handed its sockets to this one (an upgrade).
        self.handover = handover
        self.upgrader = None if upgrade_argv is None else Upgrader(
            sup, upgrade_argv, control=lambda: self._control, notify=self._notify)
        self._watcher = None if watch_root is None else FileWatcher(watch_root,
                                                                    self._on_files_changed)
        #: The workers' captured output: files, recent lines, `logs -f` (None: the default,
        #: every line into the supervisor's log, and no `logs` command).
        self.service_logs = service_logs

    def run(self) -> int:
        if self.title:
            from janus_mp.runtime.worker import _set_title

            _set_title(self.title)
        handover = self.handover
        if self.socket_path:
            self._control = ControlServer(
                self.socket_path, self.handle, self.sup.private_fds,
                inherited_fd=handover.control_fd if handover is not None else None)
            self._control.start()
        if handover is not None:
            self.on_ready.append(handover.tell_ready)
        if self.on_ready:
            self.sup.on_turn.append(self._watch_ready)
        if self.upgrader is not None:
            self.sup.signal_handlers[signal.SIGUSR2] = self._on_usr2
        if self._watcher is not None:
            self._watcher.start()
        if self.service_logs is not None:
            self.sup.output.sink = self.service_logs
        if self._log_writer_to_serve is not None:
            self.sup.on_turn.append(self._serve_log_drops)
        if self.pools is not None:
            self.sup.on_turn.append(self._open_pools)
        self.sup.signal_handlers[signal.SIGHUP] = self._on_hup
        self.sup.signal_handlers[signal.SIGUSR1] = self._on_usr1
        if self._notifier is not None:
            self.sup.on_turn.append(self._notify_progress)
            self.sup.on_shutdown.append(lambda: self._notify(STOPPING=1, STATUS="stopping"))
            interval = self._notifier.watchdog_interval()
            if interval:
                self._schedule_watchdog(interval)
        try:
            return self.sup.run_until_shutdown()
        finally:
            if self.upgrader is not None:
                self.upgrader.abort()
            if self._watcher is not None:
                self._watcher.stop()
            if self.service_logs is not None:
                self.service_logs.close()  # after the capture wrote the workers' last lines
            if self._control is not None:
                self._control.stop()
            if self._notifier is not None:
                self._notifier.close()
            if self.pools is not None:
                self.pools.close()

    def _open_pools(self) -> None:
        """On the first turn (in the loop, the registry exists): serve the pools' sockets,
        add their metrics."""
        pools = self.pools
        if pools is None or self._pools_open:
            return
        self._pools_open = True
        pools.open()
        if self.sup.registry is not None:
            self.sup.registry.register(PoolMetrics(pools))

    def _serve_log_drops(self) -> None:
        """On the first turn (the registry exists once the supervisor runs): add the log
        writer's drop counter to /metrics."""
        writer = self._log_writer_to_serve
        if writer is None or self.sup.registry is None:
            return
        self.sup.registry.register(LogDropsCollector(writer))
        self._log_writer_to_serve = None  # done: later turns return at once

    # -- control commands (run in the control thread) ----------------------------------------
    def handle(self, request: dict[str, Any]) -> Any:
        command = request["command"]
        sup = self.sup
        if command == "status":
            return self.status()
        if command == "reload":
            return self.reload()
        if command == "upgrade":
            if self.upgrader is None:
                raise JanusError("upgrade needs a supervisor started by `janus-mp run` with "
                                 "its services (not a JanusSupervisor target)")
            return self.upgrader.upgrade()
        if command == "logs":
            return self.logs(request)
        if command == "shutdown":
            sup.shutdown(0, fast=bool(request.get("fast", False)))
            return "shutting down"
        if command == "events":
            buffer = request.get("buffer", EVENTS_BUFFER)
            if isinstance(buffer, bool) or not isinstance(buffer, int) or \
                    not 1 <= buffer <= MAX_EVENTS_BUFFER:
                raise ValueError(f"events: buffer must be an integer from 1 to "
                                 f"{MAX_EVENTS_BUFFER}")
            return self.events(follow=bool(request.get("follow")), buffer=buffer)
        service = request.get("service")
        if not isinstance(service, str):
            raise ValueError(f"{command}: a \"service\" name is required")
        if command in ("restart", "stop", "start", "signal"):
            names = select_services(service, sup.service_names,
                                    {g.name: g.members for g in sup.snapshot().groups})
            return self._each(command, names, request)
        if service not in sup.service_names:
            raise UnknownServiceError(service, sup.service_names)
        if command == "scale":
            workers = request.get("workers")
            if isinstance(workers, str) and workers[:1] in "+-" and workers[1:].isdigit():
                # Relative: applied in the loop to the size at that moment, so concurrent
                # "+1"s all count (reading the size here and setting it would lose some).
                workers = sup.scale_by(service, int(workers))
                return f"{service} scaled to {workers}"
            if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
                raise ValueError("scale: workers must be an integer >= 0 (or +N / -N)")
            sup.scale(service, workers)
            return f"{service} scaled to {workers}"
        raise ValueError(f"unknown command {command!r} (status, restart, scale, stop, start, "
                         "signal, reload, upgrade, shutdown, events, logs)")

    def _each(self, command: str, names: tuple[str, ...], request: dict[str, Any]) -> str:
        """restart, stop, start or signal every service a name stands for (itself, a group's
        members, or all)."""
        sup = self.sup
        listed = ", ".join(names) or "no service"
        if command == "restart":
            for name in names:
                sup.restart_service(name)
            return f"rolling restart of {listed} started"
        if command == "stop":
            for name in names:
                sup.stop_service(name)
            return f"{listed} stopping"
        if command == "start":
            for name in names:
                sup.start_service(name)
            return f"{listed} starting"
        signum = worker_signals.parse_signal(request.get("signal"))
        pids = {s.name: [pid for w in s.workers for pid in w.pids]
                for s in sup.snapshot().services if s.name in names}
        sent = [pid for name in names for pid in worker_signals.send(
            worker_signals.targets(sup.service_object(name), pids.get(name, [])), signum)]
        return (f"{signum.name} sent to {len(sent)} process{'es' * (len(sent) != 1)} of "
                f"{listed}" + (f" ({', '.join(map(str, sent))})" if sent else ""))

    def logs(self, request: dict[str, Any]) -> list[str] | StreamReply:
        """Recent lines of one service (or all), and with ``follow`` every line after them."""
        logs = self.service_logs
        if logs is None:
            raise JanusError("logs: this supervisor keeps no output (started from the Python "
                             "API?)")
        service = request.get("service")
        if request.get("supervisor"):  # the supervisor's own lines, supervisorctl's maintail
            if service is not None:
                raise ValueError("logs: give a service or supervisor, not both")
            service = SUPERVISOR
        elif service is not None and (not isinstance(service, str)
                                      or service not in self.sup.service_names):
            raise UnknownServiceError(str(service), self.sup.service_names)
        count = request.get("lines", 20)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError("logs: lines must be an integer >= 0")
        if not request.get("follow"):
            return logs.recent(service, count)
        recent, follower = logs.follow(service, count)
        return StreamReply(follower_items(follower), lambda: logs.unfollow(follower),
                           first=recent)

    def status(self) -> dict[str, Any]:
        snapshot = self.sup.snapshot().to_dict()
        for service in snapshot["services"]:
            for worker in service["workers"]:
                worker["processes"] = [self._process_stats(pid) for pid in worker["pids"]]
        snapshot["supervisor"] = self._process_stats(snapshot["pid"])
        snapshot["recent_exits"] = self.sup.recent_exits()
        snapshot["hooks"] = self.sup.hook_runs
        if self.pools is not None:
            snapshot["pools"] = self.pools.snapshot()
        live = set()
        for service in snapshot["services"]:
            live.update(service["pids"])
        for pid in list(self._procs):
            if pid not in live and pid != snapshot["pid"]:
                del self._procs[pid]
        return snapshot

    def _process_stats(self, pid: int) -> dict[str, Any]:
        try:
            proc = self._procs.get(pid)
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
            with proc.oneshot():
                return {"pid": pid, "cpu_percent": proc.cpu_percent(None),
                        "rss_bytes": proc.memory_info().rss}
        except psutil.Error:
            return {"pid": pid, "cpu_percent": None, "rss_bytes": None}

    def events(self, *, follow: bool, buffer: int = EVENTS_BUFFER) -> StreamReply:
        """The recent lifecycle notices, then (``follow``) every new one as it happens, with
        ``{"lost": N}`` where this client fell more than ``buffer`` behind."""
        subscription = self.sup.subscribe(buffer, history=True)

        def items() -> Iterator[dict[str, Any] | None]:
            offset = subscription.wall_offset()
            for notice in subscription.history:
                yield notice.to_dict(offset)
            while follow and not subscription.closed:
                batch, lost = subscription.get(STREAM_IDLE_CHECK)
                if lost:
                    yield {"lost": lost}
                for notice in batch:
                    yield notice.to_dict(offset)
                if not batch and not lost:
                    yield None  # idle: the server checks the client is still there

        return StreamReply(items(), subscription.close, finite=not follow)

    def reload(self) -> str:
        if self.reloader is None:
            raise JanusError("reload needs a config file: this supervisor was started without one")
        with self._reload_lock:
            summary = self.reloader(self.sup)
        log.info("reloaded: %s", summary)
        return summary

    # -- signals (dispatched by the loop) ------------------------------------------------------
    def _on_hup(self) -> None:
        # Importing targets may take a while: never in the loop thread.
        threading.Thread(target=self._reload_logged, name="janus-mp-reload", daemon=True).start()

    def _reload_logged(self) -> None:
        try:
            self.reload()
        except JanusError as exc:
            log.error("reload failed, nothing changed: %s", exc)
        except Exception:
            log.exception("reload failed, nothing changed")

    def _on_usr2(self) -> None:
        threading.Thread(target=self._upgrade_logged, name="janus-mp-upgrade",
                         daemon=True).start()

    def _upgrade_logged(self) -> None:
        assert self.upgrader is not None
        try:
            self.upgrader.upgrade()
        except JanusError:
            pass  # the upgrader logged why, in one line
        except Exception:
            log.exception("upgrade failed; still serving")

    def _on_files_changed(self, paths: list[str]) -> None:
        """--reload: new workers on the new code (see app/watch.py)."""
        if self.sup.state != "running" or (self.upgrader and self.upgrader.handed_over):
            return
        shown = ", ".join(os.path.relpath(p) for p in paths[:3]) + " ..." * (len(paths) > 3)
        if self.sup.config.start_method in ("spawn", "forkserver"):
            log.info("files changed (%s): rolling restart of every service", shown)
            for name in self.sup.service_names:
                self.sup.restart_service(name)
        elif self.upgrader is not None:
            log.info("files changed (%s): upgrading the supervisor (fork)", shown)
            self.upgrader.upgrade()

    def _watch_ready(self) -> None:
        if self._all_ready or self.sup.state != "running":
            return
        ready, desired = _ready_desired(self.sup.snapshot())
        if ready < desired:
            return
        self._all_ready = True
        for callback in self.on_ready:
            try:
                callback()
            except Exception:
                log.exception("a ready callback failed")

    def _on_usr1(self) -> None:
        if self.reopen_logs is not None:
            self.reopen_logs()
        if self.service_logs is not None:
            self.service_logs.reopen()
        if self.reopen_logs is not None or self.service_logs is not None:
            log.info("log files reopened")

    # -- systemd -------------------------------------------------------------------------------
    def _notify(self, **fields: object) -> None:
        if self._notifier is not None:
            self._notifier.notify(**fields)

    def _notify_progress(self) -> None:
        if self.sup.state != "running":
            return
        snapshot = self.sup.snapshot()
        ready, desired = _ready_desired(snapshot)
        status = f"{len(snapshot.services)} services, {ready}/{desired} workers ready"
        if not self._ready_sent and ready >= desired:
            self._ready_sent = True
            self._notify(READY=1, STATUS=status, MAINPID=snapshot.pid)
            self._last_status = status
        elif status != self._last_status and self._ready_sent:
            self._notify(STATUS=status)
            self._last_status = status

    def _schedule_watchdog(self, interval: float) -> None:
        def ping() -> None:
            self._notify(WATCHDOG=1)
            if self.sup.state in ("running", "stopping"):
                self.sup.call_later(interval, ping)

        self.sup.call_later(0.0, ping)


def _ready_desired(snapshot: SupervisorSnapshot) -> tuple[int, int]:
    """Workers ready, and workers wanted by the services that run."""
    ready = sum(s.service.ready for s in snapshot.services)
    desired = sum(s.service.desired for s in snapshot.services if s.service.phase.is_alive)
    return ready, desired
