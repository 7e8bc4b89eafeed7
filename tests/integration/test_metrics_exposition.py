"""The /metrics page of a real supervisor read by real parsers: prometheus_client's OpenMetrics
and text parsers, and promtool when it is installed."""

from __future__ import annotations

import shutil
import signal
import subprocess
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from tests.harness import SupervisorProcess
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)

OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"}

# Two services publish the same histogram and summary with different label sets, and the
# supervisor's own uptime histogram gets a label set per service: the grouping must hold.
SCENARIO = """
from prometheus_client import Histogram, Summary
from janus_mp import *
from tests.scenario_lib import started
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=1.0, metrics_port=0)
BATCH = Histogram("batch_seconds", "time per batch", ["service"], buckets=(0.1, 1.0))
SIZE = Summary("batch_size", "items per batch", ["service"])

def alpha(ctx):
    started(ctx)
    for value in (0.05, 0.5, 2.0):
        BATCH.labels(ctx.service).observe(value)
        SIZE.labels(ctx.service).observe(3)
    ctx.shutdown.wait()

def beta(ctx):
    started(ctx)
    BATCH.labels(ctx.service).observe(0.5)
    SIZE.labels(ctx.service).observe(4)
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(alpha, SpawnOptions(workers=2))
    sup.spawn_service(beta, SpawnOptions(workers=1))
"""


def _scrape(sup: SupervisorProcess, headers: dict[str, str] | None = None) -> str:
    url = f"http://127.0.0.1:{sup.request('port')}/metrics"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def _both_services_published(sup: SupervisorProcess) -> bool:
    page = _scrape(sup)
    return ('batch_seconds_count{service="alpha"} 6.0' in page
            and 'batch_seconds_count{service="beta"} 1.0' in page)


def test_histograms_with_two_label_sets_parse_in_both_formats(tmp_path):
    with SupervisorProcess(tmp_path, SCENARIO) as sup:
        wait_until(lambda: _both_services_published(sup), timeout=20,
                   message="both services' observations on /metrics")
        page = _scrape(sup, OPENMETRICS)
        families = {f.name: f for f in parse_openmetrics(page)}  # raises on a bad grouping
        batch = families["batch_seconds"]
        by_service: dict[str, dict[str, float]] = {}
        for s in batch.samples:
            key = s.name if "le" not in s.labels else f"{s.name}{{le={s.labels['le']}}}"
            by_service.setdefault(s.labels["service"], {})[key] = s.value
        assert by_service["alpha"]["batch_seconds_count"] == 6.0
        assert by_service["alpha"]["batch_seconds_bucket{le=0.1}"] == 2.0
        assert by_service["alpha"]["batch_seconds_sum"] == pytest.approx(5.1)
        assert by_service["beta"]["batch_seconds_bucket{le=+Inf}"] == 1.0
        assert {s.labels["service"] for s in families["batch_size"].samples} == {"alpha",
                                                                                 "beta"}
        text = {f.name: f for f in parse_text(_scrape(sup))}
        assert {s.labels["service"] for s in text["batch_seconds"].samples} == {"alpha",
                                                                                "beta"}
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0


def test_promtool_accepts_the_page(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    with SupervisorProcess(tmp_path, SCENARIO) as sup:
        wait_until(lambda: _both_services_published(sup), timeout=20,
                   message="both services' observations on /metrics")
        page = _scrape(sup)
        checked = subprocess.run([promtool, "check", "metrics"], input=page, text=True,
                                 capture_output=True, timeout=30)
        # Exit 0 with no output: the page parses and has no lint remarks either.
        assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
