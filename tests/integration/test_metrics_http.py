"""/metrics, /healthz and /readyz served by a real supervisor, over real sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.error
import urllib.request

import pytest

from tests.harness import SupervisorProcess
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)

SCENARIO = """
import os, sys, time
from prometheus_client import Counter, Gauge, Histogram
from janus_mp import *
from tests.scenario_lib import record, started
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=1.0, metrics_port=0)
DONE = Counter("units_done", "work units", ["service"])      # made before the dir existed
LIVE = Gauge("worker_up", "1 per live worker", multiprocess_mode="livesum")
SIZES = Histogram("unit_size", "sizes", buckets=(1, 10, 100))

def counting(ctx):
    started(ctx)
    DONE.labels(ctx.service).inc(5)
    SIZES.observe(7)
    LIVE.set(1)
    record("counted", ctx.service, ctx.index, ctx.generation)
    flag = os.environ["JANUS_TEST_EVENTS"] + f".hold{ctx.index}"
    if ctx.generation <= 2:
        sys.exit(1)                   # two crashes per slot, counts must survive them
    while os.path.exists(flag) and not ctx.shutdown.wait(0.02):
        pass                          # a held worker goes unready by exiting (see test)
    ctx.ready()
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(counting, SpawnOptions(workers=2, wait_for_ready=True,
        backoff=BackoffConfig(initial_delay=0.001, max_delay=0.01)))
"""


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers["Content-Type"]


def sample(body: bytes, prefix: str) -> float:
    for line in body.decode().splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{prefix} not in scrape")


def test_scrape_after_restarts_counts_everything(tmp_path):
    with SupervisorProcess(tmp_path, SCENARIO) as sup:
        port = sup.request("port")
        wait_until(lambda: sup.service("counting")["ready"] == 2)
        status, body, _ = get(port, "/metrics")
        assert status == 200
        # 2 slots x 3 generations x 5: the crashed generations' counts were kept.
        assert sample(body, 'units_done_total{service="counting"}') == 30.0
        assert sample(body, 'unit_size_count') == 6.0
        assert sample(body, 'unit_size_bucket{le="10.0"}') == 6.0
        assert sample(body, "worker_up ") == 2.0  # dead workers' live gauges dropped
        assert sample(body, 'janus_supervisor_restarts_total{service="counting"}') == 4.0
        assert sample(body, 'janus_supervisor_terminated_total{reason="failed",'
                            'service="counting"}') == 4.0
        assert sample(body, "janus_supervisor_active_services") == 1.0
        assert sample(body, 'janus_supervisor_workers{phase="running",service="counting"}') \
            == 2.0
        metrics = sup.metrics()
        assert metrics["restarts_total"] == 4 and metrics["spawned_total"] == 6
        status, body, content_type = get(port, "/metrics", {
            "Accept": "application/openmetrics-text; version=1.0.0"})
        assert content_type.startswith("application/openmetrics-text")
        assert body.rstrip().endswith(b"# EOF")


def test_readyz_flips_as_workers_start_crash_and_recover(tmp_path):
    hold = "JANUS_TEST_EVENTS"
    supervisor = SupervisorProcess(tmp_path, SCENARIO)
    held = f"{supervisor.events}.hold1"
    open(held, "w").close()  # before the start: slot 1's third generation waits to be ready
    with supervisor as sup:
        port = sup.request("port")
        status, body, _ = get(port, "/readyz")
        assert status == 503
        detail = json.loads(body)
        assert detail["ready"] is False and "counting" in detail["not_ready"]
        wait_until(lambda: sup.service("counting")["workers"][0]["phase"] == "running")
        assert get(port, "/readyz")[0] == 503
        os.unlink(held)
        wait_until(lambda: get(port, "/readyz")[0] == 200)
        assert json.loads(get(port, "/readyz")[1]) == {"ready": True, "state": "running",
                                                       "not_ready": {}, "given_up": []}
        assert get(port, "/healthz") == (200, b"ok\n", "text/plain")
        assert get(port, "/nothing")[0] == 404
        del hold


def test_slow_and_idle_clients_do_not_block_scrapes(tmp_path):
    with SupervisorProcess(tmp_path, SCENARIO) as sup:
        port = sup.request("port")
        wait_until(lambda: sup.service("counting")["ready"] == 2)
        idle = []
        try:
            for _ in range(200):  # far more than the connection cap
                idle.append(socket.create_connection(("127.0.0.1", port)))
            slowloris = socket.create_connection(("127.0.0.1", port))
            idle.append(slowloris)
            slowloris.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never finishes
            huge = socket.create_connection(("127.0.0.1", port))
            idle.append(huge)
            huge.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 40_000)
            # No waiting for timeouts to free slots: the scrape goes through while every
            # hostile connection is still open (the slow one is cut only at its head deadline,
            # so finding it open proves the scrape did not wait for that; no stopwatch).
            assert _try_scrape(port)
            slowloris.setblocking(False)
            with pytest.raises(BlockingIOError):
                slowloris.recv(1)
            slowloris.setblocking(True)
            try:  # cut off for its oversized headers: EOF, or RST as it had unread bytes
                assert huge.recv(100) == b""
            except ConnectionResetError:
                pass
            # The supervisor itself never noticed: it still supervises.
            assert sup.service("counting")["ready"] == 2
        finally:
            for s in idle:
                s.close()
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def _try_scrape(port: int) -> bool:
    try:
        return get(port, "/metrics")[0] == 200
    except OSError:
        return False


def test_endpoint_binds_loopback_by_default():
    from janus_mp import SupervisorConfig

    assert SupervisorConfig().metrics_host == "127.0.0.1"
    from click.testing import CliRunner

    from janus_mp.app.cli import cli

    result = CliRunner().invoke(cli, ["run", "--help"])
    assert "127.0.0.1:9464" in result.output


def test_healthz_is_503_while_the_loop_is_wedged(tmp_path):
    with SupervisorProcess(tmp_path, SCENARIO) as sup:
        port = sup.request("port")
        assert get(port, "/healthz")[0] == 200
        sup.request("wedge", seconds=4.0)
        status, body, _ = wait_until(lambda: (r := get(port, "/healthz"))[0] == 503 and r,
                                     timeout=5)
        assert body == b"supervisor loop wedged\n"
        wait_until(lambda: get(port, "/healthz")[0] == 200, timeout=10)
