"""A worker's way in and out: the fork with everything it must not inherit closed, the
readers on its pipe and exit source, and the reaping and cleaning up after its exit.

The path of one worker exit: its pidfd turns readable → ``WorkerPlumbing.on_exit_source``
reaps it (the zombie is already there: nothing blocks) → ``WorkerExited`` → the policy
classifies the exit, moves the slot's lifecycle, consults backoff and breaker, and asks for a
``ScheduleTimer`` (RESTART) → when it is due, ``Spawn`` forks the replacement. What can take
time (folding the dead worker's metrics files, sweeping its orphans through /proc) runs after
the turn's events (``after_turn``), never between an exit and its replacement.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

from janus_mp.core import events as ev
from janus_mp.core.actions import Spawn
from janus_mp.private_fds import PrivateFds
from janus_mp.runtime.cgroups import ServiceLimits
from janus_mp.runtime.lifelines import Lifelines
from janus_mp.runtime.listeners import ListenerSet
from janus_mp.runtime.loop import Loop
from janus_mp.runtime.observability import Observability
from janus_mp.runtime.orphans import Orphans
from janus_mp.runtime.output_capture import OutputCapture
from janus_mp.runtime.processes import Processes, WorkerProcess
from janus_mp.runtime.specs import ServiceSpec
from janus_mp.runtime.tokens import ServiceTokens
from janus_mp.runtime.watchers import Watchers
from janus_mp.service import READY

log = logging.getLogger("janus_mp.supervisor")

#: Dead workers' metrics are folded this long after the first death not yet folded, together
#: with every death meanwhile (see WorkerPlumbing.fold_metrics)...
FOLD_DELAY = 0.25
#: ...or at once when this many wait.
FOLD_BATCH = 256


class WorkerPlumbing:
    """Owns the spawn and exit of worker processes; what they say goes to ``feed``."""

    def __init__(self, clock: Callable[[], float], start_method: str, *, loop: Loop,
                 processes: Processes, specs: dict[str, ServiceSpec], tokens: ServiceTokens,
                 lifelines: Lifelines, listeners: ListenerSet, orphans: Orphans,
                 observability: Observability, watchers: Watchers, output: OutputCapture,
                 private_fds: PrivateFds, limits: ServiceLimits,
                 feed: Callable[[ev.Event], None],
                 exited: Callable[[str, int, int, bool], None],
                 reaped: Callable[[int], None]) -> None:
        """``feed`` hands an event to the policy; ``exited`` and ``reaped`` run the
        supervisor's hooks (a worker's exit is known; its pid is let go after the turn)."""
        self._clock = clock
        self._start_method = start_method
        self._loop = loop
        self._processes = processes
        self._specs = specs
        self._tokens = tokens
        self._lifelines = lifelines
        self._listeners = listeners
        self._orphans = orphans
        self._observability = observability
        self._watchers = watchers
        self._output = output
        self._private_fds = private_fds
        self._limits = limits
        self._feed = feed
        self._exited = exited
        self._reaped = reaped
        self._after_turn_pids: list[int] = []
        self._fold_pending: list[int] = []  # dead workers whose metrics wait to be folded
        self._fold_due = False  # a fold is scheduled on the loop

    def spawn(self, action: Spawn) -> ev.Event:
        """Fork the worker ``action`` asks for; the event answering it: WorkerStarted, or
        SpawnFailed when the fork failed."""
        spec = self._specs[action.service]
        where = "standby" if action.standby else action.slot
        token = self._tokens.of(action.service).child(f"{action.service}[{where}]")
        try:
            with self._private_fds.frozen() as thread_fds:
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
                            "cgroup_procs": self._limits.procs_file(action.service)},
                    process_settings=spec.process)
        except OSError as exc:  # fork failed (EAGAIN under a pids limit, ENOMEM): back off
            token.detach()
            return ev.SpawnFailed(action.worker, str(exc))
        self._output.attach(worker.service, worker.slot, worker.pid, worker.output_fds)
        worker.lifeline = lifeline is not None
        token.on_cancel(_Call(WorkerPlumbing._tell_cancel, self, worker))
        self._orphans.track(worker.pid)
        self._loop.add_reader(worker.exit_source,
                              _Call(WorkerPlumbing.on_exit_source, self, worker))
        self._loop.add_reader(worker.conn, _Call(WorkerPlumbing._on_message, self, worker))
        return ev.WorkerStarted(action.worker, worker.pid)

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

    def on_exit_source(self, worker: WorkerProcess) -> None:
        """The one door of a worker's exit: reap it, tell the policy, clean up after.

        Between the kernel's report and the policy's decision (a standby's Promote) only
        what the decision needs: a READY said just before, the exit status. The worker's fds,
        its node of the cancellation tree and its readers are let go afterwards."""
        ready = READY in worker.read_messages()[0]  # a READY just before a crash still counts
        returncode = self._processes.reap(worker)
        oom_killed = returncode == -signal.SIGKILL and \
            self._limits.was_oom_killed(worker.service)
        self._processes.forget(worker)  # no action can reach the reaped pid any more
        if ready:
            self._feed(ev.WorkerReady(worker.id))
        self._feed(ev.WorkerExited(worker.id, returncode, oom_killed))
        # task pools: after the decision (a standby first)
        self._exited(worker.service, worker.id, returncode, oom_killed)
        self._loop.remove_reader(worker.exit_source)
        self._loop.remove_reader(worker.conn)
        self._processes.release(worker)
        self._watchers.worker_gone(worker.id)
        self._after_turn_pids.append(worker.pid)

    def on_fatal_signal(self, pid: int, signum: int) -> None:
        """A worker's fault handler reported a fatal signal: its exit is announced now, before
        the kernel tears the process down (see runtime/output_pipes.py)."""
        worker = self._processes.of_pid(pid)
        if worker is not None:
            self._feed(ev.WorkerExiting(worker.id, -signum))

    def after_turn(self) -> None:
        """What may take time after the turn's exits (and respawns): let the guard and the
        hooks know the dead workers' pids, sweep their orphans; fold their metrics a little
        later (see :meth:`fold_metrics`)."""
        if not self._after_turn_pids:
            return
        pids, self._after_turn_pids = self._after_turn_pids, []
        try:  # a dead worker's live gauges must not be scraped: their files go now
            self._observability.workers_reaped(pids)
        except Exception:  # a metrics hook must never stop supervision
            log.exception("dropping the live gauges of pids %s failed", pids)
        self._fold_pending.extend(pids)
        if len(self._fold_pending) >= FOLD_BATCH:
            self.fold_metrics()
        elif not self._fold_due:
            self._fold_due = True
            self._loop.call_at(self._clock() + FOLD_DELAY, self._fold_when_due)
        for pid in pids:
            # The guard hears of it after the replacement is running (waking it would
            # delay that); until then it knows the pid with its start time, so a reuse
            # of the pid meanwhile is never mistaken for the worker.
            self._orphans.untrack(pid)
            self._reaped(pid)
        self._orphans.sweep(sigchld_reaps=self._loop.handles_signals)

    def _fold_when_due(self) -> None:
        self._fold_due = False
        self.fold_metrics()

    def fold_metrics(self) -> None:
        """Fold the pending dead workers' metrics files into the archive, all at once.

        Not in the turn that reaped them: then their replacements (a standby just promoted,
        a fork booting) need the CPUs, and a crash loop would rewrite the archive's files
        once per death. A scrape meanwhile reads a dead worker's files as they were (they
        are final), so nothing is counted twice or lost."""
        pids, self._fold_pending = self._fold_pending, []
        if not pids:
            return
        try:  # the metrics archive is rewritten once for all of them
            self._observability.workers_gone(pids)
        except Exception:  # a metrics hook must never stop supervision
            log.exception("folding the metrics of pids %s failed", pids)


class _Call:
    """``fn(owner, arg)``, whatever it is called with: a worker's callbacks (its exit, its
    messages, its cancellation) for as long as it lives. 64 bytes, where a lambda with its
    closure is ~210 and a functools.partial ~250; the supervisor holds three per worker."""

    __slots__ = ("fn", "owner", "arg")

    def __init__(self, fn: Callable[[Any, Any], None], owner: Any, arg: Any) -> None:
        self.fn, self.owner, self.arg = fn, owner, arg

    def __call__(self, *_ignored: object) -> None:
        self.fn(self.owner, self.arg)
