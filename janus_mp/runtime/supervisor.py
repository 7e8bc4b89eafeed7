"""JanusSupervisor: the public API over a thin runtime that performs what the policy decides.

The runtime's parts, each owning one thing, are wired in ``JanusSupervisor.__init__``:

    OS happenings ─► WorkerPlumbing ─┐      events                     actions
    (a worker's pipe, its exit)      ├─► Performer.feed ─► core.policy.handle ─► Performer.act
    loop: deadlines, signals, API ───┘                                 (Spawn ─► WorkerPlumbing)

The performer (``runtime/performer.py``) holds the full data-flow diagram; the path of one
worker exit is told in ``runtime/worker_plumbing.py``. Between the loop's turns the supervisor
runs what may take time (the plumbing's reaping, the guard's orphan reaping, the published
metrics) and its ``on_turn`` hooks.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import multiprocess

from janus_mp.core import events as ev
from janus_mp.core import policy
from janus_mp.core.actions import (
    Publish,
)
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from janus_mp.core.counters import MetricsSnapshot, SupervisorMetrics
from janus_mp.core.notices import LifecycleNotice
from janus_mp.core.pool import SupervisorPhase, SupervisorState
from janus_mp.core.snapshots import SupervisorSnapshot, supervisor_snapshot
from janus_mp.core.timers import TimerKey
from janus_mp.core.tree import ServiceGroup
from janus_mp.errors import ConfigError, JanusError
from janus_mp.private_fds import PrivateFds
from janus_mp.runtime.cgroups import ServiceLimits
from janus_mp.runtime.handover import HandoverPort
from janus_mp.runtime.lifelines import Lifelines
from janus_mp.runtime.listeners import ListenerSet
from janus_mp.runtime.loop import Loop
from janus_mp.runtime.notice_hub import NoticeSubscription
from janus_mp.runtime.observability import Observability
from janus_mp.runtime.orphans import Orphans
from janus_mp.runtime.output_capture import OutputCapture, OutputDropsCollector
from janus_mp.runtime.performer import Performer
from janus_mp.runtime.processes import Processes
from janus_mp.runtime.shared_event import SharedEventFactory
from janus_mp.runtime.specs import ServiceSpec, make_spec
from janus_mp.runtime.tokens import ServiceTokens
from janus_mp.runtime.watchers import Watchers
from janus_mp.runtime.worker_plumbing import WorkerPlumbing
from janus_mp.service import JanusService

log = logging.getLogger("janus_mp.supervisor")
T = TypeVar("T")

HANDLED_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGUSR1",
                   "SIGUSR2", "SIGCHLD")
_POLICY_SIGNALS = {"SIGTERM", "SIGINT", "SIGQUIT", "SIGTTIN", "SIGTTOU"}


class JanusSupervisor:
    """Supervises pools of worker processes; see the module docstring for the data flow."""

    def __init__(self, config: SupervisorConfig | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.config = config or SupervisorConfig()
        self._clock = clock
        self._state = SupervisorState(self.config, rng or random.Random())
        self._context = multiprocess.get_context(self.config.start_method)
        self._start_method = self._context.get_start_method()
        self._loop = Loop(clock)
        self._processes = Processes(self._context, self._start_method)
        self._processes.gc_freeze = self.config.gc_freeze
        self._orphans = Orphans(self.config.name, self.config.reap_orphans, self._worker_pids)
        self._specs: dict[str, ServiceSpec] = {}
        self._tokens = ServiceTokens(SharedEventFactory(self._start_method))
        self._lifelines = Lifelines()  # one pipe per service: cut = all its workers stop
        self._limits = ServiceLimits()  # cgroups, made when a service asks for limits
        self._reap_children = False
        self._strays_wake: float | None = None
        self._stopping_told = False  # the observability heard that the final stop began
        self._closed = False
        #: Listening sockets bound for services (ApiModuleAdapter...), shared by their pools.
        self._listeners = ListenerSet()
        #: fds of the supervisor's own threads (control, HTTP): never inherited by workers.
        self.private_fds = PrivateFds()
        self._published = self._state.metrics.snapshot()
        self._published_version = -1
        #: Every worker's stdout/stderr; set ``output.sink`` before running to send it elsewhere.
        self.output = OutputCapture(self.private_fds)
        self._observability = Observability(
            self.config, self._start_method, self.private_fds, metrics=self.metrics_snapshot,
            ping=lambda timeout: bool(self._loop.call(lambda: True, timeout=timeout)),
            snapshot=self.snapshot_within)
        #: Hooks, called in the loop thread: (pid) after a worker is reaped; signal handlers
        #: for HUP/USR1 beyond the core's (the CLI installs reload and log reopening here).
        self.on_worker_reaped: list[Callable[[int], None]] = []
        self.on_turn: list[Callable[[], None]] = []
        self.on_shutdown: list[Callable[[], None]] = []
        self.signal_handlers: dict[int, Callable[[], None]] = {}
        #: Called in the loop thread with (service, worker id, returncode, oom_killed) when a
        #: worker's exit is known, once the policy has decided on it (a standby's promotion
        #: goes first); task pools fail its task.
        self.on_worker_exited: list[Callable[[str, int, int, bool], None]] = []
        #: Sockets to and from another supervisor in an upgrade (see runtime/handover.py).
        self.handover = HandoverPort(self._listeners, self._observability, self._orphans,
                                     self._loop.call)
        #: Probes, stack dumps, lifecycle notices and hooks (runtime/watchers.py).
        self._watchers = Watchers(
            self.config.hooks, self.private_fds, wall_offset=lambda: time.time() - self._clock(),
            deliver=lambda event: self._loop.call(lambda: self._performer.feed(event), wait=False))
        # The two halves of the runtime, wired here and nowhere else: the performer acts on
        # what the policy decides (a Spawn through the plumbing); the plumbing feeds the
        # policy what workers say and when they exit.
        self._plumbing = WorkerPlumbing(
            clock, self._start_method, loop=self._loop, processes=self._processes,
            specs=self._specs, tokens=self._tokens, lifelines=self._lifelines,
            listeners=self._listeners, orphans=self._orphans,
            observability=self._observability, watchers=self._watchers, output=self.output,
            private_fds=self.private_fds, limits=self._limits,
            feed=lambda event: self._performer.feed(event),
            exited=self._worker_exited, reaped=self._worker_reaped)
        self._performer = Performer(
            self._state, clock, loop=self._loop, processes=self._processes,
            specs=self._specs, tokens=self._tokens, lifelines=self._lifelines,
            listeners=self._listeners, watchers=self._watchers, spawn=self._plumbing.spawn,
            shutdown_started=self._shutdown_started)
        self.output.on_fatal_signal = lambda pid, signum: self._loop.call(
            lambda: self._plumbing.on_fatal_signal(pid, signum), wait=False)

    # ==========================================================================================
    # Public API. Mutators are safe from any thread: off the loop thread they run in the loop.
    # ==========================================================================================
    def spawn_service(self, service: JanusService | Callable[..., Any] | type,
                      options: SpawnOptions | None = None) -> str:
        """Register a service (and start it at once if the loop runs). Returns its name."""
        spec = make_spec(service, options or SpawnOptions(), self._start_method)
        return self._loop.call(lambda: self._register(spec))

    def spawn_group(self, group: ServiceGroup) -> str:
        """Add a supervision-tree group over services (and groups) spawned already; before
        :meth:`run_until_shutdown`. Returns its name."""
        self._command(ev.RegisterGroup(group))
        return group.name

    def run_until_shutdown(self) -> int:
        """Start every service and supervise until shutdown; return the exit status."""
        if self._state.phase is not SupervisorPhase.IDLE or self._closed:
            raise JanusError("run_until_shutdown() can run once per supervisor")
        # Everything imported and built so far lives as long as the supervisor: out of the
        # collector's sight, a collection no longer walks it (in the middle of an exit's
        # handling), and forked workers do not dirty its pages by collecting it either.
        # Frozen before _open forks the guard too: a collection after that fork would write
        # to every object's header, leaving the guard sole owner of the app's old pages.
        if self.config.gc_freeze:
            gc.collect()
            gc.freeze()
        self._open()
        if self.config.gc_freeze:
            gc.collect()  # cheap: only what _open built (threads, sockets, buffers)
            gc.freeze()
        try:
            self._performer.feed(ev.Begin())
            self._after_turn()
            while not self._done():
                with self._performer.turn():
                    self._loop.turn(self._on_timer)
                self._after_turn()
        finally:
            self._close()
        return self._state.exit_status

    def shutdown(self, status: int = 0, *, fast: bool = False) -> None:
        """Ask for a graceful (or, with ``fast``, immediate SIGKILL) shutdown. Thread-safe."""
        self._loop.call(lambda: self._performer.feed(ev.Shutdown(status, fast)), wait=False)

    def stop_service(self, name: str) -> None:
        self._command(ev.StopService(name))

    def start_service(self, name: str) -> None:
        self._command(ev.StartService(name))

    def restart_service(self, name: str) -> None:
        """Rolling restart: one worker at a time, the new one ready before the old one stops."""
        self._command(ev.RestartService(name))

    def scale(self, name: str, workers: int) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ConfigError("workers", "must be an integer >= 0")
        self.config.check_pool_size(workers)
        self._command(ev.Scale(name, workers=workers))

    def scale_by(self, name: str, delta: int) -> int:
        """Grow or shrink a pool relative to its size when the loop applies it (concurrent
        calls all count); returns the new size."""
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise ConfigError("workers", "must be an integer (+N or -N)")

        def apply() -> int:
            self._performer.feed(ev.Scale(name, delta=delta))
            return self._state.services[name].desired
        return self._loop.call(apply)

    def update_service(self, service: JanusService | Callable[..., Any] | type,
                       options: SpawnOptions) -> str:
        """Add a service, or apply new options to a running one (used by config reload).

        Only the worker count changed: the pool is scaled. Anything else changed: the new spec
        replaces the old one and the pool is rolling-restarted onto it.
        """
        spec = make_spec(service, options, self._start_method)
        return self._loop.call(lambda: self._update(spec))

    def remove_service(self, name: str) -> None:
        """Stop a service and forget it (used by config reload)."""
        self._command(ev.Remove(name))

    def snapshot(self) -> SupervisorSnapshot:
        return self._loop.call(self._snapshot)

    def snapshot_within(self, timeout: float) -> SupervisorSnapshot:
        """A snapshot, or TimeoutError if the loop cannot answer in ``timeout`` seconds."""
        return self._loop.call(self._snapshot, timeout=timeout)

    def metrics_snapshot(self) -> MetricsSnapshot:
        """The counters as of the loop's last turn (any thread: the loop publishes a frozen
        snapshot each turn, so readers never touch live counters)."""
        if self._loop.in_loop_thread():
            return self._state.metrics.snapshot()
        return self._published

    @property
    def metrics(self) -> SupervisorMetrics:
        return self._state.metrics

    @property
    def state(self) -> str:
        return self._state.phase.value

    @property
    def service_names(self) -> list[str]:
        return list(self._state.options)

    def service_object(self, name: str) -> JanusService:
        """The service registered as ``name`` (what its workers run); KeyError if none."""
        return self._specs[name].service

    @property
    def registry(self) -> Any:
        """Everything /metrics shows: the workers' own metrics and janus_supervisor_*."""
        return self._observability.registry

    @property
    def metrics_port(self) -> int | None:
        """The port /metrics listens on (useful with metrics_port=0), None when off."""
        return self._observability.port

    @property
    def loop_turns(self) -> int:
        return self._loop.turns

    @property
    def last_turn_at(self) -> float:
        return self._loop.last_turn_at

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the loop after ``delay`` seconds (from the loop thread or any other)."""
        self._loop.call(lambda: self._loop.call_at(self._clock() + delay, fn), wait=False)

    def listening_addresses(self, name: str) -> tuple[str, ...]:
        """Where a service's listeners are bound (the real port when port 0 was asked)."""
        return self._listeners.addresses(name)

    def recent_exits(self) -> list[dict[str, Any]]:
        """The last worker exits, newest last: when, who, and why (for status and top)."""
        def read() -> list[dict[str, Any]]:
            wall_offset = time.time() - self._clock()
            return [record.to_dict(wall_offset) for record in self._state.recent_exits]
        return self._loop.call(read)

    def subscribe(self, buffer: int = 1024, *, history: bool = False) -> NoticeSubscription:
        """Lifecycle notices from now on, from any thread: ``get(timeout)`` returns those
        waiting and how many were lost while more than ``buffer`` waited unread; with
        ``history``, ``.history`` holds the last notices before it. Close it (or use it as a
        context manager) when done."""
        return self._watchers.subscribe(buffer, history=history)

    @property
    def hook_runs(self) -> dict[str, int]:
        """``[hooks]`` commands run, dropped (all max_concurrent busy) and killed (timeout)."""
        return self._watchers.hook_runs()

    def call_in_loop(self, fn: Callable[[], T], *, timeout: float | None = None) -> T:
        """Run ``fn`` in the loop thread and return its result (directly if already there)."""
        return self._loop.call(fn, timeout=timeout)

    # -- for task pools (janus_mp/pools), which serve their sockets in this loop ---------------
    def clock(self) -> float:
        return self._clock()

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the loop thread, without waiting for it."""
        self._loop.call(fn, wait=False)

    def add_reader(self, fileobj: Any, callback: Callable[[], None]) -> None:
        """Loop thread only: call ``callback`` in the loop whenever ``fileobj`` is readable."""
        self._loop.add_reader(fileobj, callback)

    def remove_reader(self, fileobj: Any) -> None:
        self._loop.remove_reader(fileobj)

    def add_writer(self, fileobj: Any, callback: Callable[[], None]) -> None:
        """Loop thread only: call ``callback`` whenever ``fileobj`` can take more bytes."""
        self._loop.add_writer(fileobj, callback)

    def remove_writer(self, fileobj: Any) -> None:
        self._loop.remove_writer(fileobj)

    def worker_of_pid(self, pid: int) -> tuple[str, int] | None:
        """Loop thread only: (service, worker id) of a live worker process, or None."""
        process = self._processes.of_pid(pid)
        return None if process is None else (process.service, process.id)

    def signal_worker(self, worker: int, signum: int, *, group: bool = True) -> None:
        """Loop thread only: signal a worker (and its process group) that is not reaped yet."""
        self._processes.signal_worker(worker, signum, group=group)

    def publish(self, notice: LifecycleNotice) -> None:
        """Loop thread only: a notice for subscribers, ``events`` and hooks (task pools')."""
        self._performer.act(Publish(notice))

    def handle_signal(self, signum: int) -> None:
        """Feed a signal to the loop as if it had been received (tests, embedding)."""
        self._loop.call(lambda: self._on_signal(signum), wait=False)

    # ==========================================================================================
    # Feeding the policy; the hooks the runtime's parts call back
    # ==========================================================================================
    def _command(self, event: ev.Event) -> None:
        self._loop.call(lambda: self._performer.feed(event))

    def _worker_exited(self, service: str, worker: int, returncode: int,
                       oom_killed: bool) -> None:
        for hook in self.on_worker_exited:
            hook(service, worker, returncode, oom_killed)

    def _worker_reaped(self, pid: int) -> None:
        for hook in self.on_worker_reaped:
            try:
                hook(pid)
            except Exception:  # a metrics hook must never stop supervision
                log.exception("worker-reaped hook failed for pid %d", pid)

    def _shutdown_started(self) -> None:
        for hook in self.on_shutdown:
            hook()

    def _on_timer(self, key: TimerKey) -> None:
        self._performer.feed(ev.TimerDue(key))

    def _on_signal(self, signum: int) -> None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            return
        custom = self.signal_handlers.get(signum)
        if custom is not None:
            custom()
        elif name == "SIGCHLD":
            self._reap_children = True
        elif name in _POLICY_SIGNALS:
            self._performer.feed(ev.SignalReceived(name))

    def _after_turn(self) -> None:
        """Work that may take time, done once the turn's events (and respawns) are handled."""
        if self._state.phase is SupervisorPhase.STOPPING and not self._stopping_told:
            self._stopping_told = True
            self._observability.stopping()
        self._plumbing.after_turn()
        if self._reap_children:
            self._reap_children = False
            self._orphans.reap()
        if self._state.metrics.version != self._published_version:  # else: as published
            self._published_version = self._state.metrics.version
            self._published = self._state.metrics.snapshot()
        for turn_hook in self.on_turn:
            turn_hook()

    def _done(self) -> bool:
        if not policy.finished(self._state):
            return False
        wake_at = self._orphans.strays_deadline(self._clock())
        if wake_at is None:
            return True
        if wake_at != self._strays_wake:  # once: the loop sleeps until then, then gives up
            self._strays_wake = wake_at
            self._loop.call_at(wake_at, lambda: None)
        return False

    # ==========================================================================================
    # Services, tokens, snapshots
    # ==========================================================================================
    def _register(self, spec: ServiceSpec) -> str:
        policy.validate_registration(self._state, spec.name, spec.options)
        self._prepare(spec)
        self._specs[spec.name] = spec
        self._performer.feed(ev.Register(spec.name, spec.options))
        return spec.name

    def _update(self, spec: ServiceSpec) -> str:
        self.config.check_pool_size(spec.options.workers)
        old = self._specs.get(spec.name)
        if old is None:
            return self._register(spec)
        self._prepare(spec)
        self._specs[spec.name] = spec
        code_changed = old.service.identity() != spec.service.identity()
        self._performer.feed(ev.Update(spec.name, spec.options, code_changed))
        return spec.name

    def _prepare(self, spec: ServiceSpec) -> None:
        """Give the service its cgroup and bind its listeners now, before any of its workers
        exists: a limit cgroup v2 cannot set or a refused address fails the registration in
        one line and starts nothing."""
        self._limits.limit(spec.name, spec.options)
        service = spec.service
        if service.binds or self._listeners.sockets(spec.name):
            self._listeners.bind(spec.name, tuple(service.binds), service.backlog)
            for address in self._listeners.addresses(spec.name):
                log.info("%s: listening on %s", spec.name, address)

    def _snapshot(self) -> SupervisorSnapshot:
        listening = {name: self._listeners.addresses(name) for name in self._state.services}
        return supervisor_snapshot(self._state, self._clock(), os.getpid(), listening)

    def _worker_pids(self) -> set[int]:
        return {w.pid for w in self._processes.by_id.values()} | self._watchers.helper_pids()

    # ==========================================================================================
    # Opening and closing
    # ==========================================================================================
    def _open(self) -> None:
        self._observability.open()  # first: a bad metrics dir or a busy port starts nothing
        self._observability.registry.register(OutputDropsCollector(self.output))
        self.output.open()
        self._loop.open()
        self._watchers.open()
        self._tokens.open_root()
        self._orphans.open()
        if self.config.install_signal_handlers and \
                threading.current_thread() is threading.main_thread():
            self._loop.install_signals(HANDLED_SIGNALS, self._on_signal)
        log.info("%s: supervisor started (pid %d, start method %s)", self.config.name,
                 os.getpid(), self._start_method)

    def _close(self) -> None:
        try:
            if not policy.finished(self._state):  # an exception escaped: leave nothing behind
                self._processes.kill_all_now()
            self._plumbing.fold_metrics()  # an upgrade's next supervisor shares the files
            self._orphans.close()
            self._limits.remove()  # empty now: every worker was reaped
        finally:
            self._watchers.close()
            self.output.close()
            self._lifelines.close()
            self._observability.close()
            self._listeners.close()
            self._loop.close()
            self._state.phase = SupervisorPhase.STOPPED
            self._closed = True
            self._published = self._state.metrics.snapshot()
            log.info("%s: supervisor stopped (exit status %d) %s", self.config.name,
                     self._state.exit_status, self._published.totals_line())
