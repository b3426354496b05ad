"""Test kit for the extender tests: pods and nodes as kube-scheduler sends them, a binder that
records what it was asked (and fails on demand), a static cache, and the snapshot invariants."""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from kube_scheduler_oracle import check_bind_reply, check_filter_reply, check_prioritize_reply
from snapshot_equality import same_state

from scheduler.cluster.cache import ClusterCache
from scheduler.constants import (
    GANG_MIN_MEMBER_ANNOTATION,
    GPU_MILLI_RESOURCE,
    GPU_RESOURCE,
    POD_GROUP_LABEL,
    TOPOLOGY_PRESET_LABEL,
)
from scheduler.contract.node import NodeSpec
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.snapshot import Snapshot, build_snapshot
from topology.presets import preset

KEY = b"0123456789abcdef0123456789abcdef"


def spec(name: str, topo: str = "dgx-h100", cpu: int = 64_000, mem: int = 512 * 1024,
         levels: tuple[str, ...] = ()) -> NodeSpec:
    """A node of a topology preset ("" for a CPU-only node)."""
    from scheduler.cluster.nodes import generic_topology

    t = preset(topo) if topo else generic_topology(0, "")
    return NodeSpec(name=name, cpu_milli=cpu, memory_mib=mem, topology=t, levels=levels)


def node_obj(name: str, gpus: int = 8, topo: str = "dgx-h100",
             labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Node object the way the API (and kube-scheduler with nodeCacheCapable false) has it."""
    lab = {"kubernetes.io/hostname": name, TOPOLOGY_PRESET_LABEL: topo, **(labels or {})}
    alloc = {"cpu": "64", "memory": "512Gi", "pods": "110", GPU_RESOURCE: str(gpus)}
    return {"metadata": {"name": name, "uid": str(uuid.uuid4()), "labels": lab},
            "spec": {}, "status": {"capacity": dict(alloc), "allocatable": alloc}}


def pod_obj(name: str, gpus: int = 1, milli: int = 0, cpu: str = "1", ns: str = "default",
            uid: str | None = None, gang: str | None = None, min_member: int | None = None,
            annotations: Mapping[str, str] | None = None,
            resources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A pending Pod object as kube-scheduler sends it to filter."""
    req: dict[str, str] = {"cpu": cpu}
    if gpus:
        req[GPU_RESOURCE] = str(gpus)
    if milli:
        req[GPU_MILLI_RESOURCE] = str(milli)
    req.update(resources or {})
    labels = {"app": "t"}
    ann = dict(annotations or {})
    if gang:
        labels[POD_GROUP_LABEL] = gang
        if min_member is not None:
            ann[GANG_MIN_MEMBER_ANNOTATION] = str(min_member)
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": uid or str(uuid.uuid4()),
                            "labels": labels}
    if ann:
        meta["annotations"] = ann
    return {"metadata": meta,
            "spec": {"containers": [{"name": "c", "image": "x",
                                     "resources": {"requests": req, "limits": {
                                         k: v for k, v in req.items() if k != "cpu"}}}],
                     "schedulerName": "gpu-topology-scheduler", "priority": 0},
            "status": {"phase": "Pending"}}


def static_cache(specs: Sequence[NodeSpec], assume_ttl_s: float = 120.0) -> ClusterCache:
    """A synced cache over fixed nodes (static mode)."""
    c = ClusterCache(assume_ttl_s=assume_ttl_s)
    c.replace_specs(specs)
    c.synced = True
    return c


class ApiFailure(Exception):
    """What the fake binder raises when told to fail."""


class FakeBinder:
    """Records annotate/bind calls; `fail[(op, pod_key)]` makes that call raise once."""

    def __init__(self, podgroups: Mapping[str, int] | None = None) -> None:
        self.lock = threading.Lock()
        self.annotations: dict[str, dict[str, str]] = {}
        self.bound: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[tuple[str, str], Exception] = {}
        self.podgroups = dict(podgroups or {})

    def _maybe_fail(self, op: str, key: str) -> None:
        with self.lock:
            self.calls.append((op, key))
            e = self.fail.pop((op, key), None)
        if e is not None:
            raise e

    def annotate(self, pod_ns: str, pod_name: str, uid: str,
                 annotations: Mapping[str, str | None]) -> None:
        key = f"{pod_ns}/{pod_name}"
        self._maybe_fail("annotate", key)
        with self.lock:
            cur = self.annotations.setdefault(key, {})
            for k, v in annotations.items():
                if v is None:
                    cur.pop(k, None)
                else:
                    cur[k] = v

    def bind(self, ns: str, name: str, uid: str, node: str,
             annotations: Mapping[str, str] | None = None) -> None:
        """As the API server: the Binding's annotations land on the pod in the same write."""
        key = f"{ns}/{name}"
        self._maybe_fail("bind", key)
        with self.lock:
            if key in self.bound:
                raise ApiFailure(f"409 Conflict: pod {key} is already assigned to a node")
            self.bound[key] = node
            self.annotations.setdefault(key, {}).update(annotations or {})

    def get_podgroup_min_member(self, ns: str, name: str) -> int | None:
        return self.podgroups.get(f"{ns}/{name}")


