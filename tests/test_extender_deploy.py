"""deploy/: every manifest parses, and the fields that make it work (or secure) are right."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler.constants import (
    GPU_MEMORY_RESOURCE,
    GPU_MILLI_RESOURCE,
    GPU_RESOURCE,
    SCHEDULER_NAME,
)
from scheduler.extender import cli
from scheduler.extender.config import ServeConfig, resolve

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "gpu-topology-scheduler"

# The extender's whole permission set: (apiGroup, resource, verb).
EXTENDER_RULES = {
    ("", "nodes", "get"), ("", "nodes", "list"), ("", "nodes", "watch"),
    ("", "pods", "get"), ("", "pods", "list"), ("", "pods", "watch"), ("", "pods", "patch"),
    ("", "pods/binding", "create"),
    ("scheduling.x-k8s.io", "podgroups", "get"),
    ("", "events", "create"), ("events.k8s.io", "events", "create"),
}


def manifests() -> list[dict[str, Any]]:
    docs = []
    for f in sorted((DEPLOY / "manifests").glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d is not None:
                assert isinstance(d, dict) and d.get("apiVersion") and d.get("kind"), f
                docs.append(d)
    return docs


def flatten(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    out = set()
    for r in rules:
        assert "resourceNames" not in r or r["resourceNames"]
        for g in r["apiGroups"]:
            for res in r["resources"]:
                for v in r["verbs"]:
                    out.add((g, res, v))
    return out


def serve_config(docs: list[dict[str, Any]]) -> ServeConfig:
    """The extender's serve.yaml, read and validated exactly as `gts serve --config` does."""
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and "serve.yaml" in d["data"])
    p = argparse.ArgumentParser()
    cli.add_parser(p.add_subparsers())
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "serve.yaml"
        f.write_text(cm["data"]["serve.yaml"])
        return resolve(p.parse_args(["serve", "--config", str(f)]))


def check(docs: list[dict[str, Any]]) -> None:
    """The checks every rendering of deploy/ must pass (manifests and Helm alike)."""
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    cms = [d for d in docs if d["kind"] == "ConfigMap"]
    sched_cm = next(d for d in cms if "scheduler-config.yaml" in d["data"])
    ksc = yaml.safe_load(sched_cm["data"]["scheduler-config.yaml"])
    assert ksc["kind"] == "KubeSchedulerConfiguration"
    assert ksc["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert [p["schedulerName"] for p in ksc["profiles"]] == [SCHEDULER_NAME]
    assert ksc["percentageOfNodesToScore"] == 100
    (ext,) = ksc["extenders"]
    assert (ext["filterVerb"], ext["prioritizeVerb"], ext["bindVerb"]) == \
        ("filter", "prioritize", "bind")
    assert "preemptVerb" not in ext  # not implemented: never registered
    assert ext["nodeCacheCapable"] is True and ext["ignorable"] is False
    assert 1 <= ext["weight"] <= 100
    managed = {m["name"]: m["ignoredByScheduler"] for m in ext["managedResources"]}
    assert managed == {GPU_RESOURCE: False, GPU_MILLI_RESOURCE: True, GPU_MEMORY_RESOURCE: True}
    m = re.fullmatch(r"(\d+)s", ext["httpTimeout"])
    assert m, ext["httpTimeout"]
    cfg = serve_config(docs)
    assert int(m[1]) > cfg.min_http_timeout > cfg.gang_timeout
    assert cfg.signing_key_file and not cfg.static
    if ext["enableHTTPS"]:
        assert ext["urlPrefix"].startswith("https://") and ext["tlsConfig"]["caFile"]
        assert cfg.tls_cert and cfg.tls_key
    assert ext["urlPrefix"].endswith(f":{cfg.port}")
    # RBAC: the extender's role is exactly the minimal set, and nothing anywhere is a wildcard.
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("ClusterRole", "Role")}
    ext_role = next(r for n, r in roles.items() if n.endswith("extender"))
    assert flatten(ext_role["rules"]) == EXTENDER_RULES
    for r in roles.values():
        for rule in r["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
    bindings = [d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert {b["roleRef"]["name"] for b in bindings} >= {"system:kube-scheduler",
                                                         "system:volume-scheduler"}
    # Workloads: non-root, read-only root, no privilege escalation, every volume defined.
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 2
    for dep in deployments:
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        vols = {v["name"] for v in pod["volumes"]}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert {vm["name"] for vm in c["volumeMounts"]} <= vols
            assert "resources" in c
    ext_dep = next(d for d in deployments
                   if "serve" in d["spec"]["template"]["spec"]["containers"][0].get("args", []))
    ext_pod = ext_dep["spec"]["template"]["spec"]
    mounts = {vm["mountPath"] for vm in ext_pod["containers"][0]["volumeMounts"]}
    assert str(Path(cfg.signing_key_file).parent) in mounts
    secrets = {v["secret"]["secretName"] for v in ext_pod["volumes"] if "secret" in v}
    assert any("signing" in s for s in secrets)
    if cfg.tls_cert:
        assert str(Path(cfg.tls_cert).parent) in mounts
    probe = ext_pod["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["path"] == "/readyz" and probe["port"] == cfg.port
    assert probe["scheme"] == ("HTTPS" if cfg.tls_cert else "HTTP")
    sched_dep = next(d for d in deployments if d is not ext_dep)
    cmd = sched_dep["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[0] == "kube-scheduler" and any(a.startswith("--config=") for a in cmd)
    assert ("Service", ext_dep["metadata"]["name"]) in kinds


def test_manifests_parse_and_are_right() -> None:
    docs = manifests()
    check(docs)
    secrets = [d for d in docs if d["kind"] == "Secret"]
    # The signing key is not shipped: an empty placeholder the extender refuses to start with.
    signing = next(s for s in secrets if "signing" in s["metadata"]["name"])
    assert signing["stringData"]["key"] == ""


def test_helm_values_and_rbac_template_match_the_manifests() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "gpu-topology-scheduler"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["schedulerName"] == SCHEDULER_NAME
    e = values["extender"]
    assert e["httpTimeoutSeconds"] > e["gangTimeout"] + e["gangBindGrace"] + 5
    assert e["assumeTTL"] > e["gangTimeout"] + e["gangBindGrace"]
    assert {m["name"]: m["ignoredByScheduler"] for m in values["managedResources"]} == {
        GPU_RESOURCE: False, GPU_MILLI_RESOURCE: True, GPU_MEMORY_RESOURCE: True}
    assert values["containerSecurityContext"]["readOnlyRootFilesystem"] is True
    # The chart's extender ClusterRole (templating only in metadata) is the minimal set too.
    text = (CHART / "templates" / "rbac.yaml").read_text()
    role = text.split("kind: ClusterRole\n", 1)[1].split("---", 1)[0]
    rules = yaml.safe_load("rules:" + role.split("rules:", 1)[1])["rules"]
    assert flatten(rules) == EXTENDER_RULES
    for t in (CHART / "templates").glob("*.yaml"):
        assert t.read_text().count("{{") == t.read_text().count("}}"), t


def test_helm_chart_renders_the_same_objects() -> None:
    helm = shutil.which("helm")
    if helm is None:
        pytest.skip("helm is not installed; the chart's rendering is not checked here")
    out = subprocess.run([helm, "template", "gts", str(CHART), "--namespace", "gts"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    check([d for d in yaml.safe_load_all(out) if d])


def test_dockerfile_runs_gts_as_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER 65532", text, re.M)
    assert 'ENTRYPOINT ["gts"]' in text
