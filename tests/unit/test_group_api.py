"""The Python face of trees and dependencies: ServiceGroup and spawn_group on a supervisor that
is not running (nothing is forked), and the waiting reason in /readyz's body."""

from __future__ import annotations

import pytest

from janus_mp import ConfigError, JanusSupervisor, ServiceGroup, SpawnOptions, SupervisorConfig
from janus_mp.private_fds import PrivateFds
from janus_mp.runtime.observability import Observability
from tests.unit.policy_sim import Sim


def idle(ctx):  # type: ignore[no-untyped-def]
    ctx.shutdown.wait()


def test_spawn_group_registers_a_group_over_spawned_services():
    sup = JanusSupervisor(SupervisorConfig(install_signal_handlers=False))
    for name in ("db", "api"):
        sup.spawn_service(idle, SpawnOptions(name=name))
    assert sup.spawn_group(ServiceGroup("backend", ("db", "api"), "one_for_all")) == "backend"
    group = sup.snapshot().group("backend")
    assert (group.members, group.strategy, group.phase) == (("db", "api"), "one_for_all",
                                                            "starting")
    with pytest.raises(ConfigError, match="'db' is already a member of group 'backend'"):
        sup.spawn_group(ServiceGroup("other", ("db",)))


def test_readyz_names_what_a_waiting_service_waits_for():
    sim = Sim()
    sim.register("db", SpawnOptions(name="db"))
    sim.register("api", SpawnOptions(name="api", depends_on=("db",)))
    sim.begin()
    observability = Observability(
        SupervisorConfig(), "fork", PrivateFds(), metrics=lambda: sim.state.metrics.snapshot(),
        ping=lambda _timeout: True, snapshot=lambda _timeout: sim.snapshot())
    ready, body = observability._readiness()
    assert not ready
    assert body["not_ready"]["api"] == {"phase": "starting", "ready": 0, "desired": 1,
                                        "waiting": "waiting for db (starting)"}
    assert "waiting" not in body["not_ready"]["db"]


def test_the_otp_options_through_the_python_api():
    from janus_mp import AutoShutdown, RestartPolicy

    sup = JanusSupervisor(SupervisorConfig(install_signal_handlers=False,
                                           auto_shutdown=AutoShutdown.ALL_SIGNIFICANT))
    sup.spawn_service(idle, SpawnOptions(name="job", restart=RestartPolicy.NEVER,
                                         significant=True, stop_timeout="brutal_kill"))
    sup.spawn_service(idle, SpawnOptions(name="web", stop_timeout="infinity"))
    with pytest.raises(ConfigError, match="^auto_shutdown: is \"never\" but member 'job' is "
                                          "significant"):
        sup.spawn_group(ServiceGroup("g", ("job", "web")))
    sup.spawn_group(ServiceGroup("g", ("job", "web"), restart=RestartPolicy.ON_FAILURE,
                                 significant=True, auto_shutdown=AutoShutdown.ANY_SIGNIFICANT))
    assert sup.snapshot().group("g").phase == "starting"
