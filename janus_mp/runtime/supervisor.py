"""JanusSupervisor: one event-driven loop owning every worker process.

    signals ─► wake-up fd ───────┐
    other threads ─► call pipe ──┤
    worker pidfds (exit) ────────┼─► selector.select(timeout = nearest deadline) ─► dispatch
    worker conns (ready, recycle)┘                                        │
    timers (restart, escalation, watchdog, start timeout, half-open,      │
            max_lifetime, max_rss) ◄──────────────────────────────────────┘

    exit ─► reap (group-kill stragglers first) ─► classify_exit ─► lifecycle ─► backoff /
    circuit breaker ─► schedule respawn ─► metrics

Nothing polls: an idle supervisor sleeps in one ``select`` until a worker exits or talks, a
signal arrives, another thread asks for something, or a deadline falls due. Signal handlers do
nothing; ``signal.set_wakeup_fd`` writes the signal number into the wake-up pipe and the loop
dispatches it by name (``_on_sigterm``...).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import random
import selectors
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import multiprocess

from janus_mp import osproc
from janus_mp.core.backoff import BreakerState, CircuitOpen, RetryAfter, decide_restart
from janus_mp.core.cancel import CancellationToken
from janus_mp.core.config import SpawnOptions, SupervisorConfig, valid_service_name
from janus_mp.core.counters import MetricsSnapshot, SupervisorMetrics
from janus_mp.core.exits import ExitKind, KillCause, classify_exit
from janus_mp.core.lifecycle import (
    ServiceLifecycle,
    ServicePhase,
    TerminationReason,
    TransitionError,
)
from janus_mp.core.timers import Timers
from janus_mp.errors import ConfigError, JanusError, ServiceLoadError, UnknownServiceError
from janus_mp.metrics.http import MetricsServer
from janus_mp.metrics.store import MultiprocessMetrics
from janus_mp.private_fds import PrivateFds
from janus_mp.runtime.deadman import DeadMansSwitch
from janus_mp.runtime.listeners import ListenerSet
from janus_mp.runtime.pool import ServiceRuntime, ServiceSpec, Slot, SupervisorSnapshot, Worker
from janus_mp.runtime.shared_event import SharedEventFactory
from janus_mp.runtime.worker import WorkerSpec, worker_main
from janus_mp.service import CANCEL, READY, RECYCLE, JanusService, as_service

log = logging.getLogger("janus_mp.supervisor")
T = TypeVar("T")

HANDLED_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGUSR1",
                   "SIGCHLD")


class JanusSupervisor:
    """Supervises pools of worker processes; see the module docstring for the data flow."""

    def __init__(self, config: SupervisorConfig | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.config = config or SupervisorConfig()
        self._clock = clock
        self._rng = rng or random.Random()
        self._context = multiprocess.get_context(self.config.start_method)
        self._start_method = self._context.get_start_method()
        self._events = SharedEventFactory(self._start_method)
        self._specs: dict[str, ServiceSpec] = {}
        self._services: dict[str, ServiceRuntime] = {}
        self._metrics = SupervisorMetrics()
        self._published_metrics = self._metrics.snapshot()
        self._timers = Timers()
        self._root: CancellationToken | None = None
        self._selector: selectors.DefaultSelector | None = None
        self._state = "idle"  # idle → running → stopping → stopped
        self._exit_status = 0
        self._started_at = 0.0
        self._loop_thread: int | None = None
        self._calls: deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = deque()
        self._call_r = self._call_w = self._signal_r = self._signal_w = -1
        self._old_signals: dict[int, Any] = {}
        self._old_wakeup_fd = -1
        self._shutdown_stages: list[list[str]] = []
        self._shutdown_started = 0.0
        self._kill_pending = 0
        self._workers_by_pid: dict[int, Worker] = {}
        self._worker_fds: set[int] = set()
        self._orphans: set[int] = set()
        self._protected_pids: set[int] = set()
        self._guard: DeadMansSwitch | None = None
        #: Listening sockets bound for services (ApiModuleAdapter...), shared by their pools.
        self._listeners = ListenerSet()
        #: fds of the supervisor's own threads (control, HTTP): never inherited by workers.
        self.private_fds = PrivateFds()
        self._metrics_store: MultiprocessMetrics | None = None
        self._http: MetricsServer | None = None
        #: Everything /metrics shows: the workers' own metrics and janus_supervisor_*.
        self.registry: Any = None
        self.loop_turns = 0
        self.last_turn_at = 0.0
        #: Hooks, called in the loop thread: (pid) after a worker is reaped; signal handlers
        #: for HUP/USR1 beyond the core's (the CLI installs reload and log reopening here).
        self.on_worker_reaped: list[Callable[[int], None]] = []
        self.on_turn: list[Callable[[], None]] = []
        self._recent_exits: deque[dict[str, Any]] = deque(maxlen=50)
        self.on_shutdown: list[Callable[[], None]] = []
        self.signal_handlers: dict[int, Callable[[], None]] = {}

    # ==========================================================================================
    # Public API. Mutators are safe from any thread: off the loop thread they run in the loop.
    # ==========================================================================================
    def spawn_service(self, service: JanusService | Callable[..., Any] | type,
                      options: SpawnOptions | None = None) -> str:
        """Register a service (and start it at once if the loop runs). Returns its name."""
        options = options or SpawnOptions()
        svc = as_service(service, options.name)
        _check_watchdog(svc, options)
        name = svc.name
        if not valid_service_name(name):
            raise ConfigError("name", f"service name {name!r} must be letters, digits, '-', '_' "
                                      "or '.' (1-64 characters)")
        payload: JanusService | bytes = svc
        if self._start_method != "fork":
            payload = _pickle_for_spawn(svc, self._start_method)
        spec = ServiceSpec(name=name, service=svc, options=options, payload=payload)
        return self._in_loop(lambda: self._register(spec))

    def run_until_shutdown(self) -> int:
        """Start every service and supervise until shutdown; return the exit status."""
        if self._state != "idle":
            raise JanusError("run_until_shutdown() can run once per supervisor")
        self._open()
        try:
            for name in self._start_order():
                self._start_service(self._specs[name])
            self._after_turn()
            while not self._finished():
                self._turn()
        finally:
            self._close()
        return self._exit_status

    def shutdown(self, status: int = 0, *, fast: bool = False) -> None:
        """Ask for a graceful (or, with ``fast``, immediate SIGKILL) shutdown. Thread-safe."""
        if self._state == "idle":
            self._state = "stopped"
            self._exit_status = status
            return
        self._in_loop(lambda: self._begin_shutdown(status, fast=fast), wait=False)

    def stop_service(self, name: str) -> None:
        self._in_loop(lambda: self._stop_service(self._service(name), TerminationReason.stopped(),
                                                 by_request=True))

    def start_service(self, name: str) -> None:
        self._in_loop(lambda: self._restart_from_spec(name))

    def restart_service(self, name: str) -> None:
        """Rolling restart: one worker at a time, the new one ready before the old one stops."""
        self._in_loop(lambda: self._rolling_restart(self._service(name)))

    def scale(self, name: str, workers: int) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ConfigError("workers", "must be an integer >= 0")
        self._check_pool_size(workers)
        self._in_loop(lambda: self._scale(self._service(name), workers))

    def update_service(self, service: JanusService | Callable[..., Any] | type,
                       options: SpawnOptions) -> str:
        """Add a service, or apply new options to a running one (used by config reload).

        Only the worker count changed: the pool is scaled. Anything else changed: the new spec
        replaces the old one and the pool is rolling-restarted onto it.
        """
        svc = as_service(service, options.name)
        _check_watchdog(svc, options)
        payload: JanusService | bytes = svc
        if self._start_method != "fork":
            payload = _pickle_for_spawn(svc, self._start_method)
        spec = ServiceSpec(name=svc.name, service=svc, options=options, payload=payload)
        return self._in_loop(lambda: self._update(spec))

    def remove_service(self, name: str) -> None:
        """Stop a service and forget it (used by config reload)."""
        self._in_loop(lambda: self._remove(name))

    def snapshot(self) -> SupervisorSnapshot:
        return self._in_loop(self._snapshot)

    def metrics_snapshot(self) -> MetricsSnapshot:
        """The counters as of the loop's last turn (any thread: the loop publishes a frozen
        snapshot each turn, so readers never touch live counters)."""
        if self._state in ("idle", "stopped"):
            return self._metrics.snapshot()
        return self._published_metrics

    @property
    def metrics(self) -> SupervisorMetrics:
        return self._metrics

    @property
    def state(self) -> str:
        return self._state

    @property
    def service_names(self) -> list[str]:
        return list(self._specs)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the loop after ``delay`` seconds (from the loop thread or any other)."""
        self._in_loop(lambda: self._timers.at(self._clock() + delay, fn, "user"), wait=False)

    def listening_addresses(self, name: str) -> tuple[str, ...]:
        """Where a service's listeners are bound (the real port when port 0 was asked)."""
        return self._listeners.addresses(name)

    def recent_exits(self) -> list[dict[str, Any]]:
        """The last worker exits, newest last: when, who, and why (for status and top)."""
        return list(self._recent_exits)

    def call_in_loop(self, fn: Callable[[], T], *, timeout: float | None = None) -> T:
        """Run ``fn`` in the loop thread and return its result (directly if already there)."""
        return self._in_loop(fn, timeout=timeout)

    def handle_signal(self, signum: int) -> None:
        """Feed a signal to the loop as if it had been received (tests, embedding)."""
        self._in_loop(lambda: self._dispatch_signal(signum), wait=False)

    # ==========================================================================================
    # The loop
    # ==========================================================================================
    def _open(self) -> None:
        self._open_metrics()  # first: a bad metrics dir or a busy port starts nothing
        self._loop_thread = threading.get_ident()
        self._started_at = self.last_turn_at = self._clock()
        self._selector = selectors.DefaultSelector()
        self._call_r, self._call_w = _nonblocking_pipe()
        self._selector.register(self._call_r, selectors.EVENT_READ, self._on_calls)
        self._root = CancellationToken(self._events, name="supervisor")
        if self.config.reap_orphans:
            osproc.set_child_subreaper()
            self._guard = DeadMansSwitch()
            self._protected_pids.add(self._guard.start())
        if self.config.install_signal_handlers and \
                threading.current_thread() is threading.main_thread():
            self._install_signals()
        self._state = "running"
        self._publish_gauges()
        log.info("%s: supervisor started (pid %d, start method %s)", self.config.name,
                 os.getpid(), self._start_method)

    def _open_metrics(self) -> None:
        from prometheus_client import CollectorRegistry

        from janus_mp.metrics.export import SupervisorCollector

        store = MultiprocessMetrics(self.config.metrics_dir)
        store.prepare()
        self._metrics_store = store
        self.on_worker_reaped.append(store.process_dead)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(store.collector())
        from janus_mp.version import __version__

        registry.register(SupervisorCollector(self.metrics_snapshot, {
            "version": __version__, "start_method": self._start_method,
            "name": self.config.name}))
        self.registry = registry
        if self.config.metrics_port is not None:
            server = MetricsServer(self.config.metrics_host, self.config.metrics_port,
                                   registry=registry, health=self._healthy,
                                   readiness=self._readiness, private_fds=self.private_fds)
            try:
                server.start()
            except JanusError:
                store.close()
                raise
            self._http = server

    @property
    def metrics_port(self) -> int | None:
        """The port /metrics listens on (useful with metrics_port=0), None when off."""
        return self._http.port if self._http is not None else None

    def _healthy(self) -> bool:
        """The loop is alive and turning: it answers a no-op within a second."""
        try:
            return bool(self.call_in_loop(lambda: True, timeout=1.0))
        except Exception:
            return False

    def _readiness(self) -> tuple[bool, dict[str, Any]]:
        snapshot = self.call_in_loop(self._snapshot, timeout=2.0)
        not_ready = {
            s.name: {"phase": s.service.phase.value, "ready": s.service.ready,
                     "desired": s.service.desired}
            for s in snapshot.services
            if s.service.phase.is_alive and not (s.service.phase is ServicePhase.RUNNING
                                                 and s.service.ready >= s.service.desired)
        }
        ready = snapshot.state == "running" and not not_ready
        return ready, {"ready": ready, "state": snapshot.state, "not_ready": not_ready}

    def _close(self) -> None:
        try:
            if self._state != "stopped":  # an exception escaped the loop: leave nothing behind
                for worker in list(self._workers_by_pid.values()):
                    self._signal_worker(worker, signal.SIGKILL)
                for worker in list(self._workers_by_pid.values()):
                    worker.process.join()
                    self._on_worker_exit(worker)
            self._sweep_orphans()
            for pid in list(self._orphans):
                _blocking_reap(pid)
            self._orphans.clear()
        finally:
            if self._http is not None:
                self._http.stop()
                self._http = None
            if self._metrics_store is not None:
                self._metrics_store.close()
            self._listeners.close()
            if self._guard is not None:
                self._guard.close()
                self._protected_pids.discard(self._guard.pid or 0)
                self._guard = None
            if self.config.reap_orphans:  # the hosting process is ours no longer
                osproc.set_child_subreaper(False)
            self._restore_signals()
            if self._selector is not None:
                self._selector.close()
            osproc.close_fds([self._call_r, self._call_w, self._signal_r, self._signal_w])
            self._call_r = self._call_w = self._signal_r = self._signal_w = -1
            self._state = "stopped"
            self._fail_pending_calls()
            log.info("%s: supervisor stopped (exit status %d) %s", self.config.name,
                     self._exit_status, _format_totals(self._metrics.snapshot()))

    def _turn(self) -> None:
        assert self._selector is not None
        deadline = self._timers.next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - self._clock())
        for key, _ in self._selector.select(timeout):
            key.data(key.fileobj)
        now = self._clock()
        for timer in self._timers.pop_due(now):
            timer.callback()
        self._after_turn()

    def _after_turn(self) -> None:
        self.loop_turns += 1
        self.last_turn_at = self._clock()
        for service in list(self._services.values()):
            if service.name not in self._specs and not service.live_workers() and \
                    service.lifecycle.phase is ServicePhase.TERMINATED:
                del self._services[service.name]  # removed by a reload, now fully stopped
                service.token.detach()
                continue
            if service.half_open_pending and not service.live_workers():
                service.half_open_pending = False
                self._half_open(service)
            self._sync_service_phase(service)
        if self._state == "stopping":
            self._advance_shutdown()
        elif self._state == "running" and self._all_ended_by_themselves():
            failed = any(s.end_reason is not None and s.end_reason.kind.value != "completed"
                         for s in self._services.values())
            self._begin_shutdown(1 if failed else 0)
        self._publish_gauges()
        for hook in self.on_turn:
            hook()

    def _finished(self) -> bool:
        return self._state == "stopping" and not self._workers_by_pid and not self._orphans

    # ==========================================================================================
    # Services
    # ==========================================================================================
    def _check_pool_size(self, workers: int) -> None:
        if workers > self.config.max_workers:
            raise ConfigError("workers", f"{workers} is more than max_workers "
                                         f"({self.config.max_workers})")

    def _register(self, spec: ServiceSpec) -> str:
        self._check_pool_size(spec.options.workers)
        if spec.name in self._specs:
            raise ConfigError("name", f"a service named {spec.name!r} is already registered")
        self._bind(spec)
        self._specs[spec.name] = spec
        self._metrics.register_service(spec.name)
        if self._state == "running":
            self._start_service(spec)
        return spec.name

    def _update(self, spec: ServiceSpec) -> str:
        self._check_pool_size(spec.options.workers)
        old = self._specs.get(spec.name)
        if old is None:
            return self._register(spec)
        self._bind(spec)
        self._specs[spec.name] = spec
        runtime = self._services.get(spec.name)
        if runtime is None or self._state != "running" or runtime.stopping:
            return spec.name
        same_but_workers = dataclasses.replace(old.options, workers=spec.options.workers)
        code_changed = old.service.identity() != spec.service.identity()
        runtime.spec = spec
        runtime.options = spec.options
        runtime.exit_policy = spec.options.exit_policy()
        runtime.backoff_config = spec.options.backoff_or(self.config.backoff)
        runtime.breaker.config = runtime.backoff_config
        if spec.options.workers != old.options.workers:
            self._scale(runtime, spec.options.workers)
        if code_changed or same_but_workers != spec.options:
            self._rolling_restart(runtime)
        self._arm_rss_check(runtime)
        return spec.name

    def _remove(self, name: str) -> None:
        runtime = self._service(name)
        self._stop_service(runtime, TerminationReason.stopped(), by_request=True)
        self._specs.pop(name, None)
        self._listeners.release(name)  # draining workers keep their own copies until they exit

    def _bind(self, spec: ServiceSpec) -> None:
        """Bind the service's listeners now, before any of its workers exists: a refused
        address fails the registration in one line and starts nothing."""
        service = spec.service
        if service.binds or self._listeners.sockets(spec.name):
            self._listeners.bind(spec.name, tuple(service.binds), service.backlog)
            for address in self._listeners.addresses(spec.name):
                log.info("%s: listening on %s", spec.name, address)

    def _start_order(self) -> list[str]:
        return sorted(self._specs, key=lambda n: self._specs[n].options.start_order)

    def _start_service(self, spec: ServiceSpec) -> ServiceRuntime:
        assert self._root is not None
        now = self._clock()
        token = self._root.child(spec.name)
        runtime = ServiceRuntime(spec, token, spec.options.backoff_or(self.config.backoff), now)
        self._services[spec.name] = runtime
        for index in range(runtime.desired):
            slot = runtime.slots[index] = Slot(index, ServiceLifecycle(spec.name, now))
            self._spawn(runtime, slot)
        self._arm_rss_check(runtime)
        return runtime

    def _service(self, name: str) -> ServiceRuntime:
        runtime = self._services.get(name)
        if runtime is None:
            raise UnknownServiceError(name, list(self._specs))
        return runtime

    def _restart_from_spec(self, name: str) -> None:
        if name not in self._specs:
            raise UnknownServiceError(name, list(self._specs))
        current = self._services.get(name)
        if current is not None and current.lifecycle.phase is not ServicePhase.TERMINATED:
            return  # already running: start is idempotent
        if current is not None and current.live_workers():
            raise JanusError(f"service {name!r} is still stopping; try again when it has stopped")
        if self._state != "running":
            raise JanusError("the supervisor is shutting down")
        if current is not None:
            current.token.detach()
        self._start_service(self._specs[name])

    def _stop_service(self, service: ServiceRuntime, reason: TerminationReason, *,
                      by_request: bool = False, term_at: float | None = None) -> None:
        if service.stopping:
            return
        service.stopping = True
        service.stop_reason = reason
        service.stopped_by_request = by_request
        service.rolling.clear()
        for timer in (service.half_open_timer, service.trial_timer, service.rss_timer):
            if timer is not None:
                timer.cancel()
        now = self._clock()
        if term_at is None:
            term_at = now + self._grace(service)
        for slot in service.slots.values():
            slot.cancel_restart()
            if not slot.workers() and slot.lifecycle.phase.is_alive:
                _move(slot.lifecycle, ServicePhase.STOPPING, now)
        for worker in service.live_workers():
            self._stop_worker(worker, KillCause.STOP_REQUESTED, term_at)
        service.token.cancel("service stopped")
        self._sync_service_phase(service)

    def _grace(self, service: ServiceRuntime) -> float:
        stop_timeout = service.options.stop_timeout
        return self.config.shutdown_timeout if stop_timeout is None else stop_timeout

    def _scale(self, service: ServiceRuntime, workers: int) -> None:
        if service.stopping or self._state != "running":
            raise JanusError(f"service {service.name!r} is stopping; it cannot be scaled")
        now = self._clock()
        service.desired = workers
        live = sorted(i for i, s in service.slots.items() if not s.removed)
        for index in live:
            if index >= workers:
                self._remove_slot(service, service.slots[index], now)
        for index in range(workers):
            slot = service.slots.get(index)
            if slot is None or slot.removed:
                if slot is not None and slot.workers():
                    continue  # still draining from an earlier scale-down; _reap revives it
                slot = service.slots[index] = Slot(index, ServiceLifecycle(service.name, now))
                if service.breaker.allows_restarts:
                    self._spawn(service, slot)
                else:
                    _move(slot.lifecycle, ServicePhase.CIRCUIT_OPEN, now)
        log.info("%s: scaled to %d workers", service.name, workers)

    def _remove_slot(self, service: ServiceRuntime, slot: Slot, now: float) -> None:
        slot.removed = True
        slot.cancel_restart()
        if slot.index in service.rolling:
            service.rolling.remove(slot.index)
        workers = slot.workers()
        if not workers:
            del service.slots[slot.index]
            return
        for worker in workers:
            self._stop_worker(worker, KillCause.STOP_REQUESTED, now + self._grace(service))

    def _rolling_restart(self, service: ServiceRuntime) -> None:
        if service.stopping or self._state != "running":
            raise JanusError(f"service {service.name!r} is not running")
        service.rolling = deque(sorted(i for i, s in service.slots.items() if not s.removed))
        log.info("%s: rolling restart of %d workers", service.name, len(service.rolling))
        self._advance_rolling(service)

    def _advance_rolling(self, service: ServiceRuntime) -> None:
        """Replace the next slot once no replacement is in flight."""
        if any(s.incoming is not None for s in service.slots.values()):
            return
        while service.rolling:
            slot = service.slots.get(service.rolling.popleft())
            if slot is None or slot.removed:
                continue
            if slot.current is None:  # nothing to replace (backing off): it restarts anyway
                continue
            if slot.recycling is not None and slot.recycling is not slot.current:
                slot.recycling = None  # the worker that asked is gone already
                continue
            self._spawn(service, slot, role="incoming")
            return

    # ==========================================================================================
    # Workers: spawn, talk, exit
    # ==========================================================================================
    def _spawn(self, service: ServiceRuntime, slot: Slot, role: str = "current") -> None:
        assert self._selector is not None
        now = self._clock()
        generation = slot.generation + 1
        token = service.token.child(f"{service.name}[{slot.index}]")
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        heartbeat = self._context.RawValue("d", now)
        fork = self._start_method == "fork"
        spec = WorkerSpec(
            service_name=service.name, index=slot.index, generation=generation,
            supervisor_pid=os.getpid(), token=token, conn=child_conn, heartbeat=heartbeat,
            service=service.spec.payload,
            close_fds=(),
            wait_for_ready=service.options.wait_for_ready,
            direct_child=self._start_method != "forkserver",
            metrics=self._metrics_store,
            title=f"janus-mp: {service.name} worker {slot.index} (gen {generation})",
            listeners=self._listeners.sockets(service.name),
            max_requests=self._request_limit(service.options),
            stop_timeout=self._grace(service),
            watchdog_timeout=service.options.watchdog_timeout,
        )
        process = self._context.Process(target=worker_main, args=(spec,), daemon=False,
                                        name=f"janus-mp:{service.name}[{slot.index}]")
        try:
            with self.private_fds.frozen() as threads_fds:
                if fork:  # the child closes them first thing (see WorkerSpec.close_fds)
                    spec.close_fds = (*self._private_fds(), parent_conn.fileno(), *threads_fds,
                                      *self._listeners.fds_except(service.name))
                process.start()
        except OSError as exc:  # fork failed (EAGAIN under RLIMIT_NPROC, ENOMEM): back off
            parent_conn.close()
            child_conn.close()
            token.detach()
            log.error("%s[%d]: cannot start a worker: %s", service.name, slot.index, exc)
            self._schedule_after_spawn_failure(service, slot, role, str(exc))
            return
        finally:
            if process.pid is not None:
                child_conn.close()
        _forget_in_multiprocess(process)
        pid = process.pid
        if fork:
            try:  # both sides set the group, so a kill right after start cannot miss it
                os.setpgid(pid, pid)
            except OSError:
                pass
        pidfd = osproc.pidfd_open(pid)
        worker = Worker(service=service.name, slot=slot.index, generation=generation,
                        process=process, pid=pid, pidfd=pidfd, conn=parent_conn, token=token,
                        heartbeat=heartbeat, started_at=now,
                        direct_child=self._start_method != "forkserver", role=role)
        token.on_cancel(lambda _node: _send(worker.conn, CANCEL))
        self._workers_by_pid[pid] = worker
        self._worker_fds.add(parent_conn.fileno())
        if pidfd is not None:
            self._worker_fds.add(pidfd)
        if self._guard is not None:
            self._guard.track(pid)
        exit_source = pidfd if pidfd is not None else process.sentinel
        self._selector.register(exit_source, selectors.EVENT_READ,
                                lambda _f, w=worker: self._on_worker_exit(w))
        self._selector.register(parent_conn, selectors.EVENT_READ,
                                lambda _f, w=worker: self._on_worker_message(w))
        slot.generation = generation
        slot.backoff.record_start(now)
        if role == "incoming":
            slot.incoming = worker
        else:
            slot.current = worker
        start_timeout = service.options.start_timeout
        if start_timeout is not None:
            worker.timers.append(self._timers.at(
                now + start_timeout, lambda: self._on_start_timeout(worker), "start"))
        self._metrics.record_spawn(service.name)
        log.debug("%s[%d]: started pid %d (gen %d)", service.name, slot.index, pid, generation)

    def _private_fds(self) -> list[int]:
        """Supervisor fds a forked worker must not keep (they would hide EOFs and leak).
        Worker fds are kept in a set as workers come and go: no walk over every worker."""
        fds = [self._call_r, self._call_w, self._signal_r, self._signal_w, *self._worker_fds]
        if self._guard is not None:
            fds.append(self._guard.fileno)
        if isinstance(self._selector, selectors.EpollSelector):
            fds.append(self._selector.fileno())
        return [fd for fd in fds if fd >= 0]

    def _on_worker_message(self, worker: Worker) -> None:
        try:
            while worker.conn.poll():
                message = worker.conn.recv_bytes(64)
                if message == READY:
                    self._on_ready(worker)
                elif message.startswith(RECYCLE):
                    self._recycle(worker, message[1:].decode("utf-8", "replace") or "asked")
        except (EOFError, OSError):
            self._unregister(worker.conn)  # the worker is exiting; its pidfd will tell us

    def _on_ready(self, worker: Worker) -> None:
        if worker.ready_at is not None or worker.exited:
            return
        now = self._clock()
        worker.ready_at = now
        service = self._services[worker.service]
        slot = service.slots[worker.slot]
        for timer in worker.timers:
            if timer.label == "start":
                timer.cancel()
        watchdog = service.options.watchdog_timeout
        if watchdog is not None:
            self._arm_watchdog(worker, watchdog, now)
        lifetime = service.options.max_lifetime
        if lifetime is not None:
            at = now + lifetime + self._rng.uniform(0, service.options.max_lifetime_jitter)
            worker.timers.append(self._timers.at(
                at, lambda: self._recycle(worker, f"max_lifetime {lifetime:g}s reached"),
                "lifetime"))
        if worker.role == "incoming":
            if not service.stopping and worker.stop_cause is None:
                self._promote(service, slot, worker)
            return
        if worker.role == "current" and slot.lifecycle.phase is ServicePhase.STARTING:
            slot.lifecycle.mark_running(now)
        if service.breaker.state is BreakerState.HALF_OPEN and service.trial_timer is None:
            trial = service.backoff_config.trial_period
            service.trial_timer = self._timers.at(
                now + trial, lambda: self._close_breaker(service, worker), "trial")

    def _promote(self, service: ServiceRuntime, slot: Slot, incoming: Worker) -> None:
        """A replacement is ready: it becomes current; the old worker drains."""
        now = self._clock()
        old = slot.current
        slot.current, slot.incoming = incoming, None
        incoming.role = "current"
        slot.restarts += 1
        if slot.lifecycle.phase is not ServicePhase.RUNNING:
            _move(slot.lifecycle, ServicePhase.RUNNING, now)
        if old is not None:
            cause = KillCause.RECYCLE if slot.recycling is old else KillCause.REPLACE
            old.role = "retiring"
            service.retiring.append(old)
            self._stop_worker(old, cause, now + self._grace(service))
        slot.recycling = None
        self._advance_rolling(service)

    # -- recycling: replace a worker gracefully, one slot of a service at a time ---------------
    def _recycle(self, worker: Worker, why: str) -> None:
        """Queue ``worker`` for replacement: a successor starts, and once it is ready the old
        worker drains (reason "recycled"). One replacement per service is in flight at a time,
        so the pool never has fewer than N-1 ready workers; usually it keeps N."""
        service = self._services.get(worker.service)
        if service is None or service.stopping or self._state != "running":
            return
        slot = service.slots.get(worker.slot)
        if slot is None or slot.removed or slot.current is not worker or \
                worker.stop_cause is not None or worker.exited or slot.recycling is worker:
            return
        log.info("%s[%d] (pid %d): recycling: %s", service.name, slot.index, worker.pid, why)
        slot.recycling = worker
        if slot.index not in service.rolling:
            service.rolling.append(slot.index)
        self._advance_rolling(service)

    def _request_limit(self, options: SpawnOptions) -> int | None:
        if options.max_requests is None:
            return None
        return options.max_requests + self._rng.randint(0, options.max_requests_jitter)

    def _arm_rss_check(self, service: ServiceRuntime) -> None:
        if service.rss_timer is not None:
            service.rss_timer.cancel()
            service.rss_timer = None
        if service.options.max_rss is None or service.stopping:
            return
        service.rss_timer = self._timers.at(self._clock() + service.options.rss_check_interval,
                                            lambda: self._check_rss(service), "rss")

    def _check_rss(self, service: ServiceRuntime) -> None:
        import psutil

        service.rss_timer = None
        limit = service.options.max_rss
        if limit is None or service.stopping or self._services.get(service.name) is not service:
            return
        assert isinstance(limit, int)
        for slot in service.slots.values():
            worker = slot.current
            if worker is None or not worker.ready or worker.stop_cause is not None:
                continue
            try:
                rss = psutil.Process(worker.pid).memory_info().rss
            except psutil.Error:
                continue
            if rss > limit:
                self._recycle(worker, f"rss {rss / 2**20:.0f} MiB > max_rss "
                                      f"{limit / 2**20:.0f} MiB")
        self._arm_rss_check(service)

    def _arm_watchdog(self, worker: Worker, timeout: float, now: float) -> None:
        last = max(worker.heartbeat.value, worker.ready_at or now)

        def check() -> None:
            if worker.exited or worker.stop_cause is not None:
                return
            seen = worker.heartbeat.value
            current = self._clock()
            if current - seen >= timeout:
                log.warning("%s[%d] (pid %d): no heartbeat for %.1fs: killing it",
                            worker.service, worker.slot, worker.pid, current - seen)
                self._kill_now(worker, KillCause.WATCHDOG)
            else:
                worker.timers.append(self._timers.at(seen + timeout, check, "watchdog"))

        worker.timers.append(self._timers.at(last + timeout, check, "watchdog"))

    def _on_start_timeout(self, worker: Worker) -> None:
        if worker.exited or worker.ready or worker.stop_cause is not None:
            return
        log.warning("%s[%d] (pid %d): not ready after its start timeout: killing it",
                    worker.service, worker.slot, worker.pid)
        self._kill_now(worker, KillCause.START_TIMEOUT)

    def _kill_now(self, worker: Worker, cause: KillCause) -> None:
        worker.stop_cause = cause
        self._signal_worker(worker, signal.SIGKILL)

    def _stop_worker(self, worker: Worker, cause: KillCause, term_at: float) -> None:
        """Cooperative stop through the token; SIGTERM at ``term_at``; SIGKILL after that."""
        if worker.exited:
            return
        if worker.stop_cause is None or worker.stop_cause in (KillCause.WATCHDOG,
                                                              KillCause.START_TIMEOUT):
            worker.stop_cause = worker.stop_cause or cause
        worker.token.cancel("stop requested by the supervisor")
        if worker.role == "current":
            service = self._services.get(worker.service)
            slot = service.slots.get(worker.slot) if service else None
            if slot is not None and slot.current is worker and slot.lifecycle.phase.is_alive:
                _move(slot.lifecycle, ServicePhase.STOPPING, self._clock())
        kill_at = term_at + self.config.kill_timeout
        worker.timers.append(self._timers.at(
            term_at, lambda: self._escalate(worker, signal.SIGTERM), "term"))
        worker.timers.append(self._timers.at(
            kill_at, lambda: self._escalate(worker, signal.SIGKILL), "kill"))

    def _escalate(self, worker: Worker, signum: int) -> None:
        if worker.exited:
            return
        log.warning("%s[%d] (pid %d): still running: sending %s", worker.service, worker.slot,
                    worker.pid, signal.Signals(signum).name)
        self._signal_worker(worker, signum)

    def _signal_worker(self, worker: Worker, signum: int) -> None:
        if worker.exited:
            return
        if not osproc.signal_group(worker.pid, signum):
            osproc.signal_process(worker.pid, signum)

    def _on_worker_exit(self, worker: Worker) -> None:
        if worker.exited:
            return
        worker.exited = True
        self._unregister(worker.pidfd if worker.pidfd is not None else worker.process.sentinel)
        self._unregister(worker.conn)
        self._drain_messages(worker)
        # The zombie pins its pid as a group id: kill what is left of its group, then reap.
        osproc.signal_group(worker.pid, signal.SIGKILL)
        returncode = worker.process.exitcode
        if returncode is None:
            returncode = _wait_exitcode(worker.process)
        worker.process.close()
        worker.cancel_timers()
        self._worker_fds.discard(worker.conn.fileno())
        if worker.pidfd is not None:
            self._worker_fds.discard(worker.pidfd)
            osproc.close_fds([worker.pidfd])
        worker.conn.close()
        worker.token.detach()
        del self._workers_by_pid[worker.pid]
        if self._guard is not None:
            self._guard.untrack(worker.pid)
        if self.config.reap_orphans:
            self._sweep_orphans()
        for hook in self.on_worker_reaped:
            try:
                hook(worker.pid)
            except Exception:  # a metrics hook must never stop supervision
                log.exception("worker-reaped hook failed for pid %d", worker.pid)
        self._after_exit(worker, returncode)

    def _drain_messages(self, worker: Worker) -> None:
        try:
            while worker.conn.poll():
                if worker.conn.recv_bytes(64) == READY and worker.ready_at is None:
                    worker.ready_at = self._clock()
        except (EOFError, OSError):
            pass

    def _after_exit(self, worker: Worker, returncode: int) -> None:
        """exit → classify → lifecycle → backoff / breaker → respawn, for one reaped worker."""
        now = self._clock()
        service = self._services[worker.service]
        decision = classify_exit(returncode, service.exit_policy, worker.stop_cause)
        uptime = now - worker.started_at
        self._metrics.record_termination(service.name, decision.reason.label, uptime)
        slot = service.slots.get(worker.slot)
        _log_exit(worker, returncode, decision.reason, decision.failure)
        self._recent_exits.append({
            "at": time.time(), "service": service.name, "worker": worker.slot,
            "generation": worker.generation, "pid": worker.pid, "exit_code": returncode,
            "reason": str(decision.reason), "uptime_secs": round(uptime, 3)})
        if worker in service.retiring:
            service.retiring.remove(worker)
            return
        if slot is None:
            return
        slot.last_exit_code = returncode
        if worker is slot.incoming:
            slot.incoming = None
            if decision.failure and not service.stopping and not slot.removed:
                self._slot_failed(service, slot, decision.reason, now, role="incoming")
            return
        if worker is not slot.current:
            return
        slot.current = None
        if slot.removed:
            if slot.incoming is None:
                del service.slots[slot.index]
                if slot.index < service.desired:  # scaled back up while it drained
                    revived = service.slots[slot.index] = Slot(
                        slot.index, ServiceLifecycle(service.name, now))
                    self._spawn(service, revived)
            return
        if service.stopping or self._state == "stopping" or \
                decision.kind in (ExitKind.STOPPED, ExitKind.REPLACED, ExitKind.RECYCLED):
            if slot.incoming is not None and not service.stopping:
                self._promote(service, slot, slot.incoming)
                return
            _move(slot.lifecycle, ServicePhase.TERMINATED, now, decision.reason)
            return
        if decision.halt:
            _move(slot.lifecycle, ServicePhase.TERMINATED, now, decision.reason)
            log.error("%s[%d] exited with halt code %d: shutting the supervisor down",
                      service.name, slot.index, returncode)
            self._begin_shutdown(returncode if 0 < returncode < 256 else 1)
            return
        if slot.incoming is not None:  # a replacement is already starting: it takes over
            if decision.failure:
                slot.lifecycle.record_failure(str(decision.reason))
            incoming = slot.incoming
            slot.current, slot.incoming = incoming, None
            incoming.role = "current"
            slot.restarts += 1
            if slot.lifecycle.phase is ServicePhase.RUNNING and not incoming.ready:
                _move(slot.lifecycle, ServicePhase.BACKING_OFF, now)
                _move(slot.lifecycle, ServicePhase.STARTING, now)
            self._advance_rolling(service)
            return
        if not decision.restart:
            if decision.failure:
                slot.lifecycle.record_failure(str(decision.reason))
                service.end_reason = decision.reason
            _move(slot.lifecycle, ServicePhase.TERMINATED, now, decision.reason)
            return
        if decision.fixed_delay or not decision.failure:
            _move(slot.lifecycle, ServicePhase.BACKING_OFF, now)
            slot.backoff.last_delay = service.backoff_config.clean_restart_delay
            self._schedule_restart(service, slot, slot.backoff.last_delay)
            return
        self._slot_failed(service, slot, decision.reason, now)

    def _slot_failed(self, service: ServiceRuntime, slot: Slot, reason: TerminationReason,
                     now: float, role: str = "current") -> None:
        action = decide_restart(slot.backoff, service.breaker, service.backoff_config, now,
                                self._rng, slot.index)
        if slot.lifecycle.phase in (ServicePhase.STARTING, ServicePhase.RUNNING):
            slot.lifecycle.mark_backing_off(now, str(reason))
        else:
            slot.lifecycle.record_failure(str(reason))
        match action:
            case CircuitOpen():
                self._trip(service, action)
            case RetryAfter(delay=delay):
                self._schedule_restart(service, slot, delay, role)

    def _schedule_after_spawn_failure(self, service: ServiceRuntime, slot: Slot, role: str,
                                      error: str) -> None:
        now = self._clock()
        reason = TerminationReason.unrecoverable(f"fork failed: {error}")
        if slot.lifecycle.phase is ServicePhase.BACKING_OFF:
            _move(slot.lifecycle, ServicePhase.STARTING, now)
        self._slot_failed(service, slot, reason, now, role)

    def _schedule_restart(self, service: ServiceRuntime, slot: Slot, delay: float,
                          role: str = "current") -> None:
        slot.cancel_restart()
        slot.restart_timer = self._timers.at(
            self._clock() + delay, lambda: self._restart_slot(service, slot, role), "restart")

    def _restart_slot(self, service: ServiceRuntime, slot: Slot, role: str) -> None:
        slot.restart_timer = None
        if service.stopping or self._state != "running" or slot.removed or \
                not service.breaker.allows_restarts or service.slots.get(slot.index) is not slot:
            return
        if role == "incoming" and slot.current is None:
            role = "current"
        if role == "current" and slot.current is not None:
            return
        if slot.lifecycle.phase is ServicePhase.BACKING_OFF:
            slot.lifecycle.mark_starting(self._clock())
        slot.restarts += role == "current"
        if role == "current":
            self._metrics.record_restart(service.name)
        self._spawn(service, slot, role)

    # ==========================================================================================
    # Circuit breaker
    # ==========================================================================================
    def _trip(self, service: ServiceRuntime, action: CircuitOpen) -> None:
        now = self._clock()
        self._metrics.record_circuit_breaker_trip(service.name)
        reason = TerminationReason.circuit_breaker_open(action.failures, action.max_retries)
        log.error("%s: %s; stopping its workers", service.name, reason)
        if service.trial_timer is not None:
            service.trial_timer.cancel()
            service.trial_timer = None
        service.rolling.clear()
        for slot in service.slots.values():
            slot.cancel_restart()
            if slot.lifecycle.phase.is_alive and slot.lifecycle.phase is not \
                    ServicePhase.CIRCUIT_OPEN:
                _move(slot.lifecycle, ServicePhase.CIRCUIT_OPEN, now)
            for worker in slot.workers():
                self._stop_worker(worker, KillCause.STOP_REQUESTED, now + self._grace(service))
        due = service.breaker.half_open_due()
        if due is None:
            service.end_reason = reason
            self._stop_service(service, reason)
            if service.options.critical:
                log.error("%s is critical: shutting the supervisor down", service.name)
                self._begin_shutdown(1)
            return
        log.warning("%s: half-open trial in %.1fs", service.name, due - now)
        service.half_open_timer = self._timers.at(due, lambda: self._half_open(service), "half")

    def _half_open(self, service: ServiceRuntime) -> None:
        service.half_open_timer = None
        if service.stopping or self._state != "running":
            return
        trial = min((s for s in service.slots.values() if not s.removed),
                    key=lambda s: s.index, default=None)
        if trial is None:
            return
        if any(s.workers() for s in service.slots.values()):
            # The tripped generation is still draining (it has its stop deadlines); the trial
            # starts the moment the last of it is reaped, from _after_exit.
            service.half_open_pending = True
            return
        service.breaker.begin_half_open(self._clock())
        log.info("%s: circuit half-open: starting one trial worker", service.name)
        self._start_slot_again(service, trial)

    def _start_slot_again(self, service: ServiceRuntime, slot: Slot) -> None:
        now = self._clock()
        if slot.lifecycle.phase is ServicePhase.TERMINATED:
            slot.lifecycle = ServiceLifecycle(service.name, now)
        elif slot.lifecycle.phase in (ServicePhase.CIRCUIT_OPEN, ServicePhase.BACKING_OFF):
            slot.lifecycle.mark_starting(now)
        slot.restarts += 1
        self._metrics.record_restart(service.name)
        self._spawn(service, slot)

    def _close_breaker(self, service: ServiceRuntime, trial: Worker) -> None:
        service.trial_timer = None
        if trial.exited or service.stopping or service.breaker.state is not BreakerState.HALF_OPEN:
            return
        service.breaker.close(self._clock())
        log.info("%s: trial worker stable: circuit closed, starting the pool", service.name)
        for slot in service.slots.values():
            if not slot.removed and not slot.workers():
                self._start_slot_again(service, slot)

    # ==========================================================================================
    # Shutdown
    # ==========================================================================================
    def _begin_shutdown(self, status: int, *, fast: bool = False) -> None:
        if status and not self._exit_status:
            self._exit_status = status
        if self._state == "stopping":
            if fast:
                self._kill_everything()
            return
        if self._state != "running":
            return
        self._state = "stopping"
        self._shutdown_started = self._clock()
        for hook in self.on_shutdown:
            hook()
        log.info("%s: shutting down%s", self.config.name, " (fast)" if fast else "")
        orders = sorted({s.options.start_order for s in self._services.values()}, reverse=True)
        self._shutdown_stages = [
            [n for n, s in self._services.items() if s.options.start_order == order]
            for order in orders
        ]
        for service in self._services.values():
            for slot in service.slots.values():
                slot.cancel_restart()
            for timer in (service.half_open_timer, service.trial_timer):
                if timer is not None:
                    timer.cancel()
        if fast:
            for service in self._services.values():
                self._stop_service(service, TerminationReason.cancelled())
            assert self._root is not None
            self._root.cancel("fast shutdown")
            self._kill_everything()
        self._advance_shutdown()

    def _advance_shutdown(self) -> None:
        """Stop services stage by stage, in reverse start order; deadlines are global."""
        while self._shutdown_stages:
            stage = self._shutdown_stages[0]
            services = [self._services[name] for name in stage if name in self._services]
            if any(s.live_workers() for s in services if s.stopping):
                return  # the current stage is still draining
            pending = [s for s in services if not s.stopping]
            if pending:
                last_stage = len(self._shutdown_stages) == 1
                for service in pending:
                    term_at = self._shutdown_started + self._grace(service)
                    self._stop_service(service, TerminationReason.cancelled(), term_at=term_at)
                if last_stage and self._root is not None:
                    self._root.cancel("supervisor shutdown")
                if any(s.live_workers() for s in pending):
                    return
            self._shutdown_stages.pop(0)

    def _kill_everything(self) -> None:
        for worker in list(self._workers_by_pid.values()):
            worker.stop_cause = worker.stop_cause or KillCause.STOP_REQUESTED
            self._signal_worker(worker, signal.SIGKILL)

    # ==========================================================================================
    # Phases, gauges and snapshots
    # ==========================================================================================
    def _sync_service_phase(self, service: ServiceRuntime) -> None:
        """Derive the service phase from its slots and move the service lifecycle there."""
        lifecycle = service.lifecycle
        if lifecycle.phase is ServicePhase.TERMINATED:
            return
        now = self._clock()
        slots = [s for s in service.slots.values() if not s.removed]
        live = service.live_workers()
        if service.stopping:
            if live:
                _move(lifecycle, ServicePhase.STOPPING, now)
            else:
                _move(lifecycle, ServicePhase.TERMINATED, now,
                      service.end_reason or service.stop_reason or TerminationReason.stopped())
            return
        if service.breaker.state is not BreakerState.CLOSED:
            _move(lifecycle, ServicePhase.CIRCUIT_OPEN, now)
            return
        if slots and all(s.lifecycle.phase is ServicePhase.TERMINATED for s in slots) and \
                not live:
            service.end_reason = service.end_reason or TerminationReason.completed()
            service.stopping = True
            _move(lifecycle, ServicePhase.TERMINATED, now, service.end_reason)
            return
        phases = {s.lifecycle.phase for s in slots}
        if ServicePhase.BACKING_OFF in phases:
            target = ServicePhase.BACKING_OFF
        elif service.is_ready() or not slots:
            target = ServicePhase.RUNNING
        else:
            target = ServicePhase.STARTING
        if target is ServicePhase.STARTING and lifecycle.phase is ServicePhase.RUNNING:
            return  # scale-up or replacement under way: the service stays up
        if target is ServicePhase.RUNNING and lifecycle.phase in (ServicePhase.BACKING_OFF,
                                                                   ServicePhase.CIRCUIT_OPEN):
            _move(lifecycle, ServicePhase.STARTING, now)
        _move(lifecycle, target, now)

    def _all_ended_by_themselves(self) -> bool:
        services = list(self._services.values())
        return bool(services) and all(
            s.lifecycle.phase is ServicePhase.TERMINATED and not s.stopped_by_request
            for s in services
        ) and not self._workers_by_pid

    def _publish_gauges(self) -> None:
        active = 0
        for service in self._services.values():
            if service.lifecycle.phase.is_alive:
                active += 1
            self._metrics.set_service_state(service.name, service.workers_by_phase(),
                                            service.backoff_delay())
        self._metrics.set_active_services(active)
        self._published_metrics = self._metrics.snapshot()

    def _snapshot(self) -> SupervisorSnapshot:
        now = self._clock()
        return SupervisorSnapshot(
            state=self._state,
            pid=os.getpid(),
            uptime_secs=(now - self._started_at) if self._started_at else 0.0,
            exit_status=self._exit_status,
            services=tuple(s.snapshot(now, self._listeners.addresses(s.name))
                           for s in self._services.values()),
        )

    # ==========================================================================================
    # Signals, orphans, cross-thread calls
    # ==========================================================================================
    def _install_signals(self) -> None:
        assert self._selector is not None
        self._signal_r, self._signal_w = _nonblocking_pipe()
        self._selector.register(self._signal_r, selectors.EVENT_READ, self._on_signal_fd)
        for name in HANDLED_SIGNALS:
            signum = getattr(signal, name)
            self._old_signals[signum] = signal.signal(signum, _just_wake)
        self._old_wakeup_fd = signal.set_wakeup_fd(self._signal_w, warn_on_full_buffer=False)

    def _restore_signals(self) -> None:
        if not self._old_signals:
            return
        signal.set_wakeup_fd(self._old_wakeup_fd)
        for signum, handler in self._old_signals.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._old_signals.clear()

    def _on_signal_fd(self, _fd: Any) -> None:
        try:
            data = os.read(self._signal_r, 4096)
        except BlockingIOError:
            return
        for signum in data:
            self._dispatch_signal(signum)

    def _dispatch_signal(self, signum: int) -> None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            return
        custom = self.signal_handlers.get(signum)
        if custom is not None:
            custom()
            return
        handler = getattr(self, f"_on_{name.lower()}", None)
        if handler is not None:
            handler()

    def _on_sigterm(self) -> None:
        self._begin_shutdown(0, fast=self._state == "stopping")

    _on_sigint = _on_sigterm

    def _on_sigquit(self) -> None:
        self._begin_shutdown(0, fast=True)

    def _on_sigchld(self) -> None:
        self._reap_zombies()

    def _on_sigttin(self) -> None:
        self._scale_all(+1)

    def _on_sigttou(self) -> None:
        self._scale_all(-1)

    def _scale_all(self, delta: int) -> None:
        if self._state != "running":
            return
        for service in self._services.values():
            if not service.stopping:
                target = min(self.config.max_workers, max(0, service.desired + delta))
                self._scale(service, target)

    def _reap_zombies(self) -> None:
        """Reap exited children: workers go through the exit path, adopted orphans are waited."""
        while True:
            pid = osproc.peek_exited_child()
            if pid is None:
                return
            worker = self._workers_by_pid.get(pid)
            if worker is not None:
                self._on_worker_exit(worker)
            elif pid in self._protected() or not self.config.reap_orphans:
                return
            else:
                osproc.reap_nonblocking(pid)
                self._orphans.discard(pid)

    def _sweep_orphans(self) -> None:
        """Kill what dead workers left behind: children of ours that are not our workers."""
        if not self.config.reap_orphans:
            return
        protected = self._protected()
        for pid in osproc.children_of(os.getpid()):
            if pid in self._workers_by_pid or pid in protected:
                continue
            if osproc.process_state(pid) == "Z":
                osproc.reap_nonblocking(pid)
                self._orphans.discard(pid)
                continue
            if pid not in self._orphans:
                log.warning("killing pid %d, left behind by a worker", pid)
            osproc.signal_process(pid, signal.SIGKILL)
            self._orphans.add(pid)
        if self._orphans and not self._old_signals:
            for pid in list(self._orphans):  # no SIGCHLD handler: reap them now (SIGKILLed)
                _blocking_reap(pid)
                self._orphans.discard(pid)

    def _protected(self) -> set[int]:
        """Children that are ours but not workers: the guard and multiprocess's helpers."""
        return self._protected_pids | _multiprocess_helper_pids()

    def _in_loop(self, fn: Callable[[], T], *, wait: bool = True,
                 timeout: float | None = None) -> T:
        if self._state in ("idle", "stopped") or threading.get_ident() == self._loop_thread:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.append((fn, future))
        try:
            os.write(self._call_w, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe already holds a wake-up, or the loop is closing
        if not wait:
            return None  # type: ignore[return-value]
        return future.result(timeout)

    def _on_calls(self, _fd: Any) -> None:
        try:
            os.read(self._call_r, 4096)
        except BlockingIOError:
            pass
        while self._calls:
            fn, future = self._calls.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller's thread
                future.set_exception(exc)

    def _fail_pending_calls(self) -> None:
        while self._calls:
            fn, future = self._calls.popleft()
            if future.set_running_or_notify_cancel():
                try:  # the loop is gone: run it here, single-threaded now
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)

    def _unregister(self, fileobj: Any) -> None:
        if self._selector is None:
            return
        try:
            self._selector.unregister(fileobj)
        except (KeyError, ValueError, OSError):
            pass


