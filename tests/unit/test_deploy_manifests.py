"""The Kubernetes examples in scripts/deploy hold together: the HPA scales the Deployment of
kubernetes.yaml on a metric janus-mp really exports, for a pool janus.toml really hosts, and
prometheus-adapter's rule serves that metric. (No cluster here: parsed and checked.)"""

from __future__ import annotations

from pathlib import Path

import yaml

from janus_mp.app.config_file import load_config
from janus_mp.pools.metrics import PoolMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "scripts" / "deploy"


def documents(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


class FakePools:
    def snapshot(self):
        return {"render": {"queued": 3, "busy_workers": 1, "outcomes": {"done": 1},
                           "duration_buckets": [(1.0, 1)], "duration_count": 1,
                           "duration_sum": 0.5}}


def test_the_hpa_scales_the_deployment_on_an_exported_pool_metric():
    deployment = next(d for d in documents("kubernetes.yaml") if d["kind"] == "Deployment")
    hpa, adapter = documents("kubernetes-hpa.yaml")
    assert (hpa["apiVersion"], hpa["kind"]) == ("autoscaling/v2", "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == \
        ("apps/v1", "Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]

    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    name = metric["pods"]["metric"]["name"]
    exported = {family.name for family in PoolMetrics(FakePools()).collect()}  # type: ignore[arg-type]
    assert name in exported
    assert metric["pods"]["target"]["type"] == "AverageValue"
    assert float(metric["pods"]["target"]["averageValue"]) > 0

    pool = metric["pods"]["metric"]["selector"]["matchLabels"]["pool"]
    assert pool in {entry.name for entry in load_config(DEPLOY / "janus.toml").pools}

    assert adapter["kind"] == "ConfigMap"
    (rule,) = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    assert rule["seriesQuery"].startswith(f"{name}{{") and rule["name"]["as"] == name
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


def test_prometheus_scrapes_the_port_janus_toml_serves_metrics_on():
    deployment = next(d for d in documents("kubernetes.yaml") if d["kind"] == "Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    config = load_config(DEPLOY / "janus.toml")
    assert int(annotations["prometheus.io/port"]) == config.supervisor.metrics_port
