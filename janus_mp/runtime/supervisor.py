"""JanusSupervisor: the public API over a thin runtime that performs what the policy decides.

    OS happenings                 events                     actions
    ─────────────                 ──────                     ───────
    pidfd readable ─► reap ─────► WorkerExited ─┐
    pipe: b"r"/b"R" ────────────► WorkerReady   │
    deadline due ───────────────► TimerDue      ├─► core.policy.handle ─► Spawn, CancelWorker,
    signal ─────────────────────► SignalReceived│      (decides)          SignalWorker,
    API / control socket ───────► Register, ... ┘                         ScheduleTimer, Log ...
                                                                              │
    fork, send, kill, arm a deadline ◄──────────── _perform (acts) ◄──────────┘

The path of one worker exit: its pidfd turns readable → ``_on_exit_source`` reaps it (the
zombie is already there: nothing blocks) → ``WorkerExited`` → the policy classifies the exit,
moves the slot's lifecycle, consults backoff and breaker, and asks for a ``ScheduleTimer``
(RESTART) → when it is due, ``Spawn`` forks the replacement. What can take time (folding the
dead worker's metrics files, sweeping its orphans through /proc) runs after the turn's
events, never between an exit and its replacement.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import multiprocess

from janus_mp import osproc
from janus_mp.core import events as ev
from janus_mp.core import policy
from janus_mp.core.actions import (
    Action,
    CancelRoot,
    CancelService,
    CancelTimer,
    CancelWorker,
    ForgetService,
    Log,
    MeasureRss,
    OpenService,
    Promote,
    Publish,
    ReadHeartbeat,
    ReleaseListeners,
    ScheduleTimer,
    ShutdownStarted,
    SignalWorker,
    Spawn,
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
from janus_mp.runtime.cgroups import CgroupError, Limits, ServiceCgroups, own_cgroup
from janus_mp.runtime.handover import HandoverPort
from janus_mp.runtime.lifelines import Lifelines
from janus_mp.runtime.listeners import ListenerSet
from janus_mp.runtime.loop import Loop
from janus_mp.runtime.memory import measure_workers
from janus_mp.runtime.notice_hub import NoticeSubscription
from janus_mp.runtime.observability import Observability
from janus_mp.runtime.orphans import Orphans
from janus_mp.runtime.output_capture import OutputCapture, OutputDropsCollector
from janus_mp.runtime.processes import Processes, WorkerProcess
from janus_mp.runtime.shared_event import SharedEventFactory
from janus_mp.runtime.specs import ServiceSpec, make_spec
from janus_mp.runtime.tokens import ServiceTokens
from janus_mp.runtime.watchers import Watchers
from janus_mp.service import READY, JanusService

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
        self._queue: deque[ev.Event] = deque()
        self._feeding = False
        self._in_turn = False  # events of one loop turn are settled once, at its end
        self._unsettled = False
        self._lifelines = Lifelines()  # one pipe per service: cut = all its workers stop
        self._cgroups: ServiceCgroups | None = None  # made when a service asks for limits
        self._after_turn_pids: list[int] = []
        self._deferred: list[Action] = []  # a batch's Log and Publish actions (see _flush)
        self._reap_children = False
        self._strays_wake: float | None = None
        self._closed = False
        #: Listening sockets bound for services (ApiModuleAdapter...), shared by their pools.
        self._listeners = ListenerSet()
        #: fds of the supervisor's own threads (control, HTTP): never inherited by workers.
        self.private_fds = PrivateFds()
        self._published = self._state.metrics.snapshot()
        self._published_version = -1
        #: Every worker's stdout/stderr; set ``output.sink`` before running to send it elsewhere.
        self.output = OutputCapture(self.private_fds)
        self.output.on_fatal_signal = lambda pid, signum: self._loop.call(
            lambda: self._on_fatal_signal(pid, signum), wait=False)
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
        #: worker's exit is known, before the policy hears it (task pools fail its task).
        self.on_worker_exited: list[Callable[[str, int, int, bool], None]] = []
        #: Sockets to and from another supervisor in an upgrade (see runtime/handover.py).
        self.handover = HandoverPort(self._listeners, self._observability, self._orphans,
                                     self._loop.call)
        #: Probes, stack dumps, lifecycle notices and hooks (runtime/watchers.py).
        self._watchers = Watchers(
            self.config.hooks, self.private_fds, wall_offset=lambda: time.time() - self._clock(),
            deliver=lambda event: self._loop.call(lambda: self._feed(event), wait=False))

    # ==========================================================================================
    # Public API. Mutators are safe from any thread: off the loop thread they run in the loop.
    # ==========================================================================================
    def spawn_service(self, service: JanusService | Callable[..., Any] | type,
                      options: SpawnOptions | None = None) -> str:
        """Register a service (and start it at once if the loop runs). Returns its name."""
        spec = self._spec(service, options or SpawnOptions())
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
            self._feed(ev.Begin())
            self._after_turn()
            while not self._done():
                self._in_turn = True
                try:
                    self._loop.turn(self._on_timer)
                    self._settle()
                finally:
                    self._in_turn = False
                self._after_turn()
        finally:
            self._close()
        return self._state.exit_status

    def shutdown(self, status: int = 0, *, fast: bool = False) -> None:
        """Ask for a graceful (or, with ``fast``, immediate SIGKILL) shutdown. Thread-safe."""
        self._loop.call(lambda: self._feed(ev.Shutdown(status, fast)), wait=False)

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
            self._feed(ev.Scale(name, delta=delta))
            return self._state.services[name].desired
        return self._loop.call(apply)

    def update_service(self, service: JanusService | Callable[..., Any] | type,
                       options: SpawnOptions) -> str:
        """Add a service, or apply new options to a running one (used by config reload).

        Only the worker count changed: the pool is scaled. Anything else changed: the new spec
        replaces the old one and the pool is rolling-restarted onto it.
        """
        spec = self._spec(service, options)
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

    def worker_of_pid(self, pid: int) -> tuple[str, int] | None:
        """Loop thread only: (service, worker id) of a live worker process, or None."""
        for process in self._processes.by_id.values():
            if process.pid == pid:
                return process.service, process.id
        return None

    def signal_worker(self, worker: int, signum: int, *, group: bool = True) -> None:
        """Loop thread only: signal a worker (and its process group) that is not reaped yet."""
        process = self._processes.by_id.get(worker)
        if process is None:
            return
        if group:
            self._processes.signal(process, signum)
        else:
            osproc.signal_process(process.pid, signum)

    def publish(self, notice: LifecycleNotice) -> None:
        """Loop thread only: a notice for subscribers, ``events`` and hooks (task pools')."""
        self._act(Publish(notice))

    def handle_signal(self, signum: int) -> None:
        """Feed a signal to the loop as if it had been received (tests, embedding)."""
        self._loop.call(lambda: self._on_signal(signum), wait=False)

    # ==========================================================================================
    # Feeding the policy, performing its actions
    # ==========================================================================================
    def _command(self, event: ev.Event) -> None:
        self._loop.call(lambda: self._feed(event))

    def _feed(self, event: ev.Event) -> None:
        """Hand ``event`` to the policy and perform its actions; events that actions answer
        with (WorkerStarted, SpawnFailed...) are handled before anything else happens."""
        if self._feeding:
            self._queue.append(event)
            return
        settle_now = not self._in_turn  # in a turn, the turn's end settles (once)
        self._run(lambda: policy.handle(self._state, event, self._clock(), settle=settle_now),
                  settle_now)
        self._unsettled = self._unsettled or not settle_now

    def _settle(self) -> None:
        """After a turn's events: derived phases, shutdown stages, gauges, once (again only
        if what settling did was answered by events, a Spawn's WorkerStarted...)."""
        while self._unsettled:
            self._unsettled = self._run(lambda: policy.settle(self._state, self._clock()),
                                        settle=False)

    def _run(self, decide: Callable[[], list[Action]], settle: bool) -> bool:
        """Perform what ``decide`` returns, then the events its actions answered with; True
        if there were such events."""
        self._feeding = True
        try:
            for action in decide():
                self._perform(action)
            answered = bool(self._queue)
            while self._queue:
                for action in policy.handle(self._state, self._queue.popleft(), self._clock(),
                                            settle=settle):
                    self._perform(action)
            return answered
        finally:
            self._feeding = False
            self._queue.clear()
            self._flush()

    def _flush(self) -> None:
        """Write the batch's log lines and publish its notices. They wait only for the forks,
        promotions and timers that follow them (a synchronous log handler, a woken hook
        thread never delays a replacement) and go before anything else is seen to happen:
        "killing it" is in the log before the kill."""
        deferred, self._deferred = self._deferred, []
        for action in deferred:
            self._act(action)

    def _perform(self, action: Action) -> None:
        if isinstance(action, (Log, Publish)):
            self._deferred.append(action)  # after the forks and promotions: see _flush
            return
        if self._deferred and not isinstance(action, (Spawn, Promote, ScheduleTimer,
                                                      CancelTimer)):
            self._flush()  # a log line says why before anything else is seen to happen
        self._act(action)

    def _act(self, action: Action) -> None:
        match action:
            case Spawn():
                self._spawn(action)
            case Promote():
                process = self._processes.by_id.get(action.worker)
                if process is not None:
                    process.promote(action.slot, action.generation, action.max_requests,
                                    self._clock())
            case ScheduleTimer(key=key, at=at):
                self._loop.deadlines.schedule(key, at)
            case CancelTimer(key=key):
                self._loop.deadlines.cancel(key)
            case CancelWorker(worker=worker, reason=reason):
                process = self._processes.by_id.get(worker)
                if process is not None:
                    process.token.cancel(reason)
            case SignalWorker(worker=worker, signal=sig):
                process = self._processes.by_id.get(worker)
                if process is not None:
                    self._processes.signal(process, signal.Signals[sig.value])
            case Log(level=level, message=message):
                log.log(int(level), message)
            case ReadHeartbeat(worker=worker):
                process = self._processes.by_id.get(worker)
                if process is not None:
                    self._queue.append(ev.HeartbeatRead(worker, process.heartbeat.value))
            case MeasureRss():
                self._queue.append(ev.RssMeasured(action.service, measure_workers(
                    self._processes.by_id, action.workers,
                    self._specs[action.service].options.memory_measure)))
            case OpenService(service=name):
                self._tokens.open(name)
                self._lifelines.open(name)
            case CancelService(service=name, reason=reason):
                self._lifelines.cut(name)  # first: then no worker of it needs a message
                self._tokens.cancel(name, reason)
            case CancelRoot(reason=reason):
                self._lifelines.cut_all()
                self._tokens.cancel_root(reason)
            case ReleaseListeners(service=name):
                self._listeners.release(name)
            case ForgetService(service=name):
                self._specs.pop(name, None)
                self._tokens.forget(name)
                self._lifelines.forget(name)
            case ShutdownStarted():
                for hook in self.on_shutdown:
                    hook()
            case _:
                process = self._processes.by_id.get(getattr(action, "worker", -1))
                answer = self._watchers.perform(action, process, self._listeners.addresses)
                if answer is False:
                    raise TypeError(f"no way to perform {action!r}")
                if isinstance(answer, ev.Event):
                    self._queue.append(answer)

    def _spawn(self, action: Spawn) -> None:
        spec = self._specs[action.service]
        where = "standby" if action.standby else action.slot
        token = self._tokens.of(action.service).child(f"{action.service}[{where}]")
        try:
            with self.private_fds.frozen() as thread_fds:
                other_fds = [*self._loop.own_fds(), *self._orphans.guard_fds(), *thread_fds,
                             *self._listeners.fds_except(action.service),
                             *self._lifelines.fds_except(action.service)]
                lifeline = None if action.standby or self._start_method != "fork" else \
                    self._lifelines.read_end(action.service)
                worker = self._processes.spawn(
                    action, spec.payload, token, now=self._clock(),
                    wait_for_ready=spec.options.wait_for_ready,
                    metrics=self._observability.store,
                    listeners=self._listeners.sockets(action.service), other_fds=other_fds,
                    watchdog_timeout=spec.options.watchdog_timeout,
                    extras={**self._watchers.worker_extras(action.worker),
                            "post_fork": spec.options.post_fork,
                            "worker_exit": spec.options.worker_exit,
                            "lifeline": lifeline,
                            "cgroup_procs": None if self._cgroups is None else
                            self._cgroups.procs_file(action.service)},
                    process_settings=spec.options.process)
        except OSError as exc:  # fork failed (EAGAIN under a pids limit, ENOMEM): back off
            token.detach()
            self._queue.append(ev.SpawnFailed(action.worker, str(exc)))
            return
        self.output.attach(worker.service, worker.slot, worker.pid, worker.output_fds)
        worker.lifeline = lifeline is not None
        token.on_cancel(lambda _node: self._tell_cancel(worker))
        self._orphans.track(worker.pid)
        self._loop.add_reader(worker.exit_source, lambda: self._on_exit_source(worker))
        self._loop.add_reader(worker.conn, lambda: self._on_message(worker))
        self._queue.append(ev.WorkerStarted(action.worker, worker.pid))

    def _tell_cancel(self, worker: WorkerProcess) -> None:
        """A worker's node was cancelled: tell its process, unless its service's lifeline was
        cut (it heard that already, with all the others: see runtime/lifelines.py)."""
        if not (worker.lifeline and self._lifelines.is_cut(worker.service)):
            worker.send_cancel()

    def _on_message(self, worker: WorkerProcess) -> None:
        messages, closed = worker.read_messages()
        for message in messages:
            self._feed(worker.event_for(message))
        if closed:
            self._loop.remove_reader(worker.conn)  # exiting; its exit source will tell us

    def _on_exit_source(self, worker: WorkerProcess) -> None:
        """The one door of a worker's exit: reap it, tell the policy, clean up after.

        Between the kernel's report and the policy's decision (a standby's Promote) only
        what the decision needs: a READY said just before, the exit status. The worker's fds,
        its node of the cancellation tree and its readers are let go afterwards."""
        ready = READY in worker.read_messages()[0]  # a READY just before a crash still counts
        returncode = self._processes.reap(worker)
        oom_killed = returncode == -signal.SIGKILL and self._cgroups is not None and \
            self._cgroups.was_oom_killed(worker.service)
        self._processes.forget(worker)  # no action can reach the reaped pid any more
        if ready:
            self._feed(ev.WorkerReady(worker.id))
        self._feed(ev.WorkerExited(worker.id, returncode, oom_killed))
        for hook in self.on_worker_exited:  # task pools: after the decision (a standby first)
            hook(worker.service, worker.id, returncode, oom_killed)
        self._loop.remove_reader(worker.exit_source)
        self._loop.remove_reader(worker.conn)
        self._processes.release(worker)
        self._watchers.worker_gone(worker.id)
        self._after_turn_pids.append(worker.pid)

    def _on_fatal_signal(self, pid: int, signum: int) -> None:
        """A worker's fault handler reported a fatal signal: its exit is announced now, before
        the kernel tears the process down (see runtime/output_pipes.py)."""
        for worker in self._processes.by_id.values():
            if worker.pid == pid:
                self._feed(ev.WorkerExiting(worker.id, -signum))
                return

    def _on_timer(self, key: TimerKey) -> None:
        self._feed(ev.TimerDue(key))

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
            self._feed(ev.SignalReceived(name))

    def _after_turn(self) -> None:
        """Work that may take time, done once the turn's events (and respawns) are handled."""
        if self._after_turn_pids:
            pids, self._after_turn_pids = self._after_turn_pids, []
            try:  # all of the turn's dead at once: the metrics archive is rewritten once
                self._observability.workers_gone(pids)
            except Exception:  # a metrics hook must never stop supervision
                log.exception("folding the metrics of pids %s failed", pids)
            for pid in pids:
                # The guard hears of it after the replacement is running (waking it would
                # delay that); until then it knows the pid with its start time, so a reuse
                # of the pid meanwhile is never mistaken for the worker.
                self._orphans.untrack(pid)
                for hook in self.on_worker_reaped:
                    try:
                        hook(pid)
                    except Exception:  # a metrics hook must never stop supervision
                        log.exception("worker-reaped hook failed for pid %d", pid)
            self._orphans.sweep(sigchld_reaps=self._loop.handles_signals)
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
    def _spec(self, service: JanusService | Callable[..., Any] | type,
              options: SpawnOptions) -> ServiceSpec:
        return make_spec(service, options, self._start_method)

    def _register(self, spec: ServiceSpec) -> str:
        policy.validate_registration(self._state, spec.name, spec.options)
        self._limit(spec)
        self._bind(spec)
        self._specs[spec.name] = spec
        self._feed(ev.Register(spec.name, spec.options))
        return spec.name

    def _update(self, spec: ServiceSpec) -> str:
        self.config.check_pool_size(spec.options.workers)
        old = self._specs.get(spec.name)
        if old is None:
            return self._register(spec)
        self._limit(spec)
        self._bind(spec)
        self._specs[spec.name] = spec
        code_changed = old.service.identity() != spec.service.identity()
        self._feed(ev.Update(spec.name, spec.options, code_changed))
        return spec.name

    def _limit(self, spec: ServiceSpec) -> None:
        """Give the service its cgroup (memory_max, cpu_max, pids_max) now, before any of its
        workers exists: where cgroup v2 cannot do it, the registration fails in one line."""
        options = spec.options
        assert options.memory_max is None or isinstance(options.memory_max, int)
        limits = Limits(options.memory_max, options.cpu_max, options.pids_max)
        if not limits.controllers:
            return
        try:
            if self._cgroups is None:
                self._cgroups = ServiceCgroups(own_cgroup())
            self._cgroups.prepare({spec.name: limits})
        except CgroupError as exc:
            raise CgroupError(f"service {spec.name!r}: {exc}") from None

    def _bind(self, spec: ServiceSpec) -> None:
        """Bind the service's listeners now, before any of its workers exists: a refused
        address fails the registration in one line and starts nothing."""
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
            self._orphans.close()
            if self._cgroups is not None:
                self._cgroups.remove()  # empty now: every worker was reaped
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
