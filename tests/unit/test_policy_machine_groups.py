"""The policy state machine again, with a supervision tree and a dependency: services a and b
in a group (any strategy, a small intensity) under a top group with c, and c depending on a.
Any sequence of exits, readiness, commands, clock jumps and shutdowns keeps the pool's
invariants, never makes an illegal lifecycle move, and leaves a service waiting only while it
and the supervisor run."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from janus_mp.core import events as ev
from janus_mp.core.backoff import BackoffConfig
from janus_mp.core.config import AutoShutdown, SpawnOptions, SupervisorConfig
from janus_mp.core.exits import RestartPolicy
from janus_mp.core.gates import will_not_start
from janus_mp.core.pool import SupervisorPhase
from janus_mp.core.tree import GroupStrategy, ServiceGroup
from tests.unit.test_policy_machine import SERVICES, CountingSim, PolicyMachine


class GroupPolicyMachine(PolicyMachine):
    @initialize(seed=st.integers(0, 2**16), half_open=st.booleans(),
                strategy=st.sampled_from(list(GroupStrategy)), intensity=st.integers(0, 3),
                a_restart=st.sampled_from(["on_failure", "never"]),
                auto_shutdown=st.sampled_from(list(AutoShutdown)),
                inner_restart=st.sampled_from(list(RestartPolicy)),
                stop_timeout=st.sampled_from([None, "brutal_kill", "infinity"]))
    def start(self, seed: int, half_open: bool,  # type: ignore[override]
              strategy: GroupStrategy = GroupStrategy.ONE_FOR_ONE, intensity: int = 1,
              a_restart: str = "on_failure", auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
              inner_restart: RestartPolicy = RestartPolicy.ALWAYS,
              stop_timeout: str | None = None) -> None:
        sim = self.sim = CountingSim(SupervisorConfig(shutdown_timeout=10.0, kill_timeout=2.0,
                                                      max_workers=8), seed)
        backoff = BackoffConfig(initial_delay=0.1, max_delay=2.0, max_retries=3, window=30.0,
                                half_open_after=5.0 if half_open else None, trial_period=3.0)
        # a: a one-shot or transient member, significant when inner can shut itself down
        sim.register("a", SpawnOptions(name="a", workers=2, backoff=backoff,
                                       restart=a_restart,  # type: ignore[arg-type]
                                       significant=auto_shutdown is not AutoShutdown.NEVER,
                                       stop_timeout=stop_timeout))
        sim.register("b", SpawnOptions(name="b", workers=2, restart="always",
                                       start_timeout=15.0, halt_codes=frozenset(),
                                       backoff=backoff))
        sim.register("c", SpawnOptions(name="c", depends_on=("a",), backoff=backoff))
        sim.feed(ev.RegisterGroup(ServiceGroup("inner", ("a", "b"), strategy,
                                               max_restarts=intensity, within=10.0,
                                               restart=inner_restart,
                                               auto_shutdown=auto_shutdown)))
        sim.feed(ev.RegisterGroup(ServiceGroup("top", ("inner", "c"), GroupStrategy.ONE_FOR_ONE,
                                               max_restarts=intensity + 1, within=10.0)))
        sim.begin()
        self.rolling: dict[str, int] = {}
        self.stopping_from: int | None = None

    # A group restart may empty a pool during a rolling restart: nothing tracked here.
    @rule(name=st.sampled_from(SERVICES))
    def rolling_restart(self, name: str) -> None:
        self.command(ev.RestartService(name))

    @invariant()
    def only_a_live_service_waits(self) -> None:
        state = self.sim.state
        for name in state.tree.waiting:
            service = state.services[name]
            assert not service.stopping and state.phase is SupervisorPhase.RUNNING, name

    @invariant()
    def nobody_waits_for_a_member_that_will_not_start(self) -> None:
        state = self.sim.state
        for name, reason in state.tree.waiting.items():
            if "starts its members in order" in reason:
                before = reason.split()[2]
                assert not all(will_not_start(state, s)
                               for s in state.tree.services_under(before)), (name, reason)

    @invariant()
    def an_ended_group_has_no_plan_left(self) -> None:
        for group in self.sim.state.tree.groups.values():
            if group.ended:
                assert not group.ending and not group.affected, group.name


TestGroupPolicyMachine = GroupPolicyMachine.TestCase
TestGroupPolicyMachine.settings = settings(
    max_examples=60, stateful_step_count=50, deadline=None, derandomize=True, database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
