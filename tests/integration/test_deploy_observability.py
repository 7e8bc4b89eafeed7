"""The Grafana dashboard and the Prometheus alert rules in scripts/deploy/: the rules pass
``promtool check rules`` (where promtool is installed), and every metric name either uses —
parsed with a PromQL parser — is one a live ``janus-mp run`` exports on /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families as parse_text

from janus_mp.metrics.registry import exposed_names
from tests.harness import ROOT
from tests.integration.test_cli import Cli
from tests.support import wait_until

pytestmark = pytest.mark.timeout(120)

DEPLOY = ROOT / "scripts" / "deploy"
RULES = DEPLOY / "prometheus-alerts.yml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"

#: Pool metrics the dashboard and rules use: a hosted task pool exports them.
POOL_METRICS = frozenset({
    "janus_pool_tasks_total",
    "janus_pool_queue_depth",
    "janus_pool_task_duration_seconds_bucket",
    "janus_pool_busy_workers",
})

#: Grafana's own variables, replaced by what Grafana would put there before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$instance": ".*",
                     "$service": ".*"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (raises on one that does not parse)."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"]
             for target in panel.get("targets", ())]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        # Grafana's label_values(SELECTOR, LABEL): the selector is PromQL.
        found = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["query"]["query"])
        assert found, variable
        exprs.append(found.group(1))
    return exprs


def used_names() -> set[str]:
    exprs = rule_expressions() + dashboard_expressions()
    assert len(exprs) > 10
    return set().union(*(metric_names(e) for e in exprs))


def exported_names(tmp_path: Path) -> set[str]:
    """Every name a live `janus-mp run` puts on /metrics, families without samples too."""
    cli = Cli(tmp_path)
    try:
        config = tmp_path / "janus.toml"
        config.write_text('[services.helper]\ntarget = "svcmod:helper"\n'
                          '[pools.render]\nworkers = 1\n')
        cli.start("-c", str(config), "--metrics-bind", "127.0.0.1:0")
        port = wait_until(lambda: re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics",
                                            cli.log.read_text()), timeout=20)
        url = f"http://127.0.0.1:{port.group(1)}/metrics"
        wait_until(lambda: cli.service("helper")["ready"] == 1, timeout=20)
        with urllib.request.urlopen(url, timeout=10) as response:
            page = response.read().decode()
    finally:
        cli.close()
    return set().union(*(exposed_names(family) for family in parse_text(page)))


def test_promtool_accepts_the_alert_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout


def test_the_rules_alert_on_what_operators_need():
    alerts = {rule["alert"]: rule for group in yaml.safe_load(RULES.read_text())["groups"]
              for rule in group["rules"]}
    needs = {"JanusCircuitBreakerOpen": "janus_supervisor_workers",
             "JanusRestartRateHigh": "janus_supervisor_restarts_total",
             "JanusWorkersNotReady": "janus_supervisor_workers",
             "JanusPoolQueueBacklog": "janus_pool_queue_depth",
             "JanusOutputLinesDropped": "janus_supervisor_log_lines_dropped_total",
             "JanusLogRecordsDropped": "janus_supervisor_log_records_dropped_total"}
    assert {name: next(iter(metric_names(alerts[name]["expr"]))) for name in needs} == needs
    assert all(rule["annotations"]["summary"] for rule in alerts.values())


def test_every_metric_the_dashboard_and_rules_use_is_exported(tmp_path):
    used = used_names()
    assert {name for name in used if name.startswith("janus_pool_")} == POOL_METRICS
    exported = exported_names(tmp_path)
    missing = used - exported
    assert not missing, f"used by the dashboard or rules, not on /metrics: {sorted(missing)}"
