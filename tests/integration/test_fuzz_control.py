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

COMMANDS = ["status", "restart", "scale", "stop", "start", "reload", "events", "logs", "nope", ""]
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
              # no "follow": a followed stream ends only some time after its client leaves
              # (see test_followed_streams_...), which would make 10,000 examples slow
              st.dictionaries(st.sampled_from(["service", "workers", "fast", "x", "lines",
                                               "buffer"]),
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
    """The reply's first line. A streamed reply (``events``, ``logs`` with ``follow``) goes on
    with more lines until the server sees this client has hung up: each must be JSON too."""
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
    first, *more = data.splitlines()
    reply = json.loads(first)
    if not reply.get("ok"):
        assert not more, "a refusal is one line"
    for line in more:
        assert isinstance(json.loads(line), dict)
    return reply


@pytest.mark.timeout(300)
# 10,000 requests, drawn 20 to an example: Hypothesis's cost is per example far more than per
# draw, so 500 examples of 20 cost a fifth of 10,000 examples of one (a failing batch still
# shrinks to the one request that fails).
@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(requests, min_size=20, max_size=20))
def test_any_request_gets_one_json_line_and_the_supervisor_lives(live, payloads):
    path, sup = live
    for payload in payloads:
        if b'"shutdown"' in payload:
            continue  # the one command that is meant to end the supervisor
        reply = send(path, payload)
        assert isinstance(reply.get("ok"), bool)
        if not reply["ok"]:
            assert "\n" not in reply["error"] and reply["error"]
        assert sup.state == "running"


@pytest.mark.parametrize("payload", [
    b'{"command": "events"}\n', b'{"command": "events", "follow": true}\n',
    b'{"command": "logs", "follow": true}\n', b'{"command": "logs", "follow": 1, "lines": 0}\n',
    b'{"command": "events", "follow": true, "buffer": 100000000}\n'])
def test_followed_streams_reply_json_lines_until_the_client_leaves(live, payload):
    path, sup = live
    reply = send(path, payload)
    assert isinstance(reply.get("ok"), bool)
    assert sup.state == "running"


def test_after_fuzzing_the_pool_is_whole(live):
    path, sup = live
    # The fuzzer may have stopped the service: start it again (idempotent if it runs).
    wait_until(lambda: send(path, b'{"command": "start", "service": "idle"}\n')["ok"],
               timeout=20, interval=0.1)
    wait_until(lambda: send(path, b'{"command": "scale", "service": "idle", "workers": 2}\n')
               ["ok"], timeout=20, interval=0.1)
    wait_until(lambda: sup.snapshot().service("idle").service.ready == 2, timeout=20)
