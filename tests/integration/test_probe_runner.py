"""The probe runner against real endpoints: HTTP (2xx/3xx healthy, 5xx not), TCP connects, and
commands (exit 0 healthy, killed past the timeout); results arrive through ``deliver``."""

from __future__ import annotations

import http.server
import queue
import socket
import sys
import threading

import pytest

from janus_mp.core import events as ev
from janus_mp.core.actions import RunProbe
from janus_mp.core.health_check import HealthCheck
from janus_mp.private_fds import PrivateFds
from janus_mp.runtime.helper_children import HelperChildren
from janus_mp.runtime.probes import ProbeRunner, probe_address

pytestmark = pytest.mark.timeout(30)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        code = 500 if self.path == "/sick" else 204
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def runner():
    results: queue.Queue[ev.ProbeFinished] = queue.Queue()
    fds = PrivateFds()
    children = HelperChildren(fds)
    probes = ProbeRunner(fds, children, results.put)
    yield lambda check, listeners=(): _probe(probes, results, check, listeners), fds
    probes.close()
    children.close()


def _probe(probes, results, check, listeners) -> ev.ProbeFinished:
    probes.run(RunProbe(7, 0, 1234, check), "svc", tuple(listeners))
    return results.get(timeout=20)


def test_http_on_the_listener_and_on_a_port(server, runner):
    probe, fds = runner
    ok = probe(HealthCheck(http="/healthz"), [f"127.0.0.1:{server}"])
    assert (ok.worker, ok.healthy) == (7, True) and "HTTP 204" in ok.detail
    sick = probe(HealthCheck(http="/sick", port=server))
    assert not sick.healthy and sick.detail.endswith("HTTP 500")
    with fds.frozen() as held:
        assert held == frozenset()  # every probe socket was closed and unregistered


def test_tcp_connects_and_refusals(runner):
    probe, _ = runner
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert probe(HealthCheck(tcp=port)).healthy
    refused = probe(HealthCheck(tcp=port))
    assert not refused.healthy and "cannot connect" in refused.detail


def test_commands_by_exit_code_and_timeout(runner):
    probe, _ = runner
    assert probe(HealthCheck(command=(sys.executable, "-c", "pass"))).healthy
    failed = probe(HealthCheck(command=(sys.executable, "-c", "raise SystemExit(3)")))
    assert not failed.healthy and failed.detail.endswith("exited 3")
    slow = probe(HealthCheck(command=(sys.executable, "-c", "import time; time.sleep(30)"),
                             timeout=0.5))
    assert not slow.healthy and "timeout" in slow.detail
    missing = probe(HealthCheck(command=("/nonexistent/probe",)))
    assert not missing.healthy and "cannot run" in missing.detail


def test_where_a_probe_goes():
    http = HealthCheck(http="/h")
    assert probe_address(http, 2, ("0.0.0.0:8000",)) == ("127.0.0.1", 8000)
    assert probe_address(http, 0, ("[::]:8000",)) == ("::1", 8000)
    assert probe_address(http, 0, ("unix:/run/x.sock",)) == "/run/x.sock"
    assert probe_address(http, 0, ()) is None
    assert probe_address(HealthCheck(http="/h", port=9000), 2, ("0.0.0.0:8000",)) == \
        ("127.0.0.1", 9002)
    assert probe_address(HealthCheck(tcp=9000), 1, ()) == ("127.0.0.1", 9001)
