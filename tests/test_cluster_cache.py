"""ClusterCache: holdings derived from API objects, TTL assumptions, restart equality, fuzzing."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cluster_cache_probes import durable_snapshot, in_memory_keys, node_index, replace_all
from hand_clock import HandClock
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pod_annotation_patch import cleared_assignment_annotations
from snapshot_equality import same_state

from scheduler.cluster.cache import ClusterCache
from scheduler.constants import (
    GPU_MEMORY_LABEL,
    GPU_MILLI_RESOURCE,
    GPU_MODEL_LABELS,
    GPU_RESOURCE,
    TOPOLOGY_ANNOTATION,
    TOPOLOGY_PRESET_LABEL,
)
from scheduler.contract.assignment import Assignment
from scheduler.podcodec.assignment import (
    assignment_annotations,
    assignment_from_pod,
)
from scheduler.podcodec.signing import Signer
from scheduler.policy.snapshot import AllocationError, Snapshot, build_snapshot
from scheduler.policy.typical_workload import TypicalWorkload

SIGNER = Signer(b"test-key-0123456789abcdef")
TTL = 30.0


def node_obj(name: str, gpus: int, *, preset: str | None = None, model: str = "T4",
             mem_mib: int | None = 15360, labels: dict[str, str] | None = None) -> dict[str, Any]:
    lab = {GPU_MODEL_LABELS[0]: model, **(labels or {})}
    if preset:
        lab[TOPOLOGY_PRESET_LABEL] = preset
    if mem_mib is not None:
        lab[GPU_MEMORY_LABEL] = str(mem_mib)
    alloc = {"cpu": "64", "memory": "512Gi", "pods": "110"}
    if gpus:
        alloc[GPU_RESOURCE] = str(gpus)
    return {"metadata": {"name": name, "uid": f"node-{name}", "labels": lab},
            "spec": {}, "status": {"allocatable": alloc, "capacity": dict(alloc)}}


def pod_obj(name: str, *, gpus: int = 0, milli: int = 0, node: str = "",
            annotations: dict[str, str] | None = None, phase: str = "Pending",
            uid: str | None = None) -> dict[str, Any]:
    req: dict[str, str] = {"cpu": "1", "memory": "1Gi"}
    if gpus:
        req[GPU_RESOURCE] = str(gpus)
    if milli:
        req[GPU_MILLI_RESOURCE] = str(milli)
    spec: dict[str, Any] = {"containers": [{"name": "c", "resources": {"requests": req}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}",
                         "annotations": dict(annotations or {})},
            "spec": spec, "status": {"phase": phase}}


def annotated(p: dict[str, Any], a: Assignment) -> dict[str, Any]:
    q = copy.deepcopy(p)
    q["metadata"]["annotations"].update(
        assignment_annotations(a, SIGNER, uid=q["metadata"]["uid"]))
    return q


def whole(pod: str, node: str, gpus: tuple[int, ...]) -> Assignment:
    return Assignment(pod=f"ns/{pod}", node=node, gpus=gpus, cpu_milli=1000, memory_mib=1024)


def check_invariants(cache: ClusterCache) -> None:
    """The snapshot's arrays are exactly its nodes plus its holdings, and nothing is odd."""
    with cache.lock:
        snap = cache.snapshot
        assert snap.names == sorted(snap.names)
        assert not set(snap.names) & set(cache.errors)
        for a in snap.holdings.values():
            assert a.node in snap.index
        rebuilt = build_snapshot(snap.specs, snap.holdings.values())
        assert same_state(snap, rebuilt)
        assert (snap.milli_free >= 0).all() and (snap.milli_free <= 1000).all()
        assert (snap.cpu_free >= 0).all() and (snap.mem_free >= 0).all()


def new_cache(clock: HandClock | None = None) -> ClusterCache:
    return ClusterCache(assume_ttl_s=TTL, clock=clock or HandClock(), signer=SIGNER)


# ---- basics -------------------------------------------------------------------------------

def test_fixture_nodes_sorted_and_schedulable(shared: Path) -> None:
    body = json.loads((shared / "fixtures/extender/ncc-false/filter.request.json").read_text())
    cache = new_cache()
    replace_all(cache, body["Nodes"]["items"], [body["Pod"]])
    assert cache.snapshot.names == ["gpu-node-1", "gpu-node-2", "gpu-node-3"]
    assert cache.errors == {} and cache.snapshot.holdings == {}
    assert node_index(cache, "gpu-node-2") == 1 and node_index(cache, "nope") is None
    check_invariants(cache)


def test_assume_confirm_forget() -> None:
    cache = new_cache()
    replace_all(cache, [node_obj("a", 4)], [])
    a = whole("p", "a", (0, 1))
    cache.assume(a)
    assert cache.snapshot.holdings == {"ns/p": a}
    assert in_memory_keys(cache) == ["ns/p"]
    with pytest.raises(AllocationError):
        cache.assume(whole("q", "a", (1, 2)))  # GPU 1 is taken
    with pytest.raises(AllocationError):
        cache.assume(whole("p", "a", (2, 3)))  # the pod already holds something else
    cache.assume(a)  # the same assumption again only refreshes it
    assert cache.confirm("ns/p") and not cache.confirm("ns/none")
    assert cache.forget("ns/p")
    assert cache.snapshot.holdings == {}
    assert not cache.forget("ns/p")
    check_invariants(cache)


def test_assumption_expires_after_ttl() -> None:
    clock = HandClock()
    cache = new_cache(clock)
    replace_all(cache, [node_obj("a", 8)], [])
    cache.assume(whole("p", "a", (0,)))
    cache.assume(whole("q", "a", (1,)))
    cache.confirm("ns/q")
    clock.advance(TTL - 0.001)
    assert cache.expire() == []
    assert set(cache.snapshot.holdings) == {"ns/p", "ns/q"}
    clock.advance(0.001)
    assert cache.expire() == ["ns/p"]  # a lost bind does not leak its GPU
    assert set(cache.snapshot.holdings) == {"ns/q"}  # a confirmed pod never expires
    clock.advance(10 * TTL)
    assert cache.expire() == []
    check_invariants(cache)


