"""The Kubernetes edge against tests/kubeapi_double.py: list+watch, 410, reconnects, writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cluster_cache_probes import in_memory_keys, node_index
from hand_clock import HandClock
from kubeapi_double import KubeAPIDouble
from kubernetes import client as k8s
from pod_annotation_patch import annotate
from snapshot_equality import same_state

from scheduler.cluster.cache import ClusterCache
from scheduler.cluster.kube_binder import KubeBinder
from scheduler.cluster.kube_errors import ApiError, Conflict, NotFound, Timeout
from scheduler.cluster.kube_expiry import AssumptionExpiry
from scheduler.cluster.kube_watch import KubeSource
from scheduler.constants import ASSIGNED_NODE_ANNOTATION, GPU_RESOURCE
from scheduler.contract.assignment import Assignment
from scheduler.podcodec.assignment import assignment_annotations
from scheduler.podcodec.signing import Signer

SIGNER = Signer(b"test-key-0123456789abcdef")


def node_obj(name: str, gpus: int = 4) -> dict[str, Any]:
    alloc = {"cpu": "32", "memory": "256Gi", GPU_RESOURCE: str(gpus)}
    return {"metadata": {"name": name, "labels": {}}, "spec": {},
            "status": {"allocatable": alloc, "capacity": dict(alloc)}}


def pod_obj(name: str, gpus: int = 1, node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "resources": {
        "requests": {"cpu": "1", GPU_RESOURCE: str(gpus)}}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": "default", "annotations": {}},
            "spec": spec, "status": {"phase": "Pending"}}


def api_client(api: KubeAPIDouble) -> k8s.ApiClient:
    cfg = k8s.Configuration()
    cfg.host = api.url
    return k8s.ApiClient(cfg)


@pytest.fixture
def api() -> Iterator[KubeAPIDouble]:
    with KubeAPIDouble() as server:
        yield server


@contextmanager
def watching(api: KubeAPIDouble, cache: ClusterCache, **kw: Any) -> Iterator[KubeSource]:
    """A KubeSource synced from `api` into `cache`, stopped on the way out."""
    # These tests count the node and pod lists and watches; the PodGroup watch has its own
    # (tests/test_cluster_gang_members.py).
    kw.setdefault("watch_podgroups", False)
    src = KubeSource(api_client(api), cache, backoff_initial_s=0.02, backoff_max_s=0.2, **kw)
    src.start()
    try:
        assert src.wait_synced(10)
        assert api.watch_count >= 2  # both watches open: a change from now on is not missed
        yield src
    finally:
        src.stop()


def held(cache: ClusterCache) -> dict[str, tuple[str, tuple[int, ...]]]:
    with cache.lock:
        return {k: (a.node, a.gpus) for k, a in cache.snapshot.holdings.items()}


def bind_for_real(api: KubeAPIDouble, binder: KubeBinder, name: str, a: Assignment) -> None:
    uid = api.get_pod("default", name)["metadata"]["uid"]  # type: ignore[index]
    annotate(binder, "default", name, uid, assignment_annotations(a, SIGNER, uid=uid))
    binder.bind("default", name, uid, a.node)


def test_list_then_watch_events(api: KubeAPIDouble, shared: Path) -> None:
    body = json.loads((shared / "fixtures/extender/ncc-false/filter.request.json").read_text())
    for n in body["Nodes"]["items"]:
        api.put_node(n)
    api.put_pod(body["Pod"])
    cache = ClusterCache(signer=SIGNER)
    with watching(api, cache) as src:
        assert cache.snapshot.names == ["gpu-node-1", "gpu-node-2", "gpu-node-3"]
        binder = KubeBinder(api_client(api))
        a = Assignment(pod="default/ext-gpu-false", node="gpu-node-1", gpus=(5,),
                       cpu_milli=100)
        bind_for_real(api, binder, "ext-gpu-false", a)
        assert api.wait_for(lambda: held(cache) == {"default/ext-gpu-false": ("gpu-node-1",
                                                                             (5,))})
        api.put_node(node_obj("gpu-node-4", 2))
        assert api.wait_for(lambda: node_index(cache, "gpu-node-4") is not None)
        # A pod that finishes leaves the field-selected watch as DELETED: released.
        p = api.get_pod("default", "ext-gpu-false")
        assert p is not None
        p["status"]["phase"] = "Succeeded"
        api.put_pod(p)
        assert api.wait_for(lambda: held(cache) == {})
        api.delete_node("gpu-node-2")
        assert api.wait_for(lambda: node_index(cache, "gpu-node-2") is None)
        assert src.stats["lists"] == 2 and src.stats["relists_gone"] == 0
        assert src.stats["events"] >= 5


@pytest.mark.parametrize("gone_as_http", [False, True])
def test_410_gone_relists(gone_as_http: bool) -> None:
    with KubeAPIDouble(gone_as_http=gone_as_http) as api:
        api.put_node(node_obj("a"))
        api.put_node(node_obj("b"))
        api.put_pod(pod_obj("x", node="a"))
        cache = ClusterCache()
        with watching(api, cache) as src:
            assert set(held(cache)) == {"default/x"}
            # Changes the watch never delivers, then history is compacted and the
            # connections drop: resuming from the old version is 410 Gone.
            api.pause_watches()
            api.delete_pod("default", "x")
            api.put_pod(pod_obj("y", gpus=2, node="b"))
            api.delete_node("a")
            api.compact()
            api.drop_watches()
            api.pause_watches(False)
            assert api.wait_for(lambda: src.stats["relists_gone"] >= 2)
            assert api.wait_for(lambda: held(cache) == {"default/y": ("b", (0, 1))})
            assert api.wait_for(lambda: cache.snapshot.names == ["b"])
            # The new watch works from the re-listed version.
            api.put_pod(pod_obj("z", gpus=1, node="b"))
            assert api.wait_for(lambda: "default/z" in held(cache))


def test_dropped_connection_resumes_without_relist(api: KubeAPIDouble) -> None:
    api.put_node(node_obj("a", 8))
    cache = ClusterCache()
    with watching(api, cache) as src:
        watches = api.watch_count
        api.drop_watches()
        api.put_pod(pod_obj("x", gpus=3, node="a"))
        assert api.wait_for(lambda: "default/x" in held(cache))
        assert api.watch_count > watches
        assert src.stats["reconnects"] >= 1
        assert src.stats["lists"] == 2  # resumed from the last version, no re-list


def test_malformed_events_do_not_stop_the_watch(api: KubeAPIDouble) -> None:
    api.put_node(node_obj("a"))
    cache = ClusterCache()
    with watching(api, cache) as src:
        api.emit_raw("Pod", "ADDED", {"metadata": {"namespace": "default"}, "spec": {}})
        api.emit_raw("Pod", "MODIFIED", {"metadata": {"name": "odd", "annotations": []}})
        bad = node_obj("b")
        bad["status"]["allocatable"]["cpu"] = "many"
        api.put_node(bad)
        api.put_pod(pod_obj("x", node="a"))
        # Nodes and pods come on two watches: wait for the last event of each.
        assert api.wait_for(lambda: "default/x" in held(cache) and "b" in cache.errors)
        assert src.stats["bad_events"] == 1
        assert "status.allocatable.cpu" in cache.errors["b"]
        assert "default/odd" in cache.pod_errors
        assert src.stats["lists"] == 2 and src.stats["reconnects"] == 0


def test_reconnect_backs_off_on_server_errors(api: KubeAPIDouble) -> None:
    api.put_node(node_obj("a"))
    cache = ClusterCache()
    with watching(api, cache) as src:
        api.inject("GET", r"^/api/v1/pods$", status=500, times=3)
        api.drop_watches()
        api.put_pod(pod_obj("x", node="a"))
        assert api.wait_for(lambda: "default/x" in held(cache))
        assert src.stats["reconnects"] >= 4  # the drop, then three 500s


def test_bookmarks_and_server_timeouts_advance_the_version(api: KubeAPIDouble) -> None:
    api.put_node(node_obj("a"))
    cache = ClusterCache()
    with watching(api, cache, watch_timeout_s=1) as src:
        api.put_pod(pod_obj("other-kind-change", gpus=0))  # moves the global version
        rv = str(api.rv)

        def bookmarked() -> bool:
            # A bookmark reaches the watches open when it is sent, and these end every second:
            # one sent while the node watch reconnects is missed. The apiserver sends them
            # periodically; so does this test, until the node watch's version moved to rv
            # (no node changed since the list: only a BOOKMARK can move it).
            api.bookmark()
            return src.resource_version.get("nodes") == rv

        assert api.wait_for(bookmarked)
        watches = api.watch_count
        # timeoutSeconds ends the stream cleanly; the source watches again from its version.
        assert api.wait_for(lambda: api.watch_count >= watches + 2, timeout_s=6)
        assert src.stats["lists"] == 2 and src.stats["relists_gone"] == 0
        assert all(q.get("allowWatchBookmarks") == "true" for m, p, q, _ in api.requests
                   if q.get("watch") == "true")


def test_restart_from_the_api_equals_the_running_cache(api: KubeAPIDouble) -> None:
    for n in ("a", "b"):
        api.put_node(node_obj(n, 8))
    for i in range(4):
        api.put_pod(pod_obj(f"p{i}", gpus=i + 1))
    api.put_pod(pod_obj("foreign", gpus=2, node="b"))
    cache = ClusterCache(signer=SIGNER)
    with watching(api, cache):
        binder = KubeBinder(api_client(api))
        plan = [("p0", "a", (7,)), ("p1", "a", (0, 1)), ("p2", "b", (3, 4, 5))]
        for name, node, gpus in plan:
            a = Assignment(pod=f"default/{name}", node=node, gpus=gpus, cpu_milli=1000)
            with cache.lock:
                cache.assume(a)
            bind_for_real(api, binder, name, a)
            cache.confirm(a.pod)
        # p3 is annotated but its bind never happens (the extender died in between).
        a3 = Assignment(pod="default/p3", node="a", gpus=(2, 3, 4, 6), cpu_milli=1000)
        uid = api.get_pod("default", "p3")["metadata"]["uid"]  # type: ignore[index]
        annotate(binder, "default", "p3", uid, assignment_annotations(a3, SIGNER, uid=uid))
        assert api.wait_for(lambda: len(held(cache)) == 5)
        assert cache.pod_errors == {}
        fresh = ClusterCache(signer=SIGNER)
        with watching(api, fresh), cache.lock, fresh.lock:
            assert same_state(fresh.snapshot, cache.snapshot)


def test_expiry_clears_stale_annotations(api: KubeAPIDouble) -> None:
    api.put_node(node_obj("a"))
    api.put_pod(pod_obj("p", gpus=1))
    clock = HandClock()
    cache = ClusterCache(signer=SIGNER, clock=clock, assume_ttl_s=5)
    binder = KubeBinder(api_client(api))
    with watching(api, cache):
        expiry = AssumptionExpiry(cache, binder, interval_s=3600)
        a = Assignment(pod="default/p", node="a", gpus=(2,), cpu_milli=1000)
        cache.assume(a)
        uid = api.get_pod("default", "p")["metadata"]["uid"]  # type: ignore[index]
        annotate(binder, "default", "p", uid, assignment_annotations(a, SIGNER, uid=uid))
        assert api.wait_for(lambda: in_memory_keys(cache) == [])
        clock.t += 5
        assert expiry.expire_once() == ["default/p"]
        assert held(cache) == {}
        pod = api.get_pod("default", "p")
        assert pod is not None and ASSIGNED_NODE_ANNOTATION not in pod["metadata"]["annotations"]
        assert api.wait_for(lambda: cache.stale_annotations() == [])


# ---- binder -------------------------------------------------------------------------------

def test_annotate_merge_patch_with_uid_precondition(api: KubeAPIDouble) -> None:
    stored = api.put_pod(pod_obj("p"))
    uid = stored["metadata"]["uid"]
    binder = KubeBinder(api_client(api))
    annotate(binder, "default", "p", uid, {"x/a": "1", "x/b": "2"})
    annotate(binder, "default", "p", uid, {"x/a": None})
    pod = api.get_pod("default", "p")
    assert pod is not None and pod["metadata"]["annotations"] == {"x/b": "2"}
    patches = [b for m, _, _, b in api.requests if m == "PATCH"]
    assert patches[0] == {"metadata": {"annotations": {"x/a": "1", "x/b": "2"}, "uid": uid}}
    with pytest.raises(Conflict, match="UID in precondition") as e:
        annotate(binder, "default", "p", "another-uid", {"x/c": "3"})
    assert e.value.status == 409
    with pytest.raises(NotFound) as nf:
        annotate(binder, "default", "gone", "u", {"x/c": "3"})
    assert nf.value.status == 404


def test_bind_success_conflict_deleted_and_timeout(api: KubeAPIDouble) -> None:
    uid = api.put_pod(pod_obj("p"))["metadata"]["uid"]
    binder = KubeBinder(api_client(api), request_timeout_s=0.3)
    binder.bind("default", "p", uid, "n1")  # the 201 Status answer is not a Binding: fine
    pod = api.get_pod("default", "p")
    assert pod is not None and pod["spec"]["nodeName"] == "n1"
    posted = next(b for m, _, _, b in api.requests if m == "POST")
    assert posted["target"] == {"apiVersion": "v1", "kind": "Node", "name": "n1"}
    assert posted["metadata"]["uid"] == uid
    with pytest.raises(Conflict, match="already assigned"):
        binder.bind("default", "p", uid, "n2")
    uid_q = api.put_pod(pod_obj("q"))["metadata"]["uid"]
    with pytest.raises(Conflict, match="UID in precondition"):
        binder.bind("default", "q", "stale-uid", "n1")
    api.delete_pod("default", "q")
    with pytest.raises(NotFound):
        binder.bind("default", "q", uid_q, "n1")
    uid_r = api.put_pod(pod_obj("r"))["metadata"]["uid"]
    api.inject("POST", r"/pods/r/binding$", delay_s=1.0)
    with pytest.raises(Timeout):
        binder.bind("default", "r", uid_r, "n1")
    api.inject("POST", r"/pods/r/binding$", status=500, message="etcd is sad")
    with pytest.raises(ApiError, match="etcd is sad") as e:
        binder.bind("default", "r", uid_r, "n1")
    assert e.value.status == 500


def test_plain_client_call_trips_on_the_binding_status_answer(api: KubeAPIDouble) -> None:
    """Why bind() passes _preload_content=False: the generated client expects a Binding back."""
    api.put_pod(pod_obj("p"))
    core = k8s.CoreV1Api(api_client(api))
    body = k8s.V1Binding(metadata=k8s.V1ObjectMeta(name="p", namespace="default"),
                         target=k8s.V1ObjectReference(api_version="v1", kind="Node", name="n"))
    try:
        core.create_namespaced_pod_binding("p", "default", body)
    except Exception as e:  # the bind happened; only reading the answer failed
        assert "target" in str(e)
    pod = api.get_pod("default", "p")
    assert pod is not None and pod["spec"]["nodeName"] == "n"


def test_podgroup_min_member(api: KubeAPIDouble) -> None:
    binder = KubeBinder(api_client(api))
    assert binder.get_podgroup_min_member("default", "g") is None
    api.put_podgroup("default", "g", 4)
    assert binder.get_podgroup_min_member("default", "g") == 4
    api.put_podgroup("default", "h", None)
    assert binder.get_podgroup_min_member("default", "h") is None
    api.inject("GET", r"/podgroups/g$", status=403, message="forbidden by RBAC")
    with pytest.raises(ApiError, match="forbidden"):
        binder.get_podgroup_min_member("default", "g")


def test_double_rejects_unknown_patch_content_type(api: KubeAPIDouble) -> None:
    """The double checks the patch type, so the binder's choice of patch types is tested."""
    api.put_pod(pod_obj("p"))
    core = k8s.CoreV1Api(api_client(api))
    with pytest.raises(k8s.ApiException) as e:
        core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"a": "b"}}},
                                  _content_type="application/apply-patch+yaml")
    assert e.value.status == 415


