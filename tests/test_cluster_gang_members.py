"""Gang membership in the cache: existing pods per gang, PodGroups, identity (issue 8 root 2)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from extender_fakes import pod_obj
from kubeapi_double import KubeAPIDouble
from kubernetes import client as k8s

from scheduler.cluster.cache import ClusterCache
from scheduler.cluster.gang_members import GangMembers
from scheduler.cluster.kube_watch import KubeSource
from scheduler.constants import VOLCANO_GROUP_ANNOTATION


def member(name: str, gang: str = "g", created: str = "2026-01-01T00:00:00Z",
           node: str = "", phase: str = "Pending", min_member: int | None = 2,
           **kw: Any) -> dict[str, Any]:
    p = pod_obj(name, gpus=1, gang=gang, min_member=min_member, **kw)
    p["metadata"]["creationTimestamp"] = created
    if node:
        p["spec"]["nodeName"] = node
    p["status"]["phase"] = phase
    return p


def test_existing_pods_count_and_finished_or_deleted_ones_do_not() -> None:
    c = ClusterCache()
    a, b, other = member("a"), member("b", node="n1"), member("x", gang="h")
    for p in (a, b, other):
        c.upsert_pod(p)
    v = c.gang_view("default/g")
    assert v is not None and sorted(v.members) == ["default/a", "default/b"]
    assert v.pending == 1 and v.min_member == 2
    c.upsert_pod(member("b", node="n1", phase="Succeeded"))
    v = c.gang_view("default/g")
    assert v is not None and sorted(v.members) == ["default/a"]
    c.delete_pod(a)
    assert c.gang_view("default/g") is None
    # A re-list keeps exactly the listed pods.
    c.replace_pods([member("c"), pod_obj("plain", gpus=1)])
    v = c.gang_view("default/g")
    assert v is not None and list(v.members) == ["default/c"]


def test_volcano_annotation_and_relabelled_pods() -> None:
    c = ClusterCache()
    v0 = pod_obj("v0", gpus=1, annotations={VOLCANO_GROUP_ANNOTATION: "vc"})
    c.upsert_pod(v0)
    assert c.gang_view("default/vc") is not None
    moved = member("v0", gang="other")
    c.upsert_pod(moved)  # the same pod now in another gang
    assert c.gang_view("default/vc") is None and c.gang_view("default/other") is not None


def test_identity_is_podgroup_uid_else_name_and_oldest_creation_time() -> None:
    c = ClusterCache()
    c.upsert_pod(member("a", created="2026-01-01T00:00:05Z"))
    c.upsert_pod(member("b", created="2026-01-01T00:00:01Z"))
    v = c.gang_view("default/g")
    assert v is not None and v.identity == "default/g@2026-01-01T00:00:01Z"
    pg: dict[str, Any] = {"metadata": {"name": "g", "namespace": "default", "uid": "u-1"},
          "spec": {"minMember": 5}}
    c.upsert_podgroup(pg)
    v = c.gang_view("default/g")
    assert v is not None and v.identity == "default/g#u-1" and v.min_member == 5
    c.delete_podgroup(pg)
    c.replace_podgroups([{**pg, "metadata": {**pg["metadata"], "uid": "u-2"}}])
    v = c.gang_view("default/g")
    assert v is not None and v.identity == "default/g#u-2"


def test_static_mode_notes_expire_and_the_watch_wins() -> None:
    m = GangMembers(ttl_s=10.0)
    p = member("a")
    m.note(p, now=0.0)
    v = m.view("default/g", now=5.0)
    assert v is not None and v.members["default/a"].provisional
    assert m.view("default/g", now=10.5) is None  # not seen again for ttl_s
    m.note(p, now=20.0)
    m.pod_changed(p)  # the watch saw it: it no longer expires
    m.note(p, now=21.0)
    v = m.view("default/g", now=1000.0)
    assert v is not None and not v.members["default/a"].provisional


def test_malformed_objects_are_ignored() -> None:
    m = GangMembers()
    m.pod_changed({"metadata": {}})
    m.podgroup_changed({"metadata": "x"})
    m.podgroup_changed({"metadata": {"name": "g"}, "spec": {"minMember": "many"}})
    bad = member("a")
    bad["metadata"]["annotations"]["gts.dev/gang-min-member"] = "lots"
    m.pod_changed(bad)
    v = m.view("default/g", 0.0)
    assert v is not None and v.min_member is None
    assert list(m.views(0.0)) == [v]


@pytest.fixture
def api() -> Iterator[KubeAPIDouble]:
    with KubeAPIDouble() as a:
        yield a


def test_pod_and_podgroup_watches_feed_membership(api: KubeAPIDouble) -> None:
    conf = k8s.Configuration()
    conf.host = api.url
    cache = ClusterCache()
    api.put_podgroup("default", "g", 3)
    api.put_pod(member("a"))
    src = KubeSource(k8s.ApiClient(conf), cache, backoff_initial_s=0.05).start()
    try:
        assert src.wait_synced(10)

        def view_has(n: int, uid_prefix: str = "default/g#") -> bool:
            v = cache.gang_view("default/g")
            return v is not None and len(v.members) == n and v.identity.startswith(uid_prefix)

        assert api.wait_for(lambda: view_has(1))
        v = cache.gang_view("default/g")
        assert v is not None and v.min_member == 3
        first = v.identity
        api.put_pod(member("b"))
        assert api.wait_for(lambda: view_has(2))
        api.delete_pod("default", "a")
        assert api.wait_for(lambda: view_has(1))
        api.delete_podgroup("default", "g")
        api.put_podgroup("default", "g", 2)
        assert api.wait_for(lambda: (cache.gang_view("default/g") or v).identity
                            not in (first, ""))
        v2 = cache.gang_view("default/g")
        assert v2 is not None and v2.identity.startswith("default/g#") and v2.min_member == 2
    finally:
        src.stop()


def test_no_podgroup_crd_is_said_once_and_pods_still_sync(
        api: KubeAPIDouble, caplog: pytest.LogCaptureFixture) -> None:
    api.inject("GET", r"/podgroups$", status=404, times=1000, message="no such resource")
    conf = k8s.Configuration()
    conf.host = api.url
    cache = ClusterCache()
    api.put_pod(member("a"))
    caplog.set_level("INFO", logger="scheduler.cluster.kube_watch")
    src = KubeSource(k8s.ApiClient(conf), cache, backoff_initial_s=0.01,
                     backoff_max_s=0.05).start()
    try:
        assert src.wait_synced(10)
        assert api.wait_for(lambda: cache.gang_view("default/g") is not None)
        assert api.wait_for(lambda: sum(p.endswith("/podgroups") for _, p, _, _ in
                                        list(api.requests)) >= 3)
    finally:
        src.stop()
    said = [r for r in caplog.records if "no PodGroup API" in r.getMessage()]
    assert len(said) == 1
    v = cache.gang_view("default/g")
    assert v is not None and v.podgroup is None and v.identity.startswith("default/g@")
