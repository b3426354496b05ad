"""The Grafana dashboard and the Prometheus alerting rules query only metrics the extender
exports: the names are read from the running service's metric registry, not from a list."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_chart import CHART, manifest_docs, render

from scheduler.extender.config import ServeConfig
from scheduler.extender.runtime import static_extender

DASHBOARD = CHART / "files" / "gts-dashboard.json"
ALERTS = CHART / "files" / "gts-alerts.yaml"
CLUSTER = Path(__file__).resolve().parents[1] / "deploy" / "examples" / "cluster.yaml"
_METRIC = re.compile(r"\bgts_[a-z0-9_]+\b")
# What an operator must act on (issue 12).
HELM_REASON = "helm-python-sdk (the dev extra) renders the chart without helm"
REQUIRED_ALERTS = {"GTSExtenderDown", "GTSGangsTimingOut", "GTSCacheNotSynced"}


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every series name `gts serve` exports, from the registry of a real (static) extender."""
    # metrics-port (contracts.md, i8a) off where it exists: only the registry is read here.
    extra: dict[str, Any] = (
        {"metrics_port": 0} if "metrics_port" in ServeConfig.__dataclass_fields__ else {})
    ext = static_extender(ServeConfig(cluster=str(CLUSTER), port=0, **extra))
    try:
        names: set[str] = set()
        for fam in ext.service.metrics.registry.collect():
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                        "summary": ("_sum", "_count")}.get(fam.type, ("",))
            names |= {fam.name + s for s in suffixes}
    finally:
        ext.server.server_close()
    return names


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_registry_is_read(exported: set[str]) -> None:
    assert {"gts_cache_synced", "gts_extender_decisions_total",
            "gts_extender_request_duration_seconds_bucket"} <= exported


def test_dashboard_queries_only_exported_metrics(exported: set[str]) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    for e in exprs:
        used = set(_METRIC.findall(e))
        assert used, f"panel query names no gts metric: {e}"
        assert used <= exported, f"{e}: not exported: {used - exported}"
    # The views: decisions and latency per verb, GPUs per model, gangs, binds, cache.
    text = " ".join(exprs)
    for m in ("gts_extender_decisions_total", "gts_extender_request_duration_seconds_bucket",
              "gts_gpus_allocated", "gts_gpus_free", "gts_fragmentation_gpus",
              "gts_gang_events_total", "gts_cache_synced", "gts_cache_invalid_nodes"):
        assert m in text, m


def test_dashboard_is_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"] and dash["title"]
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}"


def test_alert_rules_query_only_exported_metrics(exported: set[str]) -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    for r in rules:
        used = set(_METRIC.findall(r["expr"]))
        assert used and used <= exported, f"{r['alert']}: not exported: {used - exported}"
        assert r["labels"]["severity"] in ("critical", "warning")
        assert r["annotations"]["summary"] and r["annotations"]["description"]


def test_chart_and_manifests_ship_the_dashboard_for_the_sidecar() -> None:
    pytest.importorskip("helm_python", reason=HELM_REASON)
    for docs in (render(), manifest_docs()):
        (cm,) = [d for d in docs if d["kind"] == "ConfigMap"
                 and d["metadata"]["name"].endswith("grafana-dashboard")]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(cm["data"]["gts-dashboard.json"]) == json.loads(DASHBOARD.read_text())


def test_chart_wraps_the_rules_in_a_prometheus_rule() -> None:
    pytest.importorskip("helm_python", reason=HELM_REASON)
    docs = render({"monitoring": {"prometheusRule": {"enabled": True,
                                                     "labels": {"release": "prom"}}}})
    (pr,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert pr["metadata"]["labels"]["release"] == "prom"
    assert pr["spec"] == yaml.safe_load(ALERTS.read_text())
    assert not [d for d in render() if d["kind"] == "PrometheusRule"]  # off by default: a CRD
