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
from scheduler.nodeagent import cli as agent_cli

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

# The node agent's: its own Node (get, annotate) and the pods bound to it (a field-selected list).
NODE_AGENT_RULES = {("", "nodes", "get"), ("", "nodes", "patch"), ("", "pods", "list")}
DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"


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
    check_node_agent(docs, roles, secrets)


def agent_args(argv: list[str]) -> argparse.Namespace:
    """Container args parsed by the real `gts agent` parser ($(NODE_NAME) as kubelet expands it)."""
    p = argparse.ArgumentParser()
    agent_cli.add_parser(p.add_subparsers())
    return p.parse_args([a.replace("$(NODE_NAME)", "gpu-node-1") for a in argv])


def check_node_agent(docs: list[dict[str, Any]], roles: dict[str, dict[str, Any]],
                     ext_secrets: set[str]) -> None:
    """The node agent DaemonSet: least privilege apart from uid 0, GPU nodes only, same key."""
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    ns = ds["metadata"]["namespace"]
    pod = ds["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"]
    assert any(t["key"] == GPU_RESOURCE and t["operator"] == "Exists"
               for t in pod["tolerations"])
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    # uid 0 because kubelet's directory is root-owned; nothing else a root process could use.
    assert pod["securityContext"]["runAsUser"] == 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    vols = {v["name"]: v for v in pod["volumes"]}
    host_paths = [v["hostPath"]["path"] for v in vols.values() if "hostPath" in v]
    assert host_paths == [DEVICE_PLUGIN_DIR]
    by_name = {c["name"]: c for c in pod["containers"]}
    for c in list(by_name.values()) + pod.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
        assert not sc.get("privileged") and sc.get("runAsUser", 0) == 0
        assert {vm["name"] for vm in c["volumeMounts"]} <= set(vols)
        assert "resources" in c
        env = {e["name"]: e for e in c["env"]}
        assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
        assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
        assert env["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "utility"
    plugin = agent_args(by_name["plugin"]["args"])
    assert plugin.agent_command == "plugin" and plugin.node == "gpu-node-1"
    assert plugin.socket_dir.rstrip("/") == DEVICE_PLUGIN_DIR
    assert plugin.device_list_strategy == "volume-mounts"
    mounts = {vm["mountPath"]: vm for vm in by_name["plugin"]["volumeMounts"]}
    assert vols[mounts[DEVICE_PLUGIN_DIR]["name"]]["hostPath"]["type"] == "Directory"
    key_mount = mounts[str(Path(plugin.signing_key_file).parent)]
    assert key_mount["readOnly"] is True
    # The same Secret (by name, copied into the agent's namespace) as the extender's.
    assert vols[key_mount["name"]]["secret"]["secretName"] in ext_secrets
    if any(d["kind"] == "Secret" for d in docs):
        assert any(d["kind"] == "Secret" and d["metadata"]["namespace"] == ns
                   and d["metadata"]["name"] in ext_secrets for d in docs)
    publish = [agent_args(c["args"]) for c in list(by_name.values())
               + pod.get("initContainers", []) if "publish" in c["args"]]
    assert publish and all(a.node == "gpu-node-1" for a in publish)
    # Its own ServiceAccount, bound to exactly the minimal ClusterRole.
    sa = pod["serviceAccountName"]
    assert ("ServiceAccount", sa, ns) in {(d["kind"], d["metadata"]["name"],
                                           d["metadata"].get("namespace")) for d in docs}
    bound = [b["roleRef"]["name"] for b in docs if b["kind"] == "ClusterRoleBinding"
             and {"kind": "ServiceAccount", "name": sa, "namespace": ns} in b["subjects"]]
    assert len(bound) == 1 and flatten(roles[bound[0]]["rules"]) == NODE_AGENT_RULES
    assert not any(b["kind"] == "RoleBinding" and any(s.get("name") == sa for s in b["subjects"])
                   for b in docs)
    # Pod Security: the agent's namespace must admit it; the extender's stays restricted.
    for d in docs:
        if d["kind"] == "Namespace" and d["metadata"]["name"] == ns:
            assert d["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
        elif d["kind"] == "Namespace":
            assert d["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


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
    # The node agent: behind nodeAgent.enabled, the same minimal ClusterRole as the manifest.
    assert values["nodeAgent"]["enabled"] is True
    text = (CHART / "templates" / "node-agent.yaml").read_text()
    assert text.startswith("{{- if .Values.nodeAgent.enabled }}")
    assert text.rstrip().endswith("{{- end }}")
    role = text.split("kind: ClusterRole\n", 1)[1].split("---", 1)[0]
    rules = yaml.safe_load("rules:" + role.split("rules:", 1)[1])["rules"]
    assert flatten(rules) == NODE_AGENT_RULES
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    sc = helpers.split('define "gts.nodeAgentSecurityContext" -}}', 1)[1].split("{{-", 1)[0]
    assert yaml.safe_load(sc) == {"allowPrivilegeEscalation": False,
                                  "readOnlyRootFilesystem": True,
                                  "capabilities": {"drop": ["ALL"]}}


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
