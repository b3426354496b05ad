"""deploy/: every manifest parses, and the fields that make it work (or secure) are right."""

from __future__ import annotations

import argparse
import inspect
import re
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
from scheduler.extender.config import OPTIONS, ServeConfig, resolve
from scheduler.nodeagent import cli as agent_cli

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "gpu-topology-scheduler"

# The node agent's: its own Node (get, annotate) and the pods bound to it (a field-selected list).
NODE_AGENT_RULES = {("", "nodes", "get"), ("", "nodes", "patch"), ("", "pods", "list")}
DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"
ALL_GPUS_MOUNT = "/var/run/nvidia-container-devices/all"
SIGNING_KEY_DIR = "/etc/gts/signing-keys"
# `gts serve` options from contracts.md (i8a implements them; deploy/ is written to them).
CONTRACT_SERVE_OPTIONS = ("metrics-port", "tls-client-ca", "signing-key-dir", "signing-key-id")


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


def serve_yaml(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The extender's serve.yaml as a mapping."""
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and "serve.yaml" in d["data"])
    doc = yaml.safe_load(cm["data"]["serve.yaml"])
    assert isinstance(doc, dict)
    return doc


def serve_config(docs: list[dict[str, Any]]) -> ServeConfig:
    """The extender's serve.yaml, read and validated exactly as `gts serve --config` does."""
    known = {o.name for o in OPTIONS}
    missing = [o for o in CONTRACT_SERVE_OPTIONS if o not in known]
    if missing:
        pytest.skip(f"gts serve on this branch lacks the contract options {missing} "
                    "(contracts.md, issue 8: implemented by i8a); serve.yaml is checked "
                    "against the contract by the other deploy tests")
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and "serve.yaml" in d["data"])
    p = argparse.ArgumentParser()
    cli.add_parser(p.add_subparsers())
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "serve.yaml"
        f.write_text(cm["data"]["serve.yaml"])
        return resolve(p.parse_args(["serve", "--config", str(f)]))


