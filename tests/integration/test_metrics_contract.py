"""prometheus_client's multiprocess contract held against a real supervisor, read by
prometheus_client's own parsers and collectors (and promtool where it is installed): metrics
made before the fork in any registry, what dead workers counted as the stock
``MultiProcessCollector`` reads it, and names that clash."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from tests.harness import ROOT, SupervisorProcess
from tests.support import wait_until

pytestmark = pytest.mark.timeout(120)

OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"}


def scrape(sup: SupervisorProcess, headers: dict[str, str] | None = None) -> str:
    url = f"http://127.0.0.1:{sup.request('port')}/metrics"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def values(page: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an OpenMetrics page, parsed by prometheus_client (raises if it is bad)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parse_openmetrics(page) for s in family.samples}


def app_path(tmp_path: Path) -> dict[str, str]:
    """The environment that makes modules written into ``tmp_path`` importable."""
    return {"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}


def check_with_promtool(page: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        print("promtool is not installed (Debian: apt-get install prometheus): "
              "the page is checked by prometheus_client's parsers only")
        return
    checked = subprocess.run([promtool, "check", "metrics"], input=page, text=True,
                             capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- metrics made before the fork, in any registry --------------------------------------------
#: An app module (importable by name, so that forkserver workers import it too).
MADE_BEFORE_APP = """
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from tests.scenario_lib import started
MINE = CollectorRegistry()
IN_MINE = Counter("made_in_my_registry", "counted in a registry of the app's own",
                  registry=MINE)
NOWHERE = Counter("made_in_no_registry", "counted in no registry", ["kind"], registry=None)
SIZES = Histogram("made_sizes", "observed in no registry", buckets=(1.0, 10.0), registry=None)
LEVEL = Gauge("made_level", "set in no registry", multiprocess_mode="livesum", registry=None)
IN_MINE.inc(100)  # the supervisor's own counts: in its memory, never exported
NOWHERE.labels("early").inc(100)

def work(ctx):
    IN_MINE.inc(2)
    NOWHERE.labels("early").inc(3)
    NOWHERE.labels("late").inc(1)
    SIZES.observe(5.0)
    LEVEL.set(1)
    started(ctx)
    ctx.shutdown.wait()
"""

MADE_BEFORE = """
from janus_mp import *
from made_before_app import work
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=1.0, metrics_port=0,
                          start_method=START_METHOD)

def build(sup):
    sup.spawn_service(work, SpawnOptions(workers=2))
"""


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_metrics_made_before_the_fork_in_any_registry_reach_metrics(tmp_path, method):
    (tmp_path / "made_before_app.py").write_text(MADE_BEFORE_APP)
    scenario = MADE_BEFORE.replace("START_METHOD", repr(method))
    with SupervisorProcess(tmp_path, scenario, env=app_path(tmp_path)) as sup:
        wait_until(lambda: 'made_level 2.0' in scrape(sup), timeout=30,
                   message="both workers' gauges on /metrics")
        got = values(scrape(sup, OPENMETRICS))
        assert got[("made_in_my_registry_total", ())] == 4.0
        assert got[("made_in_no_registry_total", (("kind", "early"),))] == 6.0
        assert got[("made_in_no_registry_total", (("kind", "late"),))] == 2.0
        assert got[("made_sizes_count", ())] == 2.0
        assert got[("made_sizes_bucket", (("le", "10.0"),))] == 2.0
        assert got[("made_level", ())] == 2.0
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


# -- what dead workers counted, read by the stock collector ------------------------------------
#: ``crashy`` counts one job and dies, over and over; ``web`` serves the multiprocess
#: directory the way django-prometheus or prometheus-flask-exporter do under gunicorn: the
#: stock MultiProcessCollector in a registry of its own, on an HTTP port of its own.
STOCK_READER = """
from prometheus_client import Counter, Histogram
from janus_mp import *
from tests.scenario_lib import record
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=1.0, metrics_port=0,
                          metrics_dir=METRICS_DIR)
JOBS = Counter("stock_jobs", "jobs done", ["kind"])
SECONDS = Histogram("stock_job_seconds", "job time", buckets=(1.0, 5.0))

def crashy(ctx):
    JOBS.labels("a").inc()
    SECONDS.observe(2.0)
    record("ran", ctx.index)
    raise SystemExit(1)

def web(ctx):
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    record("port", server.server_port)
    ctx.shutdown.wait()
    server.shutdown()

def build(sup):
    sup.spawn_service(web, SpawnOptions(workers=1))
    sup.spawn_service(crashy, SpawnOptions(workers=2, backoff=BackoffConfig(
        initial_delay=0.0, max_delay=0.0, max_retries=0, clean_restart_delay=0.0)))
