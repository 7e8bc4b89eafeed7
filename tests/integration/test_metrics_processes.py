"""MultiprocessMetrics with real worker processes, and MetricsServer over real sockets."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import multiprocess
import psutil
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, values
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from janus_mp.errors import ConfigError, JanusError
from janus_mp.metrics import http as http_endpoint
from janus_mp.metrics.http import MetricsServer
from janus_mp.metrics.store import MultiprocessMetrics

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")

# The trap: these exist, in the default REGISTRY, before any multiprocess directory does, and
# the parent even counts with them. A worker must start them from zero, in its own files.
JOBS = Counter("janus_trap_jobs", "Jobs done by workers.")
BY_KIND = Counter("janus_trap_by_kind", "Jobs by kind.", ["kind"])
UP = Gauge("janus_trap_up", "1 per live worker.", multiprocess_mode="livesum")
JOBS.inc(100)
BY_KIND.labels("a").inc(50)  # a labelled child made in the parent, before the fork


def wait_until(condition: Callable[[], T], timeout: float = 10.0) -> T:
    """The first truthy value of condition(); fails after timeout. Polls: no fixed sleeps."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s")
        time.sleep(0.005)  # pacing of the poll, not synchronisation


# -- worker side -------------------------------------------------------------------------------
def worker(store: MultiprocessMetrics, jobs: int, hold: bool) -> None:
    store.worker_init()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == store.path
    JOBS.inc(jobs)
    BY_KIND.labels("a").inc(jobs)
    BY_KIND.labels("b").inc(1)  # a child made after worker_init
    UP.set(1)
    if hold:
        signal.pause()  # until SIGKILLed


@contextlib.contextmanager
def processes() -> Iterator[list[Any]]:
    """Processes started inside are always reaped: TERM, then KILL."""
    started: list[Any] = []
    try:
        yield started
    finally:
        for p in started:
            if p.is_alive():
                p.terminate()
        for p in started:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()


def file_value(store: MultiprocessMetrics, pid: int, sample: str) -> float | None:
    path = f"{store.path}/counter_{pid}.db"
    try:
        if os.path.getsize(path) < 8:  # created, not sized yet by the worker: no value yet
            return None
        entries = MmapedDict.read_all_values_from_file(path)
        return next((v for key, v, _, _ in entries if json.loads(key)[1] == sample), None)
    except FileNotFoundError:
        return None


def scrape(store: MultiprocessMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in store.collector().collect() for s in family.samples}


@pytest.fixture
def store() -> Iterator[MultiprocessMetrics]:
    metrics = MultiprocessMetrics()
    metrics.prepare()
    yield metrics
    metrics.close()


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_counts_of_killed_workers_survive_the_fold(store: MultiprocessMetrics,
                                                   method: str) -> None:
    ctx = multiprocess.get_context(method)
    with processes() as started:
        for jobs, hold in ((3, False), (5, True), (7, True)):
            p = ctx.Process(target=worker, args=(store, jobs, hold))
            p.start()
            started.append(p)
        clean, *held = started
        clean.join(20)
        assert clean.exitcode == 0
        store.process_dead(clean.pid)
        for p, jobs in zip(held, (5, 7), strict=True):
            wait_until(lambda p=p, jobs=jobs: file_value(store, p.pid, "janus_trap_jobs_total")
                       == jobs, timeout=20)
        # UP is set after the counters: wait for it rather than assume it (a race under
        # forkserver on a loaded machine); the dead worker's gauge must not count.
        wait_until(lambda: scrape(store).get(("janus_trap_up", ())) == 2.0, timeout=20)
        assert scrape(store)[("janus_trap_up", ())] == 2.0  # the live ones only
        for p in held:
            os.kill(p.pid, signal.SIGKILL)
            p.join()
            store.process_dead(p.pid)
    samples = scrape(store)
    assert samples[("janus_trap_jobs_total", ())] == 15.0  # the parent's 100 is not there
    assert samples[("janus_trap_by_kind_total", (("kind", "a"),))] == 15.0
    assert samples[("janus_trap_by_kind_total", (("kind", "b"),))] == 3.0
    assert ("janus_trap_up", ()) not in samples  # dead workers' live gauges dropped
    assert store.file_count() == 0
    assert JOBS._value.get() == 100 and not values.ValueClass._multiprocess  # parent untouched


