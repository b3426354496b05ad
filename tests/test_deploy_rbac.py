"""RBAC is what the code calls: the extender's and the node agent's roles are derived from the
Kubernetes client calls in their code, so a grant nobody uses (or a call nobody granted) fails."""

from __future__ import annotations

import re
from pathlib import Path

from deploy_chart import manifest_docs
from test_extender_deploy import NODE_AGENT_RULES, flatten

ROOT = Path(__file__).resolve().parents[1]
Rule = tuple[str, str, str]

# kubernetes-client method -> the (apiGroup, resource, verb) it needs. A list_* call in a file
# that opens a watch with it (watch=True, or the client's Watch.stream) also needs watch.
CALLS: dict[str, set[Rule]] = {
    "list_node": {("", "nodes", "list")},
    "read_node": {("", "nodes", "get")},
    "patch_node": {("", "nodes", "patch")},
    "list_pod_for_all_namespaces": {("", "pods", "list")},
    "list_namespaced_pod": {("", "pods", "list")},
    "read_namespaced_pod": {("", "pods", "get")},
    "patch_namespaced_pod": {("", "pods", "patch")},
    "create_namespaced_pod_binding": {("", "pods/binding", "create")},
    "create_namespaced_event": {("", "events", "create")},
    "patch_namespaced_event": {("", "events", "patch")},
    "get_namespaced_custom_object": {("scheduling.x-k8s.io", "podgroups", "get")},
    "list_namespaced_custom_object": {("scheduling.x-k8s.io", "podgroups", "list")},
    "list_cluster_custom_object": {("scheduling.x-k8s.io", "podgroups", "list")},
}
# Granted ahead of the code on this branch, by contracts.md ("RBAC needed by the extender"):
# the Kubernetes event sink (events create+patch, i8a). Each leaves this set once its code
# calls it (podgroups list/watch left it with the PodGroup watch, i8b).
CONTRACT_AHEAD: set[Rule] = {
    ("", "events", "create"), ("", "events", "patch"),
}
# A call on a kubernetes client API object (CoreV1Api, CustomObjectsApi) by its usual names.
_CALL = re.compile(r"\b(?:core|core_v1|custom|events_v1|api)\.([a-z]+_[a-z_]+)\(")
_WATCH = re.compile(r"\.stream\(|\bwatch=True\b")
# Requests sent on the client's connection pool without the generated API (kube_binder's
# Binding POST): the resource path they build, and the grant it needs.
RAW_PATHS: dict[re.Pattern[str], Rule] = {
    re.compile(r"/pods/\{[^}]*\}/binding"): ("", "pods/binding", "create"),
}


def used_rules(*dirs: str) -> set[Rule]:
    """Every grant the Kubernetes client calls under `dirs` need."""
    out: set[Rule] = set()
    for d in dirs:
        for f in (ROOT / d).glob("*.py"):
            text = f.read_text()
            for call in _CALL.findall(text):
                assert call in CALLS, f"{f.name} calls {call}: add it to CALLS and the role"
                out |= CALLS[call]
                if _WATCH.search(text) and call.startswith("list_"):
                    out |= {(g, r, "watch") for g, r, _ in CALLS[call]}
            out |= {rule for pat, rule in RAW_PATHS.items() if pat.search(text)}
    return out


def role(name_suffix: str) -> set[Rule]:
    (r,) = [d for d in manifest_docs() if d["kind"] == "ClusterRole"
            and d["metadata"]["name"].endswith(name_suffix)]
    return flatten(r["rules"])


def test_extender_role_is_what_its_code_calls() -> None:
    used = used_rules("scheduler/cluster", "scheduler/extender")
    granted = role("extender")
    assert used <= granted, f"called but not granted: {used - granted}"
    assert granted - used <= CONTRACT_AHEAD, f"granted but never called: {granted - used}"
    assert ("", "nodes", "get") not in granted and ("", "pods", "get") not in granted


def test_node_agent_role_is_what_its_code_calls() -> None:
    used = used_rules("scheduler/nodeagent")
    assert used == NODE_AGENT_RULES == role("node-agent")


def test_call_table_catches_a_new_call() -> None:
    assert _CALL.findall("self.core.read_namespaced_pod(name, ns)") == ["read_namespaced_pod"]
    assert _CALL.findall("return core.list_node(**kw)") == ["list_node"]
    assert _CALL.findall("self.cache.delete_node(name)") == []