def assumed_then_annotated(cache: ClusterCache, gpu: int) -> tuple[Assignment, dict[str, Any]]:
    """Pod p assumed on one GPU of node a (4 GPUs), then its annotate patch back through the
    watch; the assignment and the pod object."""
    replace_all(cache, [node_obj("a", 4)], [])
    a = whole("p", "a", (gpu,))
    cache.assume(a)
    p = annotated(pod_obj("p", gpus=1), a)
    cache.upsert_pod(p)
    return a, p


def test_annotated_unbound_pod_expires_and_stale_annotation_is_ignored() -> None:
    clock = HandClock()
    cache = new_cache(clock)
    a, p = assumed_then_annotated(cache, 2)
    assert in_memory_keys(cache) == []  # now it would survive a restart
    clock.advance(TTL)
    assert cache.expire() == ["ns/p"]
    ours = {k: v for k, v in p["metadata"]["annotations"].items()
            if k in cleared_assignment_annotations()}
    assert cache.stale_annotations() == [("ns/p", "uid-p", ours)]
    cache.upsert_pod(p)  # another update of the pod still carrying the stale annotation
    assert cache.snapshot.holdings == {}
    # The bind did land after all: the API shows the pod bound with that assignment.
    bound = copy.deepcopy(p)
    bound["spec"]["nodeName"] = "a"
    cache.upsert_pod(bound)
    assert cache.snapshot.holdings == {"ns/p": a}
    assert cache.stale_annotations() == []
    check_invariants(cache)


def test_stale_entry_cleared_when_annotation_removed() -> None:
    cache = new_cache(HandClock())
    _, p = assumed_then_annotated(cache, 2)
    assert cache.forget("ns/p")
    assert [k for k, _, _ in cache.stale_annotations()] == ["ns/p"]
    q = copy.deepcopy(p)
    q["metadata"]["annotations"] = {}
    cache.upsert_pod(q)
    assert cache.stale_annotations() == [] and cache.snapshot.holdings == {}


def test_retry_after_rollback_is_not_displaced_by_the_stale_annotation() -> None:
    """kube-scheduler retries a pod whose bind failed: the new assumption must hold even while
    the old annotation is still on the pod (its removal is not seen yet)."""
    cache = new_cache()
    _, p = assumed_then_annotated(cache, 0)
    assert cache.forget("ns/p")  # the bind failed: roll back
    new = whole("p", "a", (3,))
    cache.assume(new)
    cache.upsert_pod(p)  # a late event still showing the old annotation
    assert cache.snapshot.holdings == {"ns/p": new}
    cache.upsert_pod(annotated(pod_obj("p", gpus=1), new))
    assert cache.snapshot.holdings == {"ns/p": new}
    assert cache.stale_annotations() == []
    check_invariants(cache)


def test_watch_confirms_bound_pod_and_releases_on_finish_or_delete() -> None:
    clock = HandClock()
    cache = new_cache(clock)
    replace_all(cache, [node_obj("a", 4)], [])
    a = whole("p", "a", (1, 3))
    cache.assume(a)
    p = annotated(pod_obj("p", gpus=2, node="a"), a)
    cache.upsert_pod(p)
    h = cache.holding("ns/p")
    assert h is not None and h.durable and h.deadline is None
    assert not cache.forget("ns/p")  # the API says it is bound: it does use the GPUs
    clock.advance(2 * TTL)
    assert cache.expire() == []
    done = copy.deepcopy(p)
    done["status"]["phase"] = "Succeeded"
    cache.upsert_pod(done)
    assert cache.snapshot.holdings == {}
    cache.upsert_pod(p)
    assert "ns/p" in cache.snapshot.holdings
    cache.delete_pod(p)
    assert cache.snapshot.holdings == {}
    check_invariants(cache)


def test_unsigned_or_forged_annotation_is_not_ours() -> None:
    cache = new_cache()
    replace_all(cache, [node_obj("a", 4)], [])
    a = whole("p", "a", (0, 1))
    p = annotated(pod_obj("p", gpus=2), a)
    p["metadata"]["annotations"]["gts.dev/signature"] = "0" * 64
    cache.upsert_pod(p)
    assert cache.snapshot.holdings == {}
    assert "not signed" in cache.pod_errors["ns/p"]
    # Bound by hand, it still uses 2 GPUs as far as the kubelet knows: held as foreign.
    p["spec"]["nodeName"] = "a"
    cache.upsert_pod(p)
    held = cache.snapshot.holdings["ns/p"]
    assert len(held.gpus) == 2


def test_foreign_pods_take_lowest_free_gpus_and_move_around_ours() -> None:
    cache = new_cache()
    replace_all(cache, [node_obj("a", 4)], [])
    f = pod_obj("f", gpus=2, node="a")
    cache.upsert_pod(f)
    assert cache.snapshot.holdings["ns/f"].gpus == (0, 1)
    # Our annotated pod on GPU 0 arrives later: the annotation is authoritative.
    ours = annotated(pod_obj("o", gpus=1, node="a"), whole("o", "a", (0,)))
    cache.upsert_pod(ours)
    assert cache.snapshot.holdings["ns/o"].gpus == (0,)
    assert cache.snapshot.holdings["ns/f"].gpus == (1, 2)
    # Same objects in the other order give the same snapshot.
    other = new_cache()
    replace_all(other, [node_obj("a", 4)], [])
    other.upsert_pod(ours)
    other.upsert_pod(f)
    assert same_state(other.snapshot, cache.snapshot)
    check_invariants(cache)