def test_file_count_follows_live_workers_not_deaths(store: MultiprocessMetrics) -> None:
    ctx = multiprocess.get_context("fork")
    with processes() as started:
        keeper = ctx.Process(target=worker, args=(store, 1, True))
        keeper.start()
        started.append(keeper)
        wait_until(lambda: file_value(store, keeper.pid, "janus_trap_jobs_total") == 1)
        live_files = store.file_count()
        for _ in range(40):
            p = ctx.Process(target=worker, args=(store, 2, False))
            p.start()
            p.join()
            store.process_dead(p.pid)
            assert store.file_count() == live_files
        assert scrape(store)[("janus_trap_jobs_total", ())] == 81.0
        assert scrape(store)[("janus_trap_up", ())] == 1.0


def test_scrapes_during_folds_never_double_count_or_drop(store: MultiprocessMetrics) -> None:
    """Every worker is in its file or in the archive, never both, never neither."""
    key = mmap_key("c", "c_total", [], [], "c")
    pids = range(50_000, 50_400)
    for pid in pids:
        f = MmapedDict(f"{store.path}/counter_{pid}.db")
        f.write_value(key, 1.0, 0.0)
        f.close()
    seen: list[float] = []
    done = threading.Event()

    def scraper() -> None:
        while not done.is_set():
            seen.append(scrape(store)[("c_total", ())])

    thread = threading.Thread(target=scraper)
    thread.start()
    try:
        wait_until(lambda: seen)
        for pid in pids:
            store.process_dead(pid)
        wait_until(lambda: store.file_count() == 0 and len(seen) > 5)
    finally:
        done.set()
        thread.join()
    assert set(seen) == {400.0}


# -- the directory's lifecycle -----------------------------------------------------------------
def test_configured_dir_loses_stale_files_and_only_them(tmp_path: Path) -> None:
    target = tmp_path / "metrics"
    target.mkdir()
    stale = MmapedDict(str(target / "counter_4242.db"))
    stale.write_value(mmap_key("old", "old_total", [], [], "old"), 9.0, 0.0)
    stale.close()
    (target / "gauge_all_4242.db").write_bytes(b"")
    (target / "notes.txt").write_text("not ours")
    (target / "sqlite.db").write_text("not a prometheus file")
    store = MultiprocessMetrics(str(target))
    assert store.prepare() == str(target)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt", "sqlite.db"]
    assert scrape(store) == {}
    mine = MmapedDict(str(target / "counter_77.db"))
    mine.close()
    store.close()
    store.close()  # idempotent
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt", "sqlite.db"]


def test_private_dir_is_0700_and_removed_on_close() -> None:
    store = MultiprocessMetrics()
    path = Path(store.prepare())
    assert path.is_dir() and path.stat().st_mode & 0o777 == 0o700
    assert store.prepare() == str(path)  # idempotent
    store.close()
    assert not path.exists() and store.path is None
    store.close()


def test_a_forked_copy_cannot_remove_the_directory(store: MultiprocessMetrics) -> None:
    ctx = multiprocess.get_context("fork")
    p = ctx.Process(target=store.close)
    p.start()
    p.join()
    assert p.exitcode == 0 and Path(store.path or "").is_dir()


def test_unusable_dir_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"^metrics_dir: cannot create .*file/sub"):
        MultiprocessMetrics(str(tmp_path / "file" / "sub")).prepare()
    with pytest.raises(ConfigError, match=r"^metrics_dir: .*file is not a directory"):
        MultiprocessMetrics(str(tmp_path / "file")).prepare()


def test_worker_init_before_prepare_is_an_error() -> None:
    with pytest.raises(JanusError, match="before prepare"):
        MultiprocessMetrics().worker_init()


# -- the HTTP endpoint -------------------------------------------------------------------------
class Probe:
    """health() and readiness() answers a test can flip."""

    def __init__(self) -> None:
        self.healthy = True
        self.not_ready: dict[str, Any] = {}

    def health(self) -> bool:
        return self.healthy

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        ready = not self.not_ready
        return ready, {"ready": ready, "not_ready": self.not_ready}


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def server(probe: Probe) -> Iterator[MetricsServer]:
    registry = CollectorRegistry()
    Counter("served", "Requests served.", registry=registry).inc(3)
    endpoint = MetricsServer(registry=registry, health=probe.health, readiness=probe.readiness)
    endpoint.start()
    yield endpoint
    endpoint.stop()


