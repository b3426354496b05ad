"""What the end-to-end tests do through the real API server: fake GPU nodes, pods, waiting, and
checking every bound pod's signed assignment with the project's own codec (scheduler.cluster).

Nothing here asks the extender what it thinks: assignments are read back from the pods.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from bench.controlplane import drain
from scheduler.constants import (
    ALLOWED_MODELS_ANNOTATION,
    GANG_MIN_MEMBER_ANNOTATION,
    GPU_MEMORY_RESOURCE,
    GPU_MILLI_RESOURCE,
    GPU_RESOURCE,
    POD_GROUP_API,
    POD_GROUP_LABEL,
    SCHEDULER_NAME,
)
from scheduler.contract.assignment import Assignment
from scheduler.podcodec.assignment import assignment_from_pod, assignment_signature_ok
from scheduler.podcodec.signing import Signer
from topology.model import NodeTopology
from topology.presets import preset

WAIT_S = 90.0  # upper bound for anything to happen; tests never assert on elapsed time
HEARTBEAT_S = 3.0
# The make_nodes fixture: make(count, topo, prefix="gpu", **node_fields) -> node names.
MakeNodes = Callable[..., list[str]]
_seq = itertools.count()


def raw_json(resp: Any) -> Any:
    """The JSON body of a `_preload_content=False` client response."""
    data = resp.data
    resp.release_conn()
    return json.loads(data)


def signer_for(key: bytes) -> Signer:
    """The verifier the node agent would use: the harness's key directory holds one key, `e2e`."""
    return Signer(keys={"e2e": key}, key_id="e2e")


@dataclass
class Api:
    """The admin's view of the cluster, with raw JSON objects (camelCase, as stored)."""

    core: client.CoreV1Api
    custom: client.CustomObjectsApi

    @classmethod
    def of(cls, api_client: Any) -> Api:
        """Api over a kubernetes ApiClient."""
        return cls(client.CoreV1Api(api_client), client.CustomObjectsApi(api_client))

    def pods(self, ns: str | None = None) -> list[dict[str, Any]]:
        """Every pod of `ns` (all namespaces when None) as stored."""
        if ns is None:
            resp = self.core.list_pod_for_all_namespaces(_preload_content=False)
        else:
            resp = self.core.list_namespaced_pod(ns, _preload_content=False)
        items: list[dict[str, Any]] = raw_json(resp)["items"]
        return items

    def events(self, ns: str, pod: str) -> list[dict[str, Any]]:
        """Events about pod `ns/pod`."""
        resp = self.core.list_namespaced_event(
            ns, field_selector=f"involvedObject.name={pod}", _preload_content=False)
        items: list[dict[str, Any]] = raw_json(resp)["items"]
        return items


# ---- nodes -------------------------------------------------------------------------------


def node_names(prefix: str, count: int) -> list[str]:
    """`prefix-0 .. prefix-(count-1)`."""
    return [f"{prefix}-{i}" for i in range(count)]


def nudge_nodes(core: client.CoreV1Api, names: Iterable[str]) -> None:
    """A node update, as a kubelet's periodic status makes: kube-scheduler re-queues pods that
    only an extender turned away on any cluster event (no plugin of its own to ask)."""
    stamp = str(next(_seq))
    for n in names:
        drain(core.patch_node(n, {"metadata": {"labels": {"e2e.gts.dev/nudge": stamp}}},
                        _preload_content=False))


# ---- pods --------------------------------------------------------------------------------


def pod_body(name: str, *, gpus: int = 0, milli: int = 0, gpu_memory_mib: int = 0,
             cpu: str = "100m", scheduler: str = SCHEDULER_NAME, gang: str | None = None,
             min_member: int | None = None, models: str | None = None) -> dict[str, Any]:
    """A Pod asking for whole GPUs or a share (limits = requests for extended resources)."""
    req: dict[str, str] = {"cpu": cpu, "memory": "128Mi"}
    if gpus:
        req[GPU_RESOURCE] = str(gpus)
    if milli:
        req[GPU_MILLI_RESOURCE] = str(milli)
    if gpu_memory_mib:
        req[GPU_MEMORY_RESOURCE] = str(gpu_memory_mib)
    labels: dict[str, str] = {"app": "e2e"}
    ann: dict[str, str] = {}
    if gang:
        labels[POD_GROUP_LABEL] = gang
        if min_member is not None:
            ann[GANG_MIN_MEMBER_ANNOTATION] = str(min_member)
    if models:
        ann[ALLOWED_MODELS_ANNOTATION] = models
    limits = {k: v for k, v in req.items() if k != "cpu"}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": ann},
        "spec": {"schedulerName": scheduler, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "main", "image": "registry.invalid/none:0",
                                 "resources": {"requests": req, "limits": limits}}]},
    }


def create_pods(core: client.CoreV1Api, ns: str, bodies: Iterable[Mapping[str, Any]]) -> None:
    """Create each pod in `ns`."""
    for b in bodies:
        # The client takes a plain dict as well as a V1Pod (it serialises either).
        drain(core.create_namespaced_pod(ns, b, _preload_content=False))  # type: ignore[arg-type]


def delete_pods(core: client.CoreV1Api, ns: str, names: Iterable[str]) -> None:
    """Delete pods at once (grace 0: no kubelet would confirm)."""
    for n in names:
        drain(core.delete_namespaced_pod(n, ns, grace_period_seconds=0,
                                   _preload_content=False))


def create_podgroup(custom: client.CustomObjectsApi, ns: str, name: str,
                    min_member: int) -> None:
    """A scheduling.x-k8s.io PodGroup."""
    group, version, plural = POD_GROUP_API
    custom.create_namespaced_custom_object(group, version, ns, plural, {
        "apiVersion": f"{group}/{version}", "kind": "PodGroup",
        "metadata": {"name": name}, "spec": {"minMember": min_member}})