"""

DEATHS = 300


def page_values(page: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parse_text(page) for s in family.samples}


def test_the_stock_collector_of_an_app_keeps_every_dead_workers_counts(tmp_path):
    metrics_dir = tmp_path / "prom"
    scenario = STOCK_READER.replace("METRICS_DIR", repr(str(metrics_dir)))
    with SupervisorProcess(tmp_path, scenario) as sup:
        port = wait_until(lambda: next((int(e[1]) for e in sup.events_list()
                                        if e[0] == "port"), None), timeout=30,
                          message="the app's own /metrics port")
        app_url = f"http://127.0.0.1:{port}/metrics"
        failed = scraped = 0

        def runs() -> int:
            nonlocal failed, scraped
            try:  # the app's endpoint, scraped during the storm of deaths
                urllib.request.urlopen(app_url, timeout=10).read()
            except urllib.error.HTTPError as exc:
                if not failed:
                    print("first failed app scrape:", exc.read().decode()[-600:])
                failed += 1
            scraped += 1
            return sum(1 for e in sup.events_list() if e[0] == "ran")

        wait_until(lambda: runs() >= DEATHS, timeout=90, message=f"{DEATHS} worker deaths")
        sup.request("stop", service="crashy")
        wait_until(lambda: sup.service("crashy")["phase"] == "terminated", timeout=30,
                   message="crashy stopped")
        print(f"app scrapes during the deaths: {scraped}, failed: {failed}")
        ran = runs()
        ours = values(scrape(sup, OPENMETRICS))
        stock = page_values(urllib.request.urlopen(app_url, timeout=10).read().decode())
        total = ours[("stock_jobs_total", (("kind", "a"),))]
        assert total >= ran >= DEATHS
        # The stock collector, in the app, reads what janus-mp's /metrics reads: every count
        # of every worker that ever lived, though none of them lives now.
        assert stock[("stock_jobs_total", (("kind", "a"),))] == total
        assert stock[("stock_job_seconds_count", ())] == total
        assert stock[("stock_job_seconds_bucket", (("le", "1.0"),))] == 0.0
        assert stock[("stock_job_seconds_bucket", (("le", "5.0"),))] == total
        assert stock[("stock_job_seconds_sum", ())] == 2.0 * total
        # ...from a handful of files with data, not one per dead worker, once the last deaths
        # are folded (a moment after them; the emptied files go in batches, see stock_files).
        def with_data() -> list[str]:
            found = []
            for path in metrics_dir.glob("*.db"):
                with contextlib.suppress(FileNotFoundError):  # emptied and removed meanwhile
                    if path.stat().st_size > 8:
                        found.append(path.name)
            return found

        wait_until(lambda: len(with_data()) <= 4, timeout=10,
                   message="at most 4 metrics files with data")
        files = list(metrics_dir.glob("*.db"))
        print(f"files in the directory: {len(files)}")
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
        assert not list(metrics_dir.glob("*.db"))  # removed on exit


# -- names that clash -----------------------------------------------------------------------
CLASHES = """
from prometheus_client import Counter, Gauge
from janus_mp import *
from tests.scenario_lib import started
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=1.0, metrics_port=0)

def alpha(ctx):
    # janus-mp's own name, with janus-mp's own label: a page with it twice is rejected whole
    Counter("janus_supervisor_restarts", "a worker's own restarts", ["service"],
            registry=None).labels(ctx.service).inc(1000)
    Counter("twice_typed", "a counter here", registry=None).inc(5)
    Gauge("twice_moded", "livesum here", multiprocess_mode="livesum", registry=None).set(1)
    Counter("fine_total", "no clash", registry=None).inc()
    started(ctx)
    ctx.shutdown.wait()

def beta(ctx):
    Gauge("twice_typed", "a gauge there", multiprocess_mode="max", registry=None).set(7)
    Gauge("twice_moded", "max there", multiprocess_mode="max", registry=None).set(9)
    Counter("fine_total", "no clash", registry=None).inc()
    started(ctx)
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(alpha, SpawnOptions(workers=1))
    sup.spawn_service(beta, SpawnOptions(workers=1))
"""


def test_clashing_names_leave_a_page_every_parser_accepts_and_one_log_line_each(tmp_path):
    with SupervisorProcess(tmp_path, CLASHES) as sup:
        wait_until(lambda: "fine_total 2.0" in scrape(sup), timeout=30,
                   message="both services' metrics on /metrics")
        for _ in range(3):  # several scrapes: still one log line per clash
            page = scrape(sup, OPENMETRICS)
            got = values(page)  # prometheus_client's OpenMetrics parser raises on a bad page
            text_page = scrape(sup)
            list(parse_text(text_page))
            check_with_promtool(text_page)
        # janus-mp's own family is the one shown, once, with its own value.
        assert page.count("# TYPE janus_supervisor_restarts ") == 1
        assert got[("janus_supervisor_restarts_total", (("service", "alpha"),))] == 0.0
        # The first type and mode seen keep the name; which one depends on which worker
        # wrote first, so accept either, but only one of each.
        typed = {name for name, _ in got if name.startswith("twice_typed")}
        assert typed in ({"twice_typed_total"}, {"twice_typed"}), typed
        assert got.get(("twice_moded", ())) in (1.0, 9.0)
        assert got[("fine_total", ())] == 2.0
        log = sup.log_text()
        assert len(re.findall(r"workers' metric janus_supervisor_restarts is not exported: "
                              r"janus-mp exports .*janus_supervisor_restarts", log)) == 1, log
        assert len(re.findall(r"workers' metric twice_typed is used as a (counter|gauge \(max "
                              r"mode\)) and as a (counter|gauge \(max mode\))", log)) == 1, log
        assert len(re.findall(r"workers' metric twice_moded is used as a gauge \((livesum|max) "
                              r"mode\) and as a gauge \((livesum|max) mode\)", log)) == 1, log
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
