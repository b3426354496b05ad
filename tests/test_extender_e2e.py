"""End to end on 127.0.0.1: kube-scheduler's calls -> extender -> Kubernetes API double.

The extender runs as in a cluster (ClusterCache fed by KubeSource's list+watch, KubeBinder
writing annotations and Bindings) against tests/kubeapi_double.py; this file plays
kube-scheduler over keep-alive HTTP.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from cluster_cache_probes import in_memory_keys
from extender_fakes import KEY, ExtenderClient, check_invariants, node_obj, pod_obj
from kubeapi_double import KubeAPIDouble
from kubernetes import client as k8s
from snapshot_equality import same_state

from scheduler.cluster.cache import ClusterCache
from scheduler.cluster.kube_binder import KubeBinder
from scheduler.cluster.kube_expiry import AssumptionExpiry
from scheduler.cluster.kube_watch import KubeSource
from scheduler.constants import ASSIGNED_NODE_ANNOTATION
from scheduler.extender.runtime import Extender, build
from scheduler.extender.service import ServiceOptions
from scheduler.podcodec.assignment import assignment_from_pod, assignment_signature_ok
from scheduler.podcodec.signing import Signer

NODES = [("h100-0", "dgx-h100"), ("h100-1", "dgx-h100"), ("h100-2", "dgx-h100"),
         ("pcie-0", "pcie-8gpu-2socket")]
NAMES = [n for n, _ in NODES]


@dataclass
class Stack:
    api: KubeAPIDouble
    api_client: Any
    cache: ClusterCache
    source: KubeSource
    expiry: AssumptionExpiry
    ext: Extender
    client: ExtenderClient

    def stop(self) -> None:
        self.client.close()
        self.ext.stop()
        self.expiry.stop()
        self.source.stop()


def start(api: KubeAPIDouble, gang_timeout: float = 20.0,
          request_timeout: float = 2.0) -> Stack:
    conf = k8s.Configuration()
    conf.host = api.url
    api_client = k8s.ApiClient(conf)
    signer = Signer(KEY)
    cache = ClusterCache(assume_ttl_s=gang_timeout + 30, signer=signer)
    binder = KubeBinder(api_client, request_timeout_s=request_timeout)
    source = KubeSource(api_client, cache, backoff_initial_s=0.05).start()
    expiry = AssumptionExpiry(cache, binder).start()
    assert source.wait_synced(10)
    opts = ServiceOptions(gang_timeout_s=gang_timeout, gang_bind_grace_s=2.0,
                          expire_assumptions=False)
    ext = build(cache, binder, signer, opts).start()
    return Stack(api, api_client, cache, source, expiry, ext, ExtenderClient(ext.url))


@pytest.fixture
def api() -> Iterator[KubeAPIDouble]:
    with KubeAPIDouble() as a:
        for name, topo in NODES:
            a.put_node(node_obj(name, 8, topo))
        yield a


@pytest.fixture
def stack(api: KubeAPIDouble) -> Iterator[Stack]:
    s = start(api)
    yield s
    s.stop()


def create(api: KubeAPIDouble, pod: dict[str, Any]) -> dict[str, Any]:
    """The pod as stored by the API (what kube-scheduler would then send)."""
    return api.put_pod(pod)


def api_assignments(api: KubeAPIDouble) -> dict[str, Any]:
    """pod key -> Assignment read back from the API objects of bound pods."""
    out = {}
    with api.cond:
        pods = list(api.pods.values())
    for p in pods:
        if p["spec"].get("nodeName"):
            a = assignment_from_pod(p)
            assert a is not None and a.node == p["spec"]["nodeName"]
            assert assignment_signature_ok(p, a, Signer(KEY))
            out[a.pod] = a
    return out


def settled(s: Stack) -> bool:
    """The cache has caught up with the API: nothing is held only in memory."""
    return not in_memory_keys(s.cache)


def no_gpu_twice(assignments: dict[str, Any]) -> None:
    used: dict[tuple[str, int], int] = {}
    for a in assignments.values():
        for g in a.gpus:
            used[(a.node, g)] = used.get((a.node, g), 0) + a.gpu_milli
    assert all(v <= 1000 for v in used.values()), used


def test_stream_of_pods_lands_on_best_gpus_and_the_api_agrees(stack: Stack) -> None:
    rng = random.Random(7)
    bound = {}
    for i in range(30):
        kind = rng.choice(["g1", "g2", "g4", "g8", "share"])
        pod = (pod_obj(f"s{i}", gpus=0, milli=rng.choice([250, 500])) if kind == "share"
               else pod_obj(f"p{i}", gpus=int(kind[1:])))
        stored = create(stack.api, pod)
        node, err = stack.client.schedule(stored, NAMES)
        if err:
            assert node == "" or "no longer fits" in err
            continue
        bound[f"default/{stored['metadata']['name']}"] = node
    # The stream asks for about twice the cluster's GPUs; how many fit depends on the
    # policy's packing, but a stream that bound under a third would exercise little.
    assert len(bound) >= 10
    in_api = api_assignments(stack.api)
    assert {k: a.node for k, a in in_api.items()} == bound
    no_gpu_twice(in_api)
    assert stack.api.wait_for(lambda: settled(stack))
    with stack.cache.lock:
        snap = stack.cache.snapshot
        assert {k: snap.holdings[k] for k in bound} == in_api
        check_invariants(snap)
    # Multi-GPU pods on the NVSwitch nodes got sets of quality 1.0 (any k-set there is best);
    # on the PCIe node a 2-GPU pod never straddles the two sockets while a same-switch pair
    # was free (the policy's choice, checked here only through what the API recorded).
    for a in in_api.values():
        assert len(set(a.gpus)) == len(a.gpus)


def _members_seen(stack_cache: ClusterCache, gang: str, n: int) -> bool:
    v = stack_cache.gang_view(gang)
    return v is not None and len(v.members) == n


def test_gang_waits_for_its_last_member_then_binds_together_through_the_api(
        stack: Stack) -> None:
    members = [create(stack.api, pod_obj(f"w{i}", gpus=4, gang="train", min_member=4))
               for i in range(3)]
    assert stack.api.wait_for(lambda: _members_seen(stack.cache, "default/train", 3))
    for m in members:
        node, err = stack.client.schedule(m, NAMES)
        assert node == "" and err == "no node passed filter"
    with stack.cache.lock:
        assert stack.cache.snapshot.holdings == {}
    members.append(create(stack.api, pod_obj("w3", gpus=4, gang="train", min_member=4)))
    assert stack.api.wait_for(lambda: _members_seen(stack.cache, "default/train", 4))
    clients = [ExtenderClient(stack.ext.url) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = [f.result(timeout=30) for f in
                   [pool.submit(c.schedule, m, NAMES) for c, m in zip(clients, members,
                                                                      strict=True)]]
    assert [e for _, e in results] == ["", "", "", ""]
    in_api = api_assignments(stack.api)
    assert sorted(in_api) == [f"default/w{i}" for i in range(4)]
    assert len({a.node for a in in_api.values()}) == 2  # 16 GPUs packed on two nodes
    no_gpu_twice(in_api)
    for c in clients:
        c.close()


def test_gang_that_never_completes_holds_nothing_after_the_timeout(api: KubeAPIDouble) -> None:
    s = start(api, gang_timeout=0.8)
    try:
        members = [create(api, pod_obj(f"w{i}", gpus=8, gang="half", min_member=4))
                   for i in range(4)]
        assert api.wait_for(lambda: _members_seen(s.cache, "default/half", 4))
        members = members[:2]  # the other two exist but never reach filter
        clients = [ExtenderClient(s.ext.url) for _ in members]
        with ThreadPoolExecutor(2) as pool:
            errs = [f.result(timeout=30)[1] for f in
                    [pool.submit(c.schedule, m, NAMES) for c, m in zip(clients, members,
                                                                       strict=True)]]
        assert all("only 2 of 4 members reached bind" in e for e in errs)
        assert api_assignments(api) == {}
        assert all(ASSIGNED_NODE_ANNOTATION not in (p["metadata"].get("annotations") or {})
                   for p in api.pods.values())
        with s.cache.lock:
            assert s.cache.snapshot.holdings == {}
        assert s.ext.service.gangs.reserved_gpus() == 0
        # Backing off: a retry right after the timeout reserves nothing.
        assert clients[0].schedule(members[0], NAMES) == ("", "no node passed filter")
        with s.cache.lock:
            assert s.cache.snapshot.holdings == {}
        for c in clients:
            c.close()
    finally:
        s.stop()


def test_restart_rebuilds_the_same_holdings_and_decisions(api: KubeAPIDouble) -> None:
    s1 = start(api)
    for i in range(12):
        pod = create(api, pod_obj(f"p{i}", gpus=[1, 2, 4][i % 3]) if i % 4 else
                     pod_obj(f"s{i}", gpus=0, milli=300))
        s1.client.schedule(pod, NAMES)
    assert api.wait_for(lambda: settled(s1))
    probe = pod_obj("probe", gpus=2)
    doc = {"Pod": probe, "Nodes": None, "NodeNames": NAMES}
    before_filter = s1.client.post("filter", doc)
    with s1.cache.lock:
        before = s1.cache.snapshot.copy()
    s1.stop()  # the extender dies; the API keeps what was written
    s2 = start(api)
    try:
        with s2.cache.lock:
            assert same_state(s2.cache.snapshot, before)
        assert s2.client.post("filter", doc) == before_filter
        # New pods keep landing without touching anything held before the restart.
        _, err = s2.client.schedule(create(api, pod_obj("after", gpus=2)), NAMES)
        assert err == ""
        no_gpu_twice(api_assignments(api))
    finally:
        s2.stop()


def test_many_concurrent_binds_never_double_assign(stack: Stack) -> None:
    pods = [create(stack.api, pod_obj(f"c{i}", gpus=2)) for i in range(24)]
    # kube-scheduler filtered them all while the cluster was empty; now they bind at once.
    for p in pods:
        stack.client.post("filter", {"Pod": p, "NodeNames": NAMES})
    targets = [NAMES[i % 2] for i in range(len(pods))]  # 12 x 2 GPUs on each of two nodes
    clients = [ExtenderClient(stack.ext.url) for _ in range(8)]
    lock = threading.Lock()
    results: list[str] = []

    def worker(k: int) -> None:
        for i in range(k, len(pods), len(clients)):
            err = clients[k].bind(pods[i], targets[i])
            with lock:
                results.append(err)

    with ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(worker, range(len(clients))))
    ok = [e for e in results if not e]
    assert len(ok) == 8  # 4 pods of 2 GPUs fit on each of the two 8-GPU nodes
    assert all("no longer fits" in e for e in results if e)
    in_api = api_assignments(stack.api)
    assert len(in_api) == 8
    no_gpu_twice(in_api)
    assert stack.api.wait_for(lambda: settled(stack))
    with stack.cache.lock:
        check_invariants(stack.cache.snapshot)
    for c in clients:
        c.close()


def _clean(s: Stack, api: KubeAPIDouble, name: str) -> bool:
    """Nothing held for the pod, and no assignment annotation left on it."""
    p = api.get_pod("default", name)
    with s.cache.lock:
        held = f"default/{name}" in s.cache.snapshot.holdings
    return (not held and p is not None
            and ASSIGNED_NODE_ANNOTATION not in (p["metadata"].get("annotations") or {}))


@pytest.mark.parametrize(("fault", "needle"), [
    ({"method": "POST", "path": r"/binding$", "status": 409}, "Conflict"),
    ({"method": "POST", "path": r"/binding$", "status": 500}, "500"),
    ({"method": "POST", "path": r"/binding$", "status": 404}, "NotFound"),
])
def test_api_failures_roll_back_and_kube_scheduler_can_retry(
        api: KubeAPIDouble, fault: dict[str, Any], needle: str) -> None:
    s = start(api, request_timeout=1.0)
    try:
        pod = create(api, pod_obj("victim", gpus=4))
        api.inject(fault["method"], fault["path"], status=fault["status"])
        _, err = s.client.schedule(pod, NAMES)
        assert needle in err and "released" in err
        assert api.wait_for(lambda: _clean(s, api, "victim"), 10)
        _, err2 = s.client.schedule(pod, NAMES)
        assert err2 == "", err2
        assert "default/victim" in api_assignments(api)
    finally:
        s.stop()


def test_bind_is_one_write_and_needs_no_pod_patch(api: KubeAPIDouble) -> None:
    # The Binding carries the signed assignment; the API copies it onto the pod in the write
    # that sets nodeName. Every PATCH of the pod failing must not matter.
    s = start(api, request_timeout=0.5)
    try:
        pod = create(api, pod_obj("one", gpus=4))
        api.inject("PATCH", r"/pods/one$", status=500)
        _, err = s.client.schedule(pod, NAMES)
        assert err == "", err
        assert "default/one" in api_assignments(api)
        assert api.wait_for(lambda: settled(s))
    finally:
        s.stop()


def test_timed_out_binding_keeps_the_signed_assignment_it_may_still_need(
        api: KubeAPIDouble) -> None:
    s = start(api, request_timeout=0.5)
    try:
        pod = create(api, pod_obj("late", gpus=4))
        api.inject("POST", r"/late/binding$", delay_s=1.5)
        node, err = s.client.schedule(pod, NAMES)
        assert "timed out" in err and "stay reserved" in err
        # The Binding lands after the client gave up: the pod runs with its signed assignment,
        # and the cache holds exactly that.
        assert api.wait_for(lambda: "default/late" in api_assignments(api))
        a = api_assignments(api)["default/late"]
        assert a.node == node
        assert api.wait_for(lambda: settled(s))
        with s.cache.lock:
            assert s.cache.snapshot.holdings["default/late"] == a
    finally:
        s.stop()


def test_pod_deleted_before_bind_fails_cleanly(stack: Stack) -> None:
    pod = create(stack.api, pod_obj("gone", gpus=2))
    stack.client.post("filter", {"Pod": pod, "NodeNames": NAMES})
    stack.api.delete_pod("default", "gone")
    err = stack.client.bind(pod, NAMES[0])
    assert "NotFound" in err or "404" in err
    with stack.cache.lock:
        assert "default/gone" not in stack.cache.snapshot.holdings


def test_concurrent_binds_of_one_pod_leave_it_bound_with_its_signed_assignment(
        api: KubeAPIDouble) -> None:
    # Issue 8: the losing bind's 409 rollback used to clear the winner's annotations, so the
    # pod ended bound without a signed assignment (and the node agent refused it).
    s = start(api, request_timeout=2.0)
    try:
        for r in range(5):
            pod = create(api, pod_obj(f"race{r}", gpus=2))
            names = s.client.post("filter", {"Pod": pod, "NodeNames": NAMES})["NodeNames"]
            node = names[0]
            api.inject("POST", rf"/pods/race{r}/binding$", delay_s=0.2)  # slow first write
            clients = [ExtenderClient(s.ext.url) for _ in range(4)]
            with ThreadPoolExecutor(4) as pool:
                errors = list(pool.map(lambda c, p=pod, n=node: c.bind(p, n), clients))
            for c in clients:
                c.close()
            stored = api.get_pod("default", f"race{r}")
            assert stored is not None and stored["spec"]["nodeName"] == node
            assert api.wait_for(lambda r=r: ASSIGNED_NODE_ANNOTATION in (
                api.get_pod("default", f"race{r}") or {})["metadata"].get("annotations", {}),
                2.0), "bound without its assignment"
            assert f"default/race{r}" in api_assignments(api)  # signed, and it verifies
            assert errors == ["", "", "", ""]
        assert api.wait_for(lambda: settled(s))
        no_gpu_twice(api_assignments(api))
    finally:
        s.stop()
