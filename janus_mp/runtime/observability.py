"""What the supervisor shows the outside: the multiprocess metrics store, the registry behind
``/metrics`` (the workers' own metrics and ``janus_supervisor_*``), ``/healthz`` and ``/readyz``.

Opened before anything starts (a bad metrics dir or a busy port starts nothing); fed a dead
worker's pid after the turn that reaped it, so folding its files never delays a respawn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from janus_mp.core.config import SupervisorConfig
from janus_mp.core.counters import MetricsSnapshot
from janus_mp.core.readiness import readiness
from janus_mp.core.snapshots import SupervisorSnapshot
from janus_mp.errors import JanusError
from janus_mp.metrics.http import MetricsServer
from janus_mp.metrics.store import MultiprocessMetrics
from janus_mp.private_fds import PrivateFds
from janus_mp.version import __version__


class Observability:
    def __init__(self, config: SupervisorConfig, start_method: str, private_fds: PrivateFds, *,
                 metrics: Callable[[], MetricsSnapshot],
                 ping: Callable[[float], bool],
                 snapshot: Callable[[float], SupervisorSnapshot]) -> None:
        self._config = config
        self._start_method = start_method
        self._private_fds = private_fds
        self._metrics = metrics
        self._ping = ping  # True when the loop answers within the timeout
        self._snapshot = snapshot
        self.store: MultiprocessMetrics | None = None
        self.registry: Any = None
        self._http: MetricsServer | None = None
        #: The metrics endpoint's listening fd handed over by the previous supervisor.
        self.inherited_fd: int | None = None
        #: The other supervisor of an upgrade: a shared metrics_dir keeps its files.
        self.other_supervisor: int | None = None

    def open(self) -> None:
        from janus_mp.metrics.export import SupervisorCollector
        from janus_mp.metrics.registry import SupervisorRegistry

        config = self._config
        store = MultiprocessMetrics(config.metrics_dir)
        store.other_supervisor = self.other_supervisor
        store.prepare()
        store.find_metrics_made_before()  # every worker is forked after this
        self.store = store
        registry = SupervisorRegistry(workers=store.collector())
        registry.register(SupervisorCollector(self._metrics, {
            "version": __version__, "start_method": self._start_method, "name": config.name}))
        self.registry = registry
        if config.metrics_port is not None:
            server = MetricsServer(config.metrics_host, config.metrics_port, registry=registry,
                                   health=self._healthy, readiness=self._readiness,
                                   private_fds=self._private_fds,
                                   inherited_fd=self.inherited_fd)
            try:
                server.start()
            except JanusError:
                store.close()
                self.store = None
                raise
            self._http = server

    def close(self) -> None:
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self.store is not None:
            self.store.close()

    @property
    def listening_fd(self) -> int | None:
        return self._http.fileno if self._http is not None else None

    @property
    def port(self) -> int | None:
        return self._http.port if self._http is not None else None

    def share_with(self, pid: int) -> None:
        """Another supervisor (an upgrade's) now writes to a configured metrics_dir too."""
        self.other_supervisor = pid
        if self.store is not None:
            self.store.other_supervisor = pid

    def stopping(self) -> None:
        """The supervisor has begun its final stop."""
        if self.store is not None:
            self.store.closing()

    def workers_reaped(self, pids: list[int]) -> None:
        """Just reaped: their live gauges stop counting (the rest is folded later)."""
        if self.store is not None:
            self.store.live_gauges_dead(pids)

    def workers_gone(self, pids: list[int]) -> None:
        if self.store is not None:
            self.store.processes_dead(pids)

    def _healthy(self) -> bool:
        """The loop is alive and turning: it answers a no-op within a second; and, with
        ``healthz_fails_on_given_up``, no service has ended for good (so an orchestrator
        restarts the whole supervisor, as OTP escalates to the parent)."""
        try:
            if not self._ping(1.0):
                return False
            if self._config.healthz_fails_on_given_up:
                return not readiness(self._snapshot(2.0).to_dict()).given_up
            return True
        except Exception:
            return False

    def _readiness(self) -> tuple[bool, dict[str, Any]]:
        verdict = readiness(self._snapshot(2.0).to_dict())
        return verdict.ready, verdict.to_dict()