# ==============================================================================================
# Helpers
# ==============================================================================================
def _check_watchdog(service: JanusService, options: SpawnOptions) -> None:
    if options.watchdog_timeout is not None and not service.can_heartbeat:
        raise ConfigError("watchdog_timeout", f"{type(service).__name__} workers cannot call "
                          "ctx.heartbeat(): a watchdog would kill them while they work")


def _just_wake(_signum: int, _frame: Any) -> None:
    """The whole signal handler: set_wakeup_fd has already queued the signal number."""


def _nonblocking_pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    return r, w


def _send(conn: Any, message: bytes) -> None:
    try:
        conn.send_bytes(message)
    except (OSError, ValueError):
        pass  # the worker is gone; its exit is on its way


def _move(lifecycle: Any, phase: ServicePhase, now: float,
          reason: TerminationReason | None = None) -> None:
    """Move a lifecycle if it is not there yet; an illegal move is a bug worth a loud log."""
    if lifecycle.phase is phase:
        return
    try:
        if phase is ServicePhase.TERMINATED:
            lifecycle.mark_terminated(now, reason or TerminationReason.stopped())
        elif phase is ServicePhase.RUNNING:
            lifecycle.mark_running(now)
        elif phase is ServicePhase.STARTING and lifecycle.phase in (ServicePhase.BACKING_OFF,
                                                                    ServicePhase.CIRCUIT_OPEN):
            lifecycle.mark_starting(now)
        else:
            lifecycle.transition(phase, now)
    except TransitionError:
        log.exception("lifecycle bug in %s", lifecycle.service_name)