def name_of(pod: Mapping[str, Any]) -> str:
    """metadata.name."""
    return str(pod["metadata"]["name"])


def node_of(pod: Mapping[str, Any]) -> str:
    """spec.nodeName, "" while pending."""
    return str(pod.get("spec", {}).get("nodeName") or "")


def wait_until(what: str, check: Callable[[], Any], timeout_s: float = WAIT_S,
               on_timeout: Callable[[], str] | None = None) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after the timeout."""
    end = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    extra = on_timeout() if on_timeout is not None else ""
    raise AssertionError(f"timed out waiting for {what} (last: {last!r}) {extra}")


def wait_bound(api: Api, ns: str, names: Sequence[str], *,
               heartbeat: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Wait until every pod in `names` has a node; their objects by name.

    `heartbeat`: nodes to update every HEARTBEAT_S meanwhile, as kubelets do (see nudge_nodes).
    """
    want = set(names)
    next_beat = [time.monotonic()]

    def bound() -> dict[str, dict[str, Any]] | None:
        if heartbeat and time.monotonic() >= next_beat[0]:
            nudge_nodes(api.core, heartbeat)
            next_beat[0] = time.monotonic() + HEARTBEAT_S
        pods = {name_of(p): p for p in api.pods(ns) if name_of(p) in want}
        return pods if len(pods) == len(want) and all(map(node_of, pods.values())) else None

    def pending() -> str:
        left = [name_of(p) for p in api.pods(ns) if name_of(p) in want and not node_of(p)]
        why = {n: [e.get("message", "") for e in api.events(ns, n)][-1:] for n in left[:3]}
        return f"pending: {left}; their last events: {why}"

    result: dict[str, dict[str, Any]] = wait_until(f"{len(want)} pods bound in {ns}", bound,
                                                   on_timeout=pending)
    return result


def failed_scheduling(api: Api, ns: str, pod: str) -> list[str]:
    """Messages of the pod's FailedScheduling events."""
    return [str(e.get("message", "")) for e in api.events(ns, pod)
            if e.get("reason") == "FailedScheduling"]


def wait_turned_away(api: Api, ns: str, names: Iterable[str]) -> dict[str, list[str]]:
    """Wait until each pod has a FailedScheduling event; the messages by pod."""
    names = list(names)

    def all_failed() -> dict[str, list[str]] | None:
        got = {n: failed_scheduling(api, ns, n) for n in names}
        return got if all(got.values()) else None

    result: dict[str, list[str]] = wait_until(f"FailedScheduling events for {names}",
                                              all_failed)
    return result


# ---- assignments -------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """A bound pod of ours with its verified assignment."""

    name: str
    node: str
    assignment: Assignment


def requested(pod: Mapping[str, Any], resource: str) -> int:
    """Sum over containers of the pod's request for `resource`."""
    total = 0
    for c in pod["spec"]["containers"]:
        v = ((c.get("resources") or {}).get("requests") or {}).get(resource)
        total += int(v) if v is not None else 0
    return total


def verify_assignment(pod: Mapping[str, Any], signer: Signer) -> Assignment:
    """The pod's assignment, checked: present, on its node, validly signed, as requested."""
    name = f"{pod['metadata'].get('namespace')}/{name_of(pod)}"
    a = assignment_from_pod(pod)
    assert a is not None, f"{name} is bound to {node_of(pod)} without an assignment"
    assert a.node == node_of(pod), f"{name}: assignment names {a.node}, bound to {node_of(pod)}"
    assert assignment_signature_ok(pod, a, signer), f"{name}: signature does not verify"
    gpus, milli = requested(pod, GPU_RESOURCE), requested(pod, GPU_MILLI_RESOURCE)
    if gpus:
        assert len(a.gpus) == gpus and a.gpu_milli == 1000, f"{name}: {a} for {gpus} GPUs"
    else:
        assert len(a.gpus) == 1 and a.gpu_milli == milli, f"{name}: {a} for a {milli}m share"
    return a


def verify_cluster(api: Api, signer: Signer) -> dict[str, Placed]:
    """Check every bound pod of ours in the cluster and that no GPU is double-booked.

    Returns the verified placements by `namespace/name`.
    """
    placed: dict[str, Placed] = {}
    use: dict[tuple[str, int], int] = defaultdict(int)
    for pod in api.pods():
        if pod["spec"].get("schedulerName") != SCHEDULER_NAME or not node_of(pod):
            continue
        a = verify_assignment(pod, signer)
        key = f"{pod['metadata']['namespace']}/{name_of(pod)}"
        placed[key] = Placed(name_of(pod), a.node, a)
        for g in a.gpus:
            use[(a.node, g)] += a.gpu_milli
    over = {k: v for k, v in use.items() if v > 1000}
    assert not over, f"GPUs double-booked (thousandths held): {over}"
    return placed


def unassigned(pod: Mapping[str, Any]) -> bool:
    """True if the pod has no node and none of our assignment annotations."""
    return not node_of(pod) and assignment_from_pod(pod) is None


def dgx1() -> NodeTopology:
    """The DGX-1 V100 hybrid cube-mesh."""
    return preset("dgx1-v100")


def unique(prefix: str) -> str:
    """A short name unique in this session."""
    return f"{prefix}-{next(_seq)}-{uuid.uuid4().hex[:4]}"


def metric(text: str, name: str) -> float:
    """Sum of a Prometheus metric's samples (all label sets) in exposition `text`."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    assert seen, f"metric {name} not exported"
    return total