def get(port: int, path: str, headers: dict[str, str] | None = None,
        timeout: float = 5.0) -> tuple[int, bytes, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read(), err.headers["Content-Type"]


def test_metrics_in_text_and_openmetrics(server: MetricsServer) -> None:
    status, body, content_type = get(server.port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert b"served_total 3.0" in body
    status, body, content_type = get(server.port, "/metrics", {
        "Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert get(server.port, "/nothing")[0] == 404


def test_healthz_and_readyz_follow_their_callables(server: MetricsServer, probe: Probe) -> None:
    assert get(server.port, "/healthz")[:2] == (200, b"ok\n")
    probe.healthy = False
    assert get(server.port, "/healthz")[0] == 503
    status, body, content_type = get(server.port, "/readyz")
    assert (status, content_type, json.loads(body)) == (
        200, "application/json", {"ready": True, "not_ready": {}})
    probe.not_ready = {"crunch": {"ready": 1, "desired": 2}}
    status, body, _ = get(server.port, "/readyz")
    assert status == 503 and json.loads(body)["not_ready"] == probe.not_ready


def test_the_store_is_served(store: MultiprocessMetrics, probe: Probe) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(store.collector())
    ctx = multiprocess.get_context("fork")
    endpoint = MetricsServer(registry=registry, health=probe.health, readiness=probe.readiness)
    endpoint.start()
    try:
        with processes() as started:
            p = ctx.Process(target=worker, args=(store, 4, False))
            p.start()
            started.append(p)
            p.join()
            store.process_dead(p.pid)
        assert b"janus_trap_jobs_total 4.0" in get(endpoint.port, "/metrics")[1]
    finally:
        endpoint.stop()


def trickle(socks: list[socket.socket], stop: threading.Event) -> None:
    """Slowloris: a header byte per connection now and then, never the end of the head."""
    while not stop.wait(0.05):  # the attacker's pace
        for s in socks:
            with contextlib.suppress(OSError):
                s.send(b"a")


def test_slowloris_does_not_block_a_scrape(
        server: MetricsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The deadline is far beyond the scrape's timeout: an answer proves the scrape did not
    # wait for slow clients to be cut off (no stopwatch, which a loaded machine would fool).
    monkeypatch.setattr(http_endpoint, "HEAD_DEADLINE", 120.0)
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    stop = threading.Event()
    thread = threading.Thread(target=trickle, args=(socks, stop))
    try:
        for s in socks:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        thread.start()
        assert get(server.port, "/metrics", timeout=30.0)[0] == 200
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        for s in socks:
            s.close()


def test_slowloris_is_cut_off_at_its_deadline(
        server: MetricsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_endpoint, "HEAD_DEADLINE", 1.0)
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    stop = threading.Event()
    thread = threading.Thread(target=trickle, args=(socks, stop))
    try:
        for s in socks:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        thread.start()
        for s in socks:  # each is dropped at its deadline, trickle or not
            s.settimeout(30.0)
            with contextlib.suppress(ConnectionResetError):
                assert s.recv(100) == b""
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        for s in socks:
            s.close()


def test_300_idle_connections_do_not_block_a_scrape(
        server: MetricsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_endpoint, "HEAD_DEADLINE", 120.0)  # answered: it did not wait
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
    try:
        assert get(server.port, "/metrics", timeout=30.0)[0] == 200
    finally:
        for s in idle:
            s.close()


def test_past_the_connection_cap_the_oldest_go(probe: Probe,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_endpoint, "_pending_limit", lambda: 16)
    endpoint = MetricsServer(registry=CollectorRegistry(), health=probe.health,
                             readiness=probe.readiness)
    endpoint.start()
    idle = [socket.create_connection(("127.0.0.1", endpoint.port)) for _ in range(40)]
    try:
        assert get(endpoint.port, "/healthz", timeout=2.0)[0] == 200
        idle[0].settimeout(5.0)
        with contextlib.suppress(ConnectionResetError):
            assert idle[0].recv(1) == b""  # dropped at once to make room, no deadline needed
    finally:
        for s in idle:
            s.close()
        endpoint.stop()


def test_oversized_head_is_cut_off(server: MetricsServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.settimeout(5.0)
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 40_000)
            assert s.recv(100) == b""
    assert get(server.port, "/healthz")[0] == 200


def test_binds_loopback_by_default_and_names_a_busy_port(server: MetricsServer,
                                                         probe: Probe) -> None:
    listening = [c.laddr for c in psutil.Process().net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port]
    assert [addr.ip for addr in listening] == ["127.0.0.1"]
    twin = MetricsServer(port=server.port, registry=CollectorRegistry(), health=probe.health,
                         readiness=probe.readiness)
    with pytest.raises(JanusError, match=f"127.0.0.1:{server.port}: Address already in use"):
        twin.start()


def test_stop_is_idempotent_and_frees_the_port(probe: Probe) -> None:
    endpoint = MetricsServer(registry=CollectorRegistry(), health=probe.health,
                             readiness=probe.readiness)
    endpoint.start()
    port = endpoint.port
    endpoint.stop()
    endpoint.stop()
    again = MetricsServer(port=port, registry=CollectorRegistry(), health=probe.health,
                          readiness=probe.readiness)
    again.start()
    again.stop()