def check_invariants(snap: Snapshot) -> None:
    """The snapshot's arrays agree with its holdings and stay within capacity."""
    valid = np.arange(snap.max_gpus)[None, :] < snap.gpu_count[:, None]
    assert ((snap.milli_free >= 0) & (snap.milli_free <= MILLI_PER_GPU)).all()
    assert (snap.milli_free[~valid] == 0).all()
    assert (snap.cpu_free >= 0).all() and (snap.mem_free >= 0).all()
    assert (snap.gpu_mem_free >= 0).all() and (snap.gpu_mem_free <= snap.gpu_mem_total).all()
    for i in range(snap.n_nodes):
        for g in range(int(snap.gpu_count[i])):
            assert bool(int(snap.free_mask[i]) >> g & 1) == (snap.milli_free[i, g] ==
                                                             MILLI_PER_GPU)
    rebuilt = build_snapshot(snap.specs, snap.holdings.values())
    assert same_state(rebuilt, snap)


def gpu_owners(snap: Snapshot) -> dict[tuple[str, int], list[str]]:
    """(node, gpu) -> pods holding a whole GPU there (never more than one)."""
    out: dict[tuple[str, int], list[str]] = {}
    for a in snap.holdings.values():
        if a.gpu_milli == MILLI_PER_GPU:
            for g in a.gpus:
                out.setdefault((a.node, g), []).append(a.pod)
    return out


class ExtenderClient:
    """kube-scheduler's side of the wire over one keep-alive HTTP/1.1 connection."""

    def __init__(self, url: str, context: Any = None, timeout: float = 60.0) -> None:
        u = urlsplit(url)
        assert u.hostname and u.port
        if u.scheme == "https":
            self.conn: Any = http.client.HTTPSConnection(u.hostname, u.port, context=context,
                                                         timeout=timeout)
        else:
            self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)

    def raw(self, method: str, path: str, body: bytes = b"",
            headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """One request; (status, body). The connection stays open."""
        h = {"Content-Type": "application/json", **(headers or {})}
        self.conn.request(method, path, body=body if method == "POST" else None, headers=h)
        r = self.conn.getresponse()
        return r.status, r.read()

    def post(self, verb: str, doc: object) -> Any:
        st, body = self.raw("POST", f"/{verb}", json.dumps(doc).encode())
        assert st == 200, (st, body[:300])
        return json.loads(body)

    def schedule(self, pod: Mapping[str, Any], names: Sequence[str]) -> tuple[str, str]:
        """filter -> prioritize (if more than one passed) -> best -> bind; (node, error)."""
        doc = {"Pod": pod, "Nodes": None, "NodeNames": list(names)}
        passed = check_filter_reply(self.post("filter", doc), doc)
        if not passed:
            return "", "no node passed filter"
        node = passed[0]
        if len(passed) > 1:
            pdoc = {"Pod": pod, "Nodes": None, "NodeNames": passed}
            scores = check_prioritize_reply(self.post("prioritize", pdoc), pdoc)
            node = max(passed, key=lambda n: (scores[n], -passed.index(n)))
        return node, self.bind(pod, node)

    def bind(self, pod: Mapping[str, Any], node: str) -> str:
        m = pod["metadata"]
        return check_bind_reply(self.post("bind", {
            "PodName": m["name"], "PodNamespace": m.get("namespace", "default"),
            "PodUID": m.get("uid", ""), "Node": node}))

    def close(self) -> None:
        self.conn.close()


def address(e: Any) -> tuple[str, int]:
    """(host, port) an extender's HTTP server listens on."""
    host, port = e.server.server_address[:2]
    return str(host), int(port)


def wait_for(cond: Any, what: str = "condition not reached", timeout_s: float = 20.0,
             step_s: float = 0.005) -> None:
    """Poll `cond` until it is true; AssertionError(`what`) after `timeout_s` (bind threads)."""
    ev = threading.Event()
    for _ in range(max(1, int(timeout_s / step_s))):
        if cond():
            return
        ev.wait(step_s)
    raise AssertionError(what)