def test_conflicting_annotations_counted_once_then_resolved() -> None:
    cache = new_cache()
    replace_all(cache, [node_obj("a", 2)], [])
    p = annotated(pod_obj("p", gpus=1, node="a"), whole("p", "a", (0,)))
    q = annotated(pod_obj("q", gpus=1, node="a"), whole("q", "a", (0,)))
    cache.upsert_pod(p)
    cache.upsert_pod(q)
    assert set(cache.snapshot.holdings) == {"ns/p"}
    assert "conflicts" in cache.pod_errors["ns/q"]
    cache.delete_pod(p)
    assert set(cache.snapshot.holdings) == {"ns/q"}
    assert "ns/q" not in cache.pod_errors
    check_invariants(cache)


def test_node_removal_and_return_keep_holdings_from_the_api() -> None:
    cache = new_cache()
    replace_all(cache, [node_obj("a", 4), node_obj("b", 4)], [])
    p = annotated(pod_obj("p", gpus=1, node="b"), whole("p", "b", (3,)))
    cache.upsert_pod(p)
    cache.delete_node("b")
    assert cache.snapshot.names == ["a"] and cache.snapshot.holdings == {}
    cache.upsert_node(node_obj("b", 4))
    assert cache.snapshot.holdings["ns/p"].gpus == (3,)
    check_invariants(cache)