def test_remove_annotations_only_if_unchanged(api: KubeAPIDouble) -> None:
    uid = api.put_pod(pod_obj("p"))["metadata"]["uid"]
    binder = KubeBinder(api_client(api))
    old = Assignment(pod="default/p", node="a", gpus=(1,))
    new = Assignment(pod="default/p", node="a", gpus=(2,))
    old_ann = assignment_annotations(old, SIGNER, uid=uid)
    annotate(binder, "default", "p", uid, {**assignment_annotations(new, SIGNER, uid=uid),
                                         "other/x": "1"})
    # The extender wrote a new assignment meanwhile: the stale one is not removed.
    with pytest.raises(Conflict):
        binder.remove_annotations_if("default", "p", uid, old_ann)
    with pytest.raises(Conflict):
        binder.remove_annotations_if("default", "p", "other-uid",
                                     assignment_annotations(new, SIGNER, uid=uid))
    pod = api.get_pod("default", "p")
    assert pod is not None and pod["metadata"]["annotations"][ASSIGNED_NODE_ANNOTATION] == "a"
    binder.remove_annotations_if("default", "p", uid,
                                 assignment_annotations(new, SIGNER, uid=uid))
    pod = api.get_pod("default", "p")
    assert pod is not None and pod["metadata"]["annotations"] == {"other/x": "1"}
    with pytest.raises(NotFound):
        binder.remove_annotations_if("default", "gone", uid, {"a/b": "c"})