def check(docs: list[dict[str, Any]], *, node_agent: bool = True,
          own_node_policy: bool = True) -> None:
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
    cfg = serve_yaml(docs)
    assert int(m[1]) > cfg["gang-timeout"] + cfg["gang-bind-grace"] + 5
    assert cfg["assume-ttl"] > cfg["gang-timeout"] + cfg["gang-bind-grace"]
    assert cfg["signing-key-dir"] == SIGNING_KEY_DIR and cfg["signing-key-id"]
    assert "signing-key-file" not in cfg and "cluster" not in cfg
    assert cfg["metrics-port"] != cfg["port"] and cfg["metrics-port"] > 0
    assert ext["urlPrefix"].endswith(f":{cfg['port']}")
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 2
    ext_dep = next(d for d in deployments
                   if "serve" in d["spec"]["template"]["spec"]["containers"][0].get("args", []))
    sched_dep = next(d for d in deployments if d is not ext_dep)
    ext_pod = ext_dep["spec"]["template"]["spec"]
    sched_pod = sched_dep["spec"]["template"]["spec"]
    ext_mounts = mount_files(ext_pod)
    sched_mounts = mount_files(sched_pod)
    if ext["enableHTTPS"]:
        # Mutual TLS: kube-scheduler verifies the server and presents a client certificate;
        # the extender requires one chaining to its tls-client-ca.
        tls = ext["tlsConfig"]
        assert ext["urlPrefix"].startswith("https://")
        assert {"caFile", "certFile", "keyFile"} <= set(tls)
        for f in (tls["caFile"], tls["certFile"], tls["keyFile"]):
            assert f in sched_mounts, f
        for f in (cfg["tls-cert"], cfg["tls-key"], cfg["tls-client-ca"]):
            assert f in ext_mounts, f
        # The client certificate is not the extender's serving one.
        assert sched_mounts[tls["certFile"]] != ext_mounts[cfg["tls-cert"]]
    else:
        assert ext["urlPrefix"].startswith("http://")
        assert "tls-cert" not in cfg and "tls-client-ca" not in cfg
    # RBAC: the extender's role is exactly what the code uses (test_deploy_rbac.py), and
    # nothing anywhere is a wildcard.
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("ClusterRole", "Role")}
    ext_role = next(r for n, r in roles.items() if n.endswith("extender"))
    assert ("", "nodes", "get") not in flatten(ext_role["rules"])
    assert ("", "pods", "get") not in flatten(ext_role["rules"])
    for r in roles.values():
        for rule in r["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
    bindings = [d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert {b["roleRef"]["name"] for b in bindings} >= {"system:kube-scheduler",
                                                         "system:volume-scheduler"}
    # Workloads: non-root, read-only root, no privilege escalation, every volume defined.
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
    # The signing keys: a Secret mounted whole as a directory (one file per key id).
    (key_vol,) = [v for v in ext_pod["volumes"]
                  if v["name"] == mount_by_path(ext_pod)[SIGNING_KEY_DIR]["name"]]
    assert "items" not in key_vol["secret"]
    ext_secrets = {v["secret"]["secretName"] for v in ext_pod["volumes"] if "secret" in v}
    # Probes and Prometheus use the plain metrics port; the extender port needs a client cert.
    ports = {p["name"]: p["containerPort"] for p in ext_pod["containers"][0]["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = ext_pod["containers"][0][probe]["httpGet"]
        assert get["scheme"] == "HTTP" and ports.get(get["port"], get["port"]) == \
            cfg["metrics-port"]
    assert ext_pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ann = ext_dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/port"] == str(cfg["metrics-port"])
    assert ann["prometheus.io/scheme"] == "http"
    cmd = sched_pod["containers"][0]["command"]
    assert cmd[0] == "kube-scheduler" and any(a.startswith("--config=") for a in cmd)
    assert ("Service", ext_dep["metadata"]["name"]) in kinds
    check_network_policy(docs, ext_dep, sched_dep, cfg)
    if node_agent:
        check_node_agent(docs, roles, ext_secrets, own_node_policy)
    else:
        assert not [d for d in docs if d["kind"] in ("DaemonSet", "ValidatingAdmissionPolicy")]


def mount_by_path(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mountPath -> volumeMount over the pod's containers."""
    return {vm["mountPath"]: vm for c in pod["containers"] for vm in c.get("volumeMounts", [])}


def mount_files(pod: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Every file a pod sees from a Secret volume: path -> (Secret name, key)."""
    vols = {v["name"]: v for v in pod["volumes"]}
    out = {}
    for path, vm in mount_by_path(pod).items():
        sec = vols[vm["name"]].get("secret")
        if sec is None:
            continue
        for item in sec.get("items", []):
            out[f"{path}/{item['path']}"] = (sec["secretName"], item["key"])
    return out


def check_network_policy(docs: list[dict[str, Any]], ext_dep: dict[str, Any],
                         sched_dep: dict[str, Any], cfg: dict[str, Any]) -> None:
    """If present: the extender port admits only kube-scheduler, metrics only Prometheus."""
    pols = [d for d in docs if d["kind"] == "NetworkPolicy"]
    if not pols:
        return
    (pol,) = pols
    spec = pol["spec"]
    ext_labels = ext_dep["spec"]["template"]["metadata"]["labels"]
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["podSelector"]["matchLabels"].items() <= ext_labels.items()
    by_port = {r["ports"][0]["port"]: r for r in spec["ingress"]}
    assert set(by_port) == {cfg["port"], cfg["metrics-port"]}
    assert all(len(r["ports"]) == 1 for r in spec["ingress"])
    (sched_peer,) = by_port[cfg["port"]]["from"]
    sched_labels = sched_dep["spec"]["template"]["metadata"]["labels"]
    assert set(sched_peer) == {"podSelector"}
    assert sched_peer["podSelector"]["matchLabels"].items() <= sched_labels.items()
    peers = by_port[cfg["metrics-port"]]["from"]
    assert any("namespaceSelector" in p and "podSelector" in p for p in peers)
    assert all(p.get("podSelector", {}).get("matchLabels") or p.get("namespaceSelector")
               for p in peers)  # never an empty selector (= everyone)


def agent_args(argv: list[str]) -> argparse.Namespace:
    """Container args parsed by the real `gts agent` parser ($(NODE_NAME) as kubelet expands it)."""
    p = argparse.ArgumentParser()
    agent_cli.add_parser(p.add_subparsers())
    return p.parse_args([a.replace("$(NODE_NAME)", "gpu-node-1") for a in argv])


def flag(argv: list[str], name: str) -> str | None:
    """The value of --name=VALUE in a container's args."""
    vals = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    assert len(vals) <= 1, argv
    return vals[0] if vals else None


def check_node_agent(docs: list[dict[str, Any]], roles: dict[str, dict[str, Any]],
                     ext_secrets: set[str], own_node_policy: bool = True) -> None:
    """The node agent DaemonSet: least privilege apart from uid 0, GPU nodes only, same keys."""
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    ns = ds["metadata"]["namespace"]
    pod = ds["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"]
    assert any(t["key"] == GPU_RESOURCE and t["operator"] == "Exists"
               for t in pod["tolerations"])
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert "runAsUser" not in pod["securityContext"]  # per container: only the plugin is root
    vols = {v["name"]: v for v in pod["volumes"]}
    host_paths = {v["hostPath"]["path"]: v["hostPath"]["type"]
                  for v in vols.values() if "hostPath" in v}
    by_name = {c["name"]: c for c in pod["containers"]}
    plugin, publish = by_name["plugin"], by_name["publish"]
    toolkit_cfg = flag(plugin["args"], "toolkit-config")
    assert toolkit_cfg
    plugin_mounts = {vm["mountPath"]: vm for vm in plugin["volumeMounts"]}
    toolkit_vol = vols[plugin_mounts[str(Path(toolkit_cfg).parent)]["name"]]
    # kubelet's socket directory, the toolkit's config (read-only), /dev/null as the agent's
    # own request for every GPU: nothing else of the host.
    assert host_paths == {DEVICE_PLUGIN_DIR: "Directory", "/dev/null": "CharDevice",
                          toolkit_vol["hostPath"]["path"]: "DirectoryOrCreate"}
    assert plugin_mounts[str(Path(toolkit_cfg).parent)]["readOnly"] is True
    for c in list(by_name.values()) + pod.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
        assert not sc.get("privileged")
        mounts = {vm["mountPath"]: vm for vm in c["volumeMounts"]}
        assert {vm["name"] for vm in c["volumeMounts"]} <= set(vols)
        assert vols[mounts[ALL_GPUS_MOUNT]["name"]]["hostPath"]["path"] == "/dev/null"
        assert "resources" in c
        env = {e["name"]: e for e in c["env"]}
        assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
        assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
        assert env["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "utility"
    # uid 0 only where kubelet's root-owned directory needs it; publish runs as non-root.
    assert plugin["securityContext"]["runAsUser"] == 0
    assert publish["securityContext"]["runAsNonRoot"] is True
    assert publish["securityContext"]["runAsUser"] != 0
    assert {vm["mountPath"] for vm in publish["volumeMounts"]} == {ALL_GPUS_MOUNT, "/tmp"}
    assert flag(plugin["args"], "socket-dir") == DEVICE_PLUGIN_DIR
    assert flag(plugin["args"], "device-list-strategy") == "volume-mounts"
    assert flag(plugin["args"], "node") == "$(NODE_NAME)"
    assert flag(publish["args"], "node") == "$(NODE_NAME)"
    assert vols[plugin_mounts[DEVICE_PLUGIN_DIR]["name"]]["hostPath"]["type"] == "Directory"
    assert flag(plugin["args"], "signing-key-dir") == SIGNING_KEY_DIR
    key_mount = plugin_mounts[SIGNING_KEY_DIR]
    assert key_mount["readOnly"] is True
    # The same Secret (by name, copied into the agent's namespace) as the extender's, whole.
    assert vols[key_mount["name"]]["secret"]["secretName"] in ext_secrets
    assert "items" not in vols[key_mount["name"]]["secret"]
    if any(d["kind"] == "Secret" for d in docs):
        assert any(d["kind"] == "Secret" and d["metadata"]["namespace"] == ns
                   and d["metadata"]["name"] in ext_secrets for d in docs)
    # Its own ServiceAccount, bound to exactly the minimal ClusterRole.
    sa = pod["serviceAccountName"]
    assert ("ServiceAccount", sa, ns) in {(d["kind"], d["metadata"]["name"],
                                           d["metadata"].get("namespace")) for d in docs}
    bound = [b["roleRef"]["name"] for b in docs if b["kind"] == "ClusterRoleBinding"
             and {"kind": "ServiceAccount", "name": sa, "namespace": ns} in b["subjects"]]
    assert len(bound) == 1 and flatten(roles[bound[0]]["rules"]) == NODE_AGENT_RULES
    assert not any(b["kind"] == "RoleBinding" and any(s.get("name") == sa for s in b["subjects"])
                   for b in docs)
    if own_node_policy:
        check_own_node_policy(docs, f"system:serviceaccount:{ns}:{sa}")
    else:
        assert not any(d["kind"] == "ValidatingAdmissionPolicy" for d in docs)
    # Pod Security: the agent's namespace must admit it; the extender's stays restricted.
    for d in docs:
        if d["kind"] == "Namespace" and d["metadata"]["name"] == ns:
            assert d["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
        elif d["kind"] == "Namespace":
            assert d["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def check_own_node_policy(docs: list[dict[str, Any]], username: str) -> None:
    """A ValidatingAdmissionPolicy (Deny) keeps the agent's identity to its own Node."""
    (vap,) = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]
    (binding,) = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert binding["spec"]["policyName"] == vap["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    spec = vap["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"]) == ([""], ["nodes"])
    assert "UPDATE" in rule["operations"]  # a PATCH is admitted as an UPDATE
    (cond,) = spec["matchConditions"]
    assert f'"{username}"' in cond["expression"]
    variables = {v["name"]: v["expression"] for v in spec["variables"]}
    assert "request.userInfo.extra[?'authentication.kubernetes.io/node-name']" in \
        variables["userNodeName"]
    exprs = [v["expression"] for v in spec["validations"]]
    assert "object.metadata.name == variables.userNodeName" in exprs
    assert 'variables.userNodeName != ""' in exprs


def test_manifests_parse_and_are_right() -> None:
    docs = manifests()
    check(docs)
    # No key or certificate is shipped: empty placeholders the extender refuses to start with.
    for s in (d for d in docs if d["kind"] == "Secret"):
        assert set(s["stringData"].values()) == {""}, s["metadata"]["name"]


def test_serve_yaml_is_accepted_by_gts_serve() -> None:
    """The shipped serve.yaml passes `gts serve`'s own option parsing and checks."""
    cfg = serve_config(manifests())
    assert cfg.metrics_port == 9090 and cfg.port == 8888
    assert cfg.tls_client_ca and cfg.tls_cert and not cfg.static


def test_node_agent_args_are_accepted_by_gts_agent() -> None:
    """The DaemonSet's args parse with the real `gts agent` parser."""
    (ds,) = [d for d in manifests() if d["kind"] == "DaemonSet"]
    by_name = {c["name"]: c for c in ds["spec"]["template"]["spec"]["containers"]}
    p = argparse.ArgumentParser()
    agent_cli.add_parser(p.add_subparsers())
    if "--signing-key-dir" not in inspect.getsource(agent_cli):
        pytest.skip("gts agent plugin on this branch lacks --signing-key-dir (contracts.md, "
                    "issue 8: implemented by i8a)")
    plugin = agent_args(by_name["plugin"]["args"])
    assert plugin.agent_command == "plugin" and plugin.node == "gpu-node-1"
    assert plugin.socket_dir.rstrip("/") == DEVICE_PLUGIN_DIR
    assert plugin.device_list_strategy == "volume-mounts"
    assert plugin.toolkit_config
    publish = agent_args(by_name["publish"]["args"])
    assert publish.agent_command == "publish" and publish.node == "gpu-node-1"