def test_unchanged_node_update_keeps_the_snapshot() -> None:
    cache = new_cache()
    n = node_obj("a", 4)
    replace_all(cache, [n], [])
    snap = cache.snapshot
    n2 = copy.deepcopy(n)
    n2["metadata"]["resourceVersion"] = "999"
    n2["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert cache.upsert_node(n2) is None
    assert cache.snapshot is snap  # a heartbeat does not rebuild 5,000 nodes


def test_invalid_node_kept_out_then_restored() -> None:
    cache = new_cache()
    replace_all(cache, [node_obj("a", 4), node_obj("b", 8, preset="dgx-h100")], [])
    bad = node_obj("b", 8)
    bad["metadata"]["annotations"] = {TOPOLOGY_ANNOTATION: '{"v": 1, "gpus": []}'}
    err = cache.upsert_node(bad)
    assert err is not None and TOPOLOGY_ANNOTATION in err
    assert cache.snapshot.names == ["a"] and "b" in cache.errors
    assert cache.upsert_node(node_obj("b", 8, preset="dgx-h100")) is None
    assert cache.snapshot.names == ["a", "b"] and cache.errors == {}


def test_share_holdings() -> None:
    cache = new_cache()
    replace_all(cache, [node_obj("a", 1)], [])
    s1 = Assignment(pod="ns/s1", node="a", gpus=(0,), gpu_milli=600, gpu_memory_mib=8000)
    s2 = Assignment(pod="ns/s2", node="a", gpus=(0,), gpu_milli=400, gpu_memory_mib=7360)
    cache.assume(s1)
    cache.assume(s2)
    assert cache.snapshot.milli_free[0, 0] == 0
    with pytest.raises(AllocationError):
        cache.assume(Assignment(pod="ns/s3", node="a", gpus=(0,), gpu_milli=1))
    check_invariants(cache)


# ---- restart property ---------------------------------------------------------------------

NODE_POOL: dict[str, Callable[[int], dict[str, Any]]] = {
    "n0": lambda v: node_obj("n0", 8, preset="dgx-h100", model="H100", mem_mib=81920),
    # Variant 1 of a node has fewer GPUs: an update that shrinks it drops what no longer fits.
    "n1": lambda v: node_obj("n1", 4 - 2 * v, model="T4"),
    "n2": lambda v: node_obj("n2", 2 - v, model="A10", mem_mib=24576),
    "n3": lambda v: node_obj("n3", 0),
}


class World:
    """A model apiserver (objects plus a lagging watch queue) and the cache it feeds."""

    def __init__(self) -> None:
        self.clock = HandClock()
        self.cache = new_cache(self.clock)
        self.nodes: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.queue: list[tuple[str, str, dict[str, Any]]] = []
        self.n = 0
        self.nodes = {name: NODE_POOL[name](0) for name in ("n0", "n1")}
        replace_all(self.cache, list(self.nodes.values()), [])
        self.model = Model(self.clock)
        self.model.relist(list(self.nodes.values()), [])
        # True while the live mix should equal a rebuilt one: no pod it counted has left since
        # the last list (a restart cannot count pods the API no longer has).
        self.mix_exact = True

    def emit(self, kind: str, type_: str, obj: dict[str, Any]) -> None:
        self.queue.append((kind, type_, copy.deepcopy(obj)))

    def deliver(self, count: int) -> None:
        for kind, type_, obj in self.queue[:count]:
            if kind == "node":
                if type_ == "DELETED":
                    self.cache.delete_node(obj["metadata"]["name"])
                    self.model.gpus.pop(obj["metadata"]["name"], None)
                else:
                    self.cache.upsert_node(obj)
                    self.model.node(obj)
            elif type_ == "DELETED":
                self.cache.delete_pod(obj)
                self.model.deleted(f"ns/{obj['metadata']['name']}")
                self.mix_exact = False
            else:
                self.cache.upsert_pod(obj)
                self.model.pod(obj, self.model.claims.get(f"ns/{obj['metadata']['name']}"))
                self.mix_exact &= obj["status"]["phase"] not in ("Succeeded", "Failed")
        del self.queue[:count]

    def assume(self, a: Assignment) -> None:
        self.cache.assume(a)
        self.model.assume(a)

    def put_pod(self, p: dict[str, Any]) -> None:
        key = f"ns/{p['metadata']['name']}"
        # One creation second per pod, so the watch's order is the creation order.
        p["metadata"].setdefault("creationTimestamp",
                                 f"2025-01-01T{self.n // 3600:02d}:{self.n // 60 % 60:02d}:"
                                 f"{self.n % 60:02d}Z")
        self.emit("pod", "MODIFIED" if key in self.pods else "ADDED", p)
        self.pods[key] = p

    def free_choice(self, data: st.DataObject, gpus: int, milli: int) -> Assignment | None:
        snap = self.cache.snapshot
        options: list[tuple[str, tuple[int, ...]]] = []
        for i, name in enumerate(snap.names):
            free = [g for g in range(int(snap.gpu_count[i])) if snap.milli_free[i, g] == 1000]
            if milli:
                part = [g for g in range(int(snap.gpu_count[i]))
                        if snap.milli_free[i, g] >= milli]
                options += [(name, (g,)) for g in part]
            elif len(free) >= gpus:
                options.append((name, tuple(sorted(data.draw(
                    st.permutations(free), label="gpus")[:gpus]))))
        if not options:
            return None
        node, chosen = data.draw(st.sampled_from(options), label="place")
        return Assignment(pod="", node=node, gpus=chosen,
                          gpu_milli=milli or 1000, cpu_milli=1000, memory_mib=1024)

    def step(self, data: st.DataObject) -> None:
        op = data.draw(st.sampled_from([
            "add_node", "remove_node", "create", "create", "create", "schedule", "place",
            "place", "place", "annotate", "bind", "finish", "delete", "expire", "forget",
            "foreign", "deliver", "deliver", "relist", "clear"]), label="op")
        if op == "place":
            # The extender's whole bind path, stopping at a random point.
            for sub in ("create", "schedule", "annotate", "bind"):
                self.step_op(sub, data, key=f"ns/p{self.n}" if sub != "create" else None)
                if not data.draw(st.integers(0, 3), label="go on") and sub != "create":
                    return
            return
        self.step_op(op, data)

    def step_op(self, op: str, data: st.DataObject, key: str | None = None) -> None:
        pending = sorted(k for k, p in self.pods.items() if not p["spec"].get("nodeName"))
        if op == "add_node":
            name = data.draw(st.sampled_from(sorted(NODE_POOL)), label="node")
            obj = NODE_POOL[name](data.draw(st.integers(0, 1), label="variant"))
            self.emit("node", "MODIFIED" if name in self.nodes else "ADDED", obj)
            self.nodes[name] = obj
        elif op == "remove_node" and self.nodes:
            name = data.draw(st.sampled_from(sorted(self.nodes)), label="node")
            self.emit("node", "DELETED", self.nodes.pop(name))
        elif op == "create":
            self.n += 1
            share = data.draw(st.booleans(), label="share")
            p = pod_obj(f"p{self.n}", gpus=0 if share else data.draw(
                st.integers(1, 4), label="k"), milli=data.draw(
                st.sampled_from([250, 500, 700]), label="milli") if share else 0)
            self.put_pod(p)
        elif op == "schedule" and pending:
            if key is None or key not in pending:
                key = data.draw(st.sampled_from(pending), label="pod")
            if self.cache.holding(key) is not None:
                return
            res = self.pods[key]["spec"]["containers"][0]["resources"]["requests"]
            a = self.free_choice(data, int(res.get(GPU_RESOURCE, 0)),
                                 int(res.get(GPU_MILLI_RESOURCE, 0)))
            if a is not None:
                a = Assignment(pod=key, node=a.node, gpus=a.gpus, gpu_milli=a.gpu_milli,
                               cpu_milli=a.cpu_milli, memory_mib=a.memory_mib)
                self.assume(a)
        elif op == "annotate" and pending:
            if key is None or key not in pending:
                key = data.draw(st.sampled_from(pending), label="pod")
            h = self.cache.holding(key)
            if h is not None and h.assignment is not None and not h.durable:
                self.put_pod(annotated(self.pods[key], h.assignment))
        elif op == "bind" and pending:
            if key is None or key not in pending:
                key = data.draw(st.sampled_from(pending), label="pod")
            p = self.pods[key]
            node = p["metadata"]["annotations"].get("gts.dev/node")
            released = {k for k, _, _ in self.cache.stale_annotations()}
            if node and key not in released:  # the extender binds what it holds, annotated
                q = copy.deepcopy(p)
                q["spec"]["nodeName"] = node
                self.put_pod(q)
                if data.draw(st.booleans(), label="confirm"):
                    self.cache.confirm(key)
                    self.model.confirm(key)
        elif op == "finish" and self.pods:
            key = data.draw(st.sampled_from(sorted(self.pods)), label="pod")
            q = copy.deepcopy(self.pods[key])
            q["status"]["phase"] = data.draw(st.sampled_from(["Succeeded", "Failed"]))
            if data.draw(st.booleans(), label="selector"):
                # With the non-terminal field selector the watch says DELETED instead.
                self.emit("pod", "DELETED", q)
                del self.pods[key]
            else:
                self.put_pod(q)
        elif op == "delete" and self.pods:
            key = data.draw(st.sampled_from(sorted(self.pods)), label="pod")
            self.emit("pod", "DELETED", self.pods.pop(key))
        elif op == "expire":
            self.clock.advance(data.draw(st.sampled_from([1.0, TTL / 2, TTL])))
            self.cache.expire()
            self.model.expire()
            if data.draw(st.booleans(), label="clear now"):
                self.clear_stale()
        elif op == "forget" and pending:
            key = data.draw(st.sampled_from(pending), label="pod")
            self.cache.forget(key)
            self.model.forget(key)
            if data.draw(st.booleans(), label="clear now"):
                self.clear_stale()
        elif op == "foreign" and self.nodes:
            self.n += 1
            node = data.draw(st.sampled_from(sorted(self.nodes)), label="node")
            self.put_pod(pod_obj(f"f{self.n}", gpus=data.draw(st.integers(1, 2)), node=node))
        elif op == "deliver":
            self.deliver(data.draw(st.integers(1, 4), label="count"))
        elif op == "clear":  # the service removes released annotations a little later
            self.clear_stale()
        elif op == "relist":
            self.deliver(len(self.queue))
            replace_all(self.cache, list(self.nodes.values()), list(self.pods.values()))
            self.model.relist(list(self.nodes.values()), list(self.pods.values()))
            self.mix_exact = True

    def clear_stale(self) -> None:
        # What the service does after a rollback or an expiry: remove the annotations.
        for key, _uid, _ours in self.cache.stale_annotations():
            p = self.pods.get(key)
            if p is not None and p["metadata"]["annotations"].get("gts.dev/node"):
                q = copy.deepcopy(p)
                for k in cleared_assignment_annotations():
                    q["metadata"]["annotations"].pop(k, None)
                self.put_pod(q)

    def restart_matches(self, adopt: bool = False) -> None:
        """Restart: a cache listed afresh matches the live one; with `adopt` the world goes on
        with it (the extender restarted), its model rebuilt from the API objects alone."""
        self.clear_stale()  # what the service does before it goes down, or the new one does
        self.deliver(len(self.queue))
        fresh = ClusterCache(assume_ttl_s=TTL, clock=self.clock, signer=SIGNER)
        replace_all(fresh, list(self.nodes.values()), list(self.pods.values()))
        model = Model(self.clock)
        model.relist(list(self.nodes.values()), list(self.pods.values()))
        model.check(fresh)
        self.model.check(self.cache)
        check_invariants(self.cache)
        check_invariants(fresh)
        if self.mix_exact:
            assert same_mix(fresh.typical_workload, self.cache.typical_workload)
        # The only legitimate difference: assumptions whose annotation is not in the API yet.
        assert same_state(fresh.snapshot, durable_snapshot(self.cache))
        if not in_memory_keys(self.cache):
            assert same_state(fresh.snapshot, self.cache.snapshot)
        else:
            lost = set(in_memory_keys(self.cache))
            assert set(fresh.snapshot.holdings) <= set(self.cache.snapshot.holdings) | {
                k for k in fresh.snapshot.holdings if k not in lost}
            assert not lost & set(fresh.snapshot.holdings)
        if adopt:
            self.cache, self.model, self.mix_exact = fresh, model, True


# ---- independent oracle -------------------------------------------------------------------

@dataclass
class Claim:
    """Our assignment held for a pod the API does not show bound with it (yet)."""

    a: Assignment
    deadline: float | None
    seen: bool  # its annotation was seen in the API (released into `stale`, not just dropped)


class Model:
    """What the cache must hold, written from the rules in cache.py's docstring alone.

    It shares no code with the cache's placement: per node, per GPU, the milli used is summed
    straight from the pods' assignments (annotated pods by key, then in-memory assumptions by
    key, then other schedulers' pods on the lowest wholly free GPUs), a holding that does not
    fit is not counted. Fed the same calls as the cache: delivered events, assume, confirm,
    forget, expire, re-list.
    """

    def __init__(self, clock: HandClock) -> None:
        self.clock = clock
        self.gpus: dict[str, int] = {}  # node -> GPU count, as delivered
        self.pods: dict[str, dict[str, Any]] = {}  # key -> object, as delivered
        self.claims: dict[str, Claim] = {}
        self.stale: dict[str, Assignment] = {}

    def node(self, obj: dict[str, Any]) -> None:
        self.gpus[obj["metadata"]["name"]] = int(
            obj["status"]["allocatable"].get(GPU_RESOURCE, 0))

    def pod(self, obj: dict[str, Any], old: Claim | None) -> None:
        key = f"ns/{obj['metadata']['name']}"
        self.pods[key] = obj
        self.claims.pop(key, None)
        if obj["status"]["phase"] in ("Succeeded", "Failed"):
            self.stale.pop(key, None)
            return
        a = assignment_from_pod(obj)
        bound = obj["spec"].get("nodeName", "")
        if a is not None and bound and a.node != bound:
            a = None
        if a is not None and bound:
            self.stale.pop(key, None)  # held from the object itself
        elif a is not None:
            if self.stale.get(key) == a:  # released: ignored until removed
                if old is not None and not old.seen:
                    self.claims[key] = old  # a newer assumption of ours
                return
            self.stale.pop(key, None)
            deadline = (old.deadline if old is not None and old.a == a
                        else self.clock() + TTL)
            self.claims[key] = Claim(a, deadline, seen=True)
        else:
            self.stale.pop(key, None)
            if old is not None and not old.seen and bound in ("", old.a.node):
                self.claims[key] = old

    def deleted(self, key: str) -> None:
        self.pods.pop(key, None)
        self.claims.pop(key, None)
        self.stale.pop(key, None)

    def assume(self, a: Assignment) -> None:
        self.claims[a.pod] = Claim(a, self.clock() + TTL, seen=False)

    def confirm(self, key: str) -> None:
        if key in self.claims:
            self.claims[key].deadline = None

    def forget(self, key: str) -> None:
        c = self.claims.get(key)
        if c is not None and not (c.seen and c.deadline is None):  # confirmed and annotated
            self.release(key)

    def release(self, key: str) -> None:
        c = self.claims.pop(key)
        if c.seen:
            self.stale[key] = c.a

    def expire(self) -> None:
        for key in [k for k, c in self.claims.items()
                    if c.deadline is not None and c.deadline <= self.clock()]:
            self.release(key)

    def relist(self, nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        self.gpus = {}
        for n in nodes:
            self.node(n)
        old, self.claims, self.pods = self.claims, {}, {}
        self.stale = {k: a for k, a in self.stale.items()
                      if k in {f"ns/{p['metadata']['name']}" for p in pods}}
        for p in pods:
            self.pod(p, old.get(f"ns/{p['metadata']['name']}"))

    def used(self) -> tuple[dict[str, list[int]], dict[str, tuple[str, tuple[int, ...]]]]:
        """(node -> milli used per GPU, holding key -> (node, GPUs) of what is counted)."""
        ranked: list[tuple[int, str, str, Assignment | int]] = []
        for key, obj in self.pods.items():
            bound = obj["spec"].get("nodeName", "")
            if not bound or obj["status"]["phase"] in ("Succeeded", "Failed"):
                continue
            a = assignment_from_pod(obj)
            if a is not None and a.node == bound:
                ranked.append((0, key, bound, a))
            elif key not in self.claims:
                want = int(obj["spec"]["containers"][0]["resources"]["requests"].get(
                    GPU_RESOURCE, 0))
                if want:
                    ranked.append((2, key, bound, want))
        ranked += [(0 if c.seen else 1, k, c.a.node, c.a) for k, c in self.claims.items()]
        used = {n: [0] * g for n, g in self.gpus.items()}
        ours: dict[str, tuple[str, tuple[int, ...]]] = {}
        for _, key, node, what in sorted(ranked, key=lambda t: (t[0], t[1])):
            if node not in used:
                continue
            u = used[node]
            if isinstance(what, Assignment):
                if all(g < len(u) and u[g] + what.gpu_milli <= 1000 for g in what.gpus):
                    for g in what.gpus:
                        u[g] += what.gpu_milli
                    ours[key] = (node, what.gpus)
            else:  # lowest wholly free GPUs; short of them, the fullest-free shared ones
                free = [g for g in range(len(u)) if u[g] == 0][:what]
                partly = sorted((g for g in range(len(u)) if 0 < u[g] < 1000),
                                key=lambda g: (u[g], g))[: what - len(free)]
                ours[key] = (node, tuple(free))
                ours.update({f"{key}#gpu{g}": (node, (g,)) for g in partly})
                for g in free + partly:
                    u[g] = 1000
        return used, ours

    def check(self, cache: ClusterCache) -> None:
        """The cache's snapshot holds exactly what the model says, GPU by GPU."""
        used, ours = self.used()
        with cache.lock:
            snap = cache.snapshot
            assert snap.names == sorted(used)
            for i, name in enumerate(snap.names):
                assert int(snap.gpu_count[i]) == len(used[name]), name
                got = [1000 - int(m) for m in snap.milli_free[i, : len(used[name])]]
                assert got == used[name], (name, got, used[name])
            assert {k: (a.node, a.gpus) for k, a in snap.holdings.items()} == ours


def same_mix(a: TypicalWorkload, b: TypicalWorkload) -> bool:
    return (a.version, dict(a._count)) == (b.version, dict(b._count))


def test_mix_is_rebuilt_from_the_pods_in_creation_order() -> None:
    """The same pods listed in any order give the same mix; a pod is counted once, when it
    first appears (CPU-only pods too: the mix decides what they count for), and finished
    pods not at all."""
    pods = [pod_obj(f"p{i}", gpus=1 + i % 3, milli=0) for i in range(6)]
    pods += [pod_obj("s", milli=500), pod_obj("cpu"), pod_obj("done", gpus=8, phase="Failed")]
    for i, p in enumerate(pods):
        p["metadata"]["creationTimestamp"] = f"2025-01-01T00:00:0{i // 2}Z"  # ties by key
    caches = []
    for order in (pods, pods[::-1], pods[3:] + pods[:3]):
        c = new_cache(HandClock())
        replace_all(c, [node_obj("n0", 8)], copy.deepcopy(order))
        caches.append(c)
    assert all(same_mix(c.typical_workload, caches[0].typical_workload) for c in caches)
    assert caches[0].typical_workload.version == 8
    # The watch, seeing them in creation order, builds the same mix; updates count nothing.
    live = new_cache(HandClock())
    replace_all(live, [node_obj("n0", 8)], [])
    order = sorted(pods, key=lambda p: (p["metadata"]["creationTimestamp"],
                                        f"ns/{p['metadata']['name']}"))
    for p in order + order:
        live.upsert_pod(p)
    assert same_mix(live.typical_workload, caches[0].typical_workload)
    assert not same_mix(live.typical_workload, new_cache(HandClock()).typical_workload)
    # In another order within a creation second, a restart can only guess (it sorts by key).
    c = new_cache(HandClock())
    replace_all(c, [node_obj("n0", 8)], [])
    for p in pods[::-1]:
        c.upsert_pod(p)
    assert c.typical_workload.version == 8
    assert not same_mix(c.typical_workload, caches[0].typical_workload)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_restart_rebuilds_the_same_cache(data: st.DataObject) -> None:
    world = World()
    steps = data.draw(st.integers(1, 50), label="steps")
    for _ in range(steps):
        world.step(data)
        world.model.check(world.cache)
        if data.draw(st.integers(0, 9), label="restart?") == 0:
            world.restart_matches(adopt=data.draw(st.booleans(), label="adopt"))
    world.restart_matches()


def test_restart_with_every_kind_of_holding() -> None:
    """A fixed history touching each rule once, so a regression shows without hypothesis."""
    world = World()
    bound = pod_obj("b", gpus=2)
    world.put_pod(bound)
    world.put_pod(pod_obj("u", gpus=1))
    world.put_pod(pod_obj("m", gpus=1))
    world.put_pod(pod_obj("f", gpus=1, node="n1"))
    world.deliver(len(world.queue))
    ab, au, am = whole("b", "n0", (0, 1)), whole("u", "n0", (2,)), whole("m", "n1", (3,))
    for a in (ab, au, am):
        world.assume(a)
    world.put_pod(annotated(world.pods["ns/b"], ab))
    world.put_pod(annotated(world.pods["ns/u"], au))
    q = copy.deepcopy(world.pods["ns/b"])
    q["spec"]["nodeName"] = "n0"
    world.put_pod(q)
    world.restart_matches()
    assert world.mix_exact  # b, u, m, f; each counted once:
    assert world.cache.typical_workload.version == 4
    assert in_memory_keys(world.cache) == ["ns/m"]
    assert set(world.cache.snapshot.holdings) == {"ns/b", "ns/u", "ns/m", "ns/f"}


def test_holding_that_moves_to_an_earlier_node_is_held_there() -> None:
    """Found by the model: p1 assumed on n0 and annotated, forgotten before the annotation was
    seen, re-assumed on n1; the late annotation moves its holding back to n0. Placing it on n0
    before releasing it on n1 failed, so it was held nowhere and GPU 0 of n0 looked free."""
    world = World()
    world.put_pod(pod_obj("p1", gpus=1))
    world.deliver(len(world.queue))
    world.assume(whole("p1", "n0", (0,)))
    world.put_pod(annotated(world.pods["ns/p1"], whole("p1", "n0", (0,))))
    assert world.cache.forget("ns/p1")
    world.model.forget("ns/p1")
    world.assume(whole("p1", "n1", (1,)))
    world.deliver(len(world.queue))
    world.model.check(world.cache)
    assert world.cache.snapshot.holdings["ns/p1"].node == "n0"
    world.restart_matches()


# ---- fuzzing with mutated real objects ----------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True)
    | st.text(max_size=12) | st.sampled_from(["8", "1Gi", "250m", "-1", "1e40", "0,1", "n0"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=6,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def mutate(obj: Any, data: st.DataObject) -> Any:
    obj = copy.deepcopy(obj)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = _paths(obj)
        path = data.draw(st.sampled_from(paths), label="path")
        if not path:
            return data.draw(JSON, label="whole")
        parent = obj
        for p in path[:-1]:
            parent = parent[p]
        if data.draw(st.booleans(), label="delete") and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(JSON, label="value")
    return obj


def real_objects(shared: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes: list[dict[str, Any]] = []
    pods: list[dict[str, Any]] = []
    for f in sorted((shared / "fixtures" / "extender").glob("*/all/*.request.json")):
        body = json.loads(f.read_text())
        nodes += (body.get("Nodes") or {}).get("items") or []
        if body.get("Pod"):
            pods.append(body["Pod"])
    # Pods in the shapes the cache cares most about: annotated, bound, foreign, shares.
    a = Assignment(pod="default/x", node="gpu-node-1", gpus=(1, 2), cpu_milli=100)
    rich = annotated({**copy.deepcopy(pods[0]), "metadata": {
        **pods[0]["metadata"], "name": "x", "annotations": {}}}, a)
    rich["metadata"]["uid"] = pods[0]["metadata"]["uid"]
    rich["metadata"]["annotations"].update(assignment_annotations(
        a, SIGNER, uid=rich["metadata"]["uid"]))
    bound = copy.deepcopy(rich)
    bound["spec"]["nodeName"] = "gpu-node-1"
    foreign = copy.deepcopy(pods[0])
    foreign["metadata"]["name"] = "foreign"
    foreign["spec"]["nodeName"] = "gpu-node-3"
    return nodes, [*pods, rich, bound, foreign]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_objects_never_crash_or_corrupt(shared: Path, data: st.DataObject) -> None:
    nodes, pods = real_objects(shared)
    cache = new_cache()
    replace_all(cache, nodes, pods[-2:])
    check_invariants(cache)
    for _ in range(data.draw(st.integers(1, 4), label="rounds")):
        if data.draw(st.booleans(), label="node?"):
            obj = mutate(data.draw(st.sampled_from(nodes), label="node"), data)
            fn: Callable[[dict[str, Any]], str | None] = cache.upsert_node
        else:
            obj = mutate(data.draw(st.sampled_from(pods), label="pod"), data)
            fn = (cache.delete_pod if data.draw(st.integers(0, 4), label="del") == 0
                  else cache.upsert_pod)
        try:
            err = fn(obj)
        except ValueError as e:
            # Rejected with a message (NodeParseError, RequestError): nothing to key it by.
            assert str(e)
        else:
            assert err is None or (isinstance(err, str) and err)
        check_invariants(cache)
    # Every node the cache kept is one that parses, and every error names a node.
    assert all(isinstance(v, str) and v for v in cache.errors.values())


def test_snapshot_same_state_sees_differences() -> None:
    """The comparison the restart test relies on does notice a different holding."""
    a, b = new_cache(), new_cache()
    for c in (a, b):
        replace_all(c, [node_obj("n", 4)], [])
    a.assume(whole("p", "n", (0,)))
    b.assume(whole("p", "n", (1,)))
    assert not same_state(a.snapshot, b.snapshot)
    assert isinstance(durable_snapshot(a), Snapshot)
    assert np.array_equal(durable_snapshot(a).free_mask, [15])


def test_concurrent_watch_events_and_assumptions() -> None:
    """Watch threads and bind threads at once: no exception, invariants hold, nothing leaks."""
    cache = new_cache()
    replace_all(cache, [node_obj(f"n{i}", 8) for i in range(4)], [])
    errors: list[BaseException] = []

    def binder(t: int) -> None:
        try:
            for i in range(150):
                key = f"t{t}-{i}"
                a = whole(key, f"n{(t + i) % 4}", ((t * 2 + i) % 8,))
                try:
                    cache.assume(a)
                except AllocationError:
                    continue
                if i % 3:
                    cache.forget(a.pod)
                else:
                    p = annotated(pod_obj(key, gpus=1, node=a.node), a)
                    cache.upsert_pod(p)
                    cache.delete_pod(p)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def watcher() -> None:
        try:
            for i in range(60):
                cache.upsert_node(node_obj(f"n{i % 4}", 8, labels={"x": str(i)}))
                cache.upsert_node(node_obj("extra", 2 + i % 3))
                cache.upsert_pod(pod_obj(f"f{i}", gpus=1, node="extra"))
                cache.delete_pod(pod_obj(f"f{i}"))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=binder, args=(t,)) for t in range(3)]
    threads.append(threading.Thread(target=watcher))
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert errors == []
    check_invariants(cache)
    assert cache.snapshot.holdings == {}  # every pod was forgotten or deleted


# ---- node bursts ----------------------------------------------------------------------------

def test_a_burst_of_node_events_costs_one_rebuild_on_the_next_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = new_cache()
    replace_all(cache, [node_obj(f"n{i:02d}", 4) for i in range(10)], [])
    calls: list[set[str] | None] = []
    rebuild = cache._rebuild

    def counted(changed: set[str] | None = None) -> None:
        calls.append(None if changed is None else set(changed))
        rebuild(changed)

    monkeypatch.setattr(cache, "_rebuild", counted)
    for i in range(10, 40):  # a scale-up of 30 nodes and a scale-down of 5
        assert cache.upsert_node(node_obj(f"n{i:02d}", 8)) is None
    for i in range(5):
        cache.delete_node(f"n{i:02d}")
    assert calls == []
    names = cache.snapshot.names
    assert calls == [{f"n{i:02d}" for i in (*range(5), *range(10, 40))}]
    assert names == [f"n{i:02d}" for i in range(5, 40)]
    assert cache.snapshot.names == names and len(calls) == 1  # nothing left to apply


def test_node_events_held_back_give_the_state_of_applying_each_at_once() -> None:
    # Pods bound to nodes that come, change and go between pod events: the deferred cache
    # must end where a cache reading its snapshot after every event ends.
    p1, p2, p3 = whole("p1", "b", (0, 1)), whole("p2", "c", (2,)), whole("p3", "a", (3,))
    events: list[tuple[str, Any]] = [
        ("node", node_obj("a", 4)), ("node", node_obj("b", 4)),
        ("pod", annotated(pod_obj("p1", gpus=2, node="b"), p1)),
        ("pod", annotated(pod_obj("p3", gpus=1, node="a"), p3)),
        ("node", node_obj("c", 4)),
        ("pod", annotated(pod_obj("p2", gpus=1, node="c"), p2)),
        ("node", node_obj("b", 8)), ("delete", "a"), ("node", node_obj("d", 2)),
        ("delete", "c"), ("node", node_obj("c", 4)),
    ]
    eager, deferred = new_cache(), new_cache()
    for cache, read_each in ((eager, True), (deferred, False)):
        for kind, obj in events:
            if kind == "node":
                cache.upsert_node(obj)
            elif kind == "delete":
                cache.delete_node(obj)
            else:
                cache.upsert_pod(obj)
            if read_each:
                cache.snapshot  # noqa: B018 - apply now
    assert same_state(eager.snapshot, deferred.snapshot)
    assert eager.snapshot.holdings == deferred.snapshot.holdings
    assert set(deferred.snapshot.holdings) == {"ns/p1", "ns/p2"}  # p3's node is gone
    assert eager.pod_errors == deferred.pod_errors


_NODE_EVENT = st.one_of(
    st.tuples(st.just("node"), st.sampled_from("abcd"), st.sampled_from((2, 4, 8))),
    st.tuples(st.just("delete"), st.sampled_from("abcd"), st.just(0)),
    st.tuples(st.just("pod"), st.sampled_from(("p0", "p1", "p2", "p3")),
              st.tuples(st.sampled_from("abcd"), st.sampled_from(((0,), (1,), (0, 1), (3,))))),
    st.tuples(st.just("gone"), st.sampled_from(("p0", "p1", "p2", "p3")), st.just(0)),
    st.tuples(st.just("read"), st.just(""), st.just(0)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_NODE_EVENT, max_size=25))
# A node that comes and goes between reads: its conflict error must not outlive it.
@example([("pod", "p0", ("a", (3,))), ("node", "a", 2), ("delete", "a", 0)])
# A pod deleted while its node's event is held back: the conflict it had must go with it.
@example([("pod", "p0", ("a", (0,))), ("pod", "p3", ("a", (0,))), ("node", "a", 2),
          ("gone", "p3", 0)])
def test_held_back_node_events_never_change_the_state(events: list[tuple[str, str, Any]]) -> None:
    # Any interleaving of node and pod events, with reads at random points: the cache that
    # holds node events back ends exactly where one that applies each at once ends.
    eager, deferred = new_cache(), new_cache()
    for cache, read_each in ((eager, True), (deferred, False)):
        for kind, name, arg in events:
            if kind == "node":
                cache.upsert_node(node_obj(name, arg))
            elif kind == "delete":
                cache.delete_node(name)
            elif kind == "pod":
                node, gpus = arg
                cache.upsert_pod(annotated(pod_obj(name, gpus=len(gpus), node=node),
                                           whole(name, node, gpus)))
            elif kind == "gone":
                cache.delete_pod(pod_obj(name))
            else:
                cache.snapshot  # noqa: B018 - a read in between
            if read_each:
                cache.snapshot  # noqa: B018 - apply now
    assert same_state(eager.snapshot, deferred.snapshot)
    assert eager.snapshot.holdings == deferred.snapshot.holdings
    assert eager.pod_errors == deferred.pod_errors
    assert eager.overcommitted == deferred.overcommitted
    check_invariants(deferred)
