"""Fuzzing the control socket of a live supervisor: every request, however malformed, gets one
JSON reply with a one-line error, and the supervisor keeps supervising."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from janus_mp import JanusSupervisor, SpawnOptions, SupervisorConfig
from janus_mp.app.deploy import Deployment
from tests.support import wait_until

pytestmark = pytest.mark.shares_supervisor

COMMANDS = ["status", "restart", "scale", "stop", "start", "reload", "nope", ""]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False),
              st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=5)
requests = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda c, a: (json.dumps({"command": c, **a}) + "\n").encode(),
              st.sampled_from(COMMANDS) | st.text(max_size=8),
              st.dictionaries(st.sampled_from(["service", "workers", "fast", "x"]),
                              json_values | st.sampled_from(["idle", "+1", "-1", "0"]),
                              max_size=3)),
)


def _idle(ctx):
    ctx.shutdown.wait()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ctl") / "janus.sock")
    sup = JanusSupervisor(SupervisorConfig(install_signal_handlers=False, shutdown_timeout=2,
                                           max_workers=4))
    sup.spawn_service(_idle, SpawnOptions(name="idle", workers=2))
    deployment = Deployment(sup, socket_path=path)
    thread = threading.Thread(target=deployment.run, daemon=True)
    thread.start()
    wait_until(lambda: sup.state == "running" and sup.snapshot().service("idle").service.ready
               == 2, timeout=15)
    yield path, sup
    sup.shutdown()
    thread.join(30)
    assert not thread.is_alive()
    assert not sup.snapshot().services[0].service.pids  # every worker reaped


def send(path: str, payload: bytes) -> dict:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    return json.loads(data)


@pytest.mark.timeout(300)
@settings(max_examples=10_000, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(requests)
def test_any_request_gets_one_json_line_and_the_supervisor_lives(live, payload):
    path, sup = live
    if b'"shutdown"' in payload:
        return  # the one command that is meant to end the supervisor
    reply = send(path, payload)
    assert isinstance(reply.get("ok"), bool)
    if not reply["ok"]:
        assert "\n" not in reply["error"] and reply["error"]
    assert sup.state == "running"


def test_after_fuzzing_the_pool_is_whole(live):
    path, sup = live
    # The fuzzer may have stopped the service: start it again (idempotent if it runs).
    wait_until(lambda: send(path, b'{"command": "start", "service": "idle"}\n')["ok"],
               timeout=20, interval=0.1)
    wait_until(lambda: send(path, b'{"command": "scale", "service": "idle", "workers": 2}\n')
               ["ok"], timeout=20, interval=0.1)
    wait_until(lambda: sup.snapshot().service("idle").service.ready == 2, timeout=20)