def _forget_in_multiprocess(process: Any) -> None:
    """multiprocess polls every child it started on each start() (O(n) per spawn) and would
    reap our workers behind our back; the supervisor owns their reaping, so it unlists them."""
    try:
        from multiprocess import process as mp_process

        mp_process._children.discard(process)
    except Exception:
        pass


def _multiprocess_helper_pids() -> set[int]:
    """The fork server and resource tracker multiprocess starts (spawn/forkserver methods)."""
    try:
        from multiprocess import forkserver, resource_tracker
    except ImportError:
        return set()
    pids = {getattr(resource_tracker._resource_tracker, "_pid", None),
            getattr(forkserver._forkserver, "_forkserver_pid", None)}
    return {pid for pid in pids if pid}


def _wait_exitcode(process: Any) -> int:
    process.join(5.0)
    code = process.exitcode
    return int(code) if code is not None else -9


def _blocking_reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _pickle_for_spawn(service: JanusService, method: str) -> bytes:
    try:
        import dill

        blob: bytes = dill.dumps(service)
        dill.loads(blob)
    except Exception as exc:
        raise ServiceLoadError(
            f"service {service.name!r} cannot be sent to a {method} worker: "
            f"{type(exc).__name__}: {exc}; use the fork start method or make it picklable"
        ) from None
    return blob


def _log_exit(worker: Worker, returncode: int, reason: TerminationReason, failure: bool) -> None:
    level = logging.WARNING if failure else logging.INFO
    log.log(level, "%s[%d] (pid %d, gen %d) exited: %s", worker.service, worker.slot, worker.pid,
            worker.generation, reason)


def _format_totals(snapshot: MetricsSnapshot) -> str:
    return (f"spawned={snapshot.spawned_total} restarts={snapshot.restarts_total} "
            f"terminated={snapshot.terminated_total} "
            f"breaker_trips={snapshot.circuit_breaker_trips_total}")
