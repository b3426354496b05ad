"""Gangs through the extender: planned whole, reserved, bound together or released."""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from extender_fakes import (
    ApiFailure,
    FakeBinder,
    check_invariants,
    gpu_owners,
    pod_obj,
    wait_for,
)
from gang_extender import NODES, appear, gang_extender
from hand_clock import HandClock
from kube_scheduler_oracle import check_filter_reply

from scheduler.constants import ASSIGNED_NODE_ANNOTATION, VOLCANO_GROUP_ANNOTATION
from scheduler.extender.gangs import PLACEHOLDER_PREFIX, GangState
from scheduler.extender.server import ExtenderApp


def post(app: ExtenderApp, verb: str, doc: object) -> Any:
    st, _, body = app.handle("POST", f"/{verb}", json.dumps(doc).encode())
    assert st == 200, body
    return json.loads(body)


def filt(app: ExtenderApp, pod: dict[str, Any], names: list[str] = NODES) -> list[str]:
    doc = {"Pod": pod, "NodeNames": names}
    return check_filter_reply(post(app, "filter", doc), doc)


def bind(app: ExtenderApp, pod: dict[str, Any], node: str) -> str:
    m = pod["metadata"]
    return str(post(app, "bind", {"PodName": m["name"], "PodNamespace": m["namespace"],
                                  "PodUID": m["uid"], "Node": node})["Error"])



def test_gang_waits_for_its_last_member_then_is_bound_together_and_packed() -> None:
    app, svc, binder = gang_extender()
    members = [pod_obj(f"w{i}", gpus=4, gang="job", min_member=4) for i in range(4)]
    appear(svc, *members[:3])
    for p in members[:3]:
        reply = post(app, "filter", {"Pod": p, "NodeNames": NODES})
        assert reply["NodeNames"] == []
        assert "waiting for 1 more member (3 of 4 pods exist)" in reply["FailedNodes"]["n1"]
    assert svc.gangs.reserved_gpus() == 0 and svc.cache.snapshot.holdings == {}
    appear(svc, members[3])
    nodes = {}
    for p in members[:3]:
        passed = filt(app, p)
        assert len(passed) == 1  # steered to its reserved node
        nodes[p["metadata"]["name"]] = passed[0]
    # The whole gang (4 x 4 GPUs) was reserved once all four existed, packed on two nodes.
    assert svc.gangs.reserved_gpus() == 16
    with ThreadPoolExecutor(4) as pool:
        early: list[Future[str]] = [pool.submit(bind, app, p, nodes[p["metadata"]["name"]])
                                    for p in members[:3]]
        wait_for(lambda: (svc.gangs.status("default/job") or (None, 0, 0, 0))[2] == 3)
        assert binder.bound == {} and not any(f.done() for f in early)
        late = members[3]
        passed = filt(app, late)
        assert len(passed) == 1
        assert bind(app, late, passed[0]) == ""
        assert [f.result(timeout=10) for f in early] == ["", "", ""]
    assert set(binder.bound) == {f"default/w{i}" for i in range(4)}
    assert len(set(binder.bound.values())) == 2
    snap = svc.cache.snapshot
    assert sorted(snap.holdings) == sorted(binder.bound)
    assert not any(k.startswith(PLACEHOLDER_PREFIX) for k in snap.holdings)
    assert all(len(v) == 1 for v in gpu_owners(snap).values())
    assert svc.gangs.reserved_gpus() == 0 and svc.gangs.active() == 0
    # One write per member: its Binding, carrying the signed assignment.
    ops = [op for op, _ in binder.calls]
    assert ops == ["bind"] * 4
    assert all(ASSIGNED_NODE_ANNOTATION in binder.annotations[k] for k in binder.bound)
    check_invariants(snap)


def test_gang_that_never_completes_is_released_at_the_timeout() -> None:
    app, svc, binder = gang_extender(timeout=0.6)
    members = [pod_obj(f"w{i}", gpus=2, gang="stuck", min_member=3) for i in range(3)]
    appear(svc, *members)
    members = members[:2]  # the third exists but never reaches filter
    with ThreadPoolExecutor(2) as pool:
        futs = [pool.submit(lambda p: bind(app, p, filt(app, p)[0]), p) for p in members]
        errors = [f.result(timeout=30) for f in futs]
    for e in errors:
        assert "only 2 of 3 members reached bind" in e and "released" in e
    assert binder.bound == {} and binder.calls == []
    assert svc.cache.snapshot.holdings == {}
    assert svc.gangs.reserved_gpus() == 0
    text = svc.metrics.render().decode()
    assert 'gts_gang_events_total{event="timeout"} 1.0' in text
    check_invariants(svc.cache.snapshot)


def test_reservation_of_members_that_never_reach_bind_expires_by_the_clock() -> None:
    clock = HandClock()
    app, svc, _ = gang_extender(timeout=30, clock=clock)
    p = pod_obj("w0", gpus=8, gang="idle", min_member=2)
    appear(svc, p, pod_obj("w1", gpus=8, gang="idle", min_member=2))
    assert len(filt(app, p)) == 1
    assert svc.gangs.reserved_gpus() == 16 and len(svc.cache.snapshot.holdings) == 2
    clock.t += 29.9
    svc.tick()
    assert svc.gangs.reserved_gpus() == 16
    clock.t += 0.2
    svc.tick()
    assert svc.gangs.reserved_gpus() == 0 and svc.cache.snapshot.holdings == {}
    # A member retried during the backoff (as long as the timeout) is turned away...
    clock.t += 29.0
    assert filt(app, p) == [] and svc.cache.snapshot.holdings == {}
    # ... and once it has passed, the gang is planned anew.
    clock.t += 1.5
    assert len(filt(app, p)) == 1 and svc.gangs.active() == 1


def test_one_member_whose_binding_fails_alone_holds_nothing_and_binds_on_retry() -> None:
    # Each Binding carries its member's signed assignment (one write per pod), so there is
    # no annotation to roll back: a failed member holds nothing, the others are bound
    # with their assignments, and kube-scheduler's retry binds the failed one.
    binder = FakeBinder()
    app, svc, _ = gang_extender(binder=binder)
    members = [pod_obj(f"w{i}", gpus=2, gang="frail", min_member=3) for i in range(3)]
    appear(svc, *members)
    binder.fail[("bind", "default/w2")] = ApiFailure("404 NotFound: pod deleted")
    with ThreadPoolExecutor(3) as pool:
        futs = [pool.submit(lambda p: bind(app, p, filt(app, p)[0]), p) for p in members]
        errors = [f.result(timeout=30) for f in futs]
    assert errors[:2] == ["", ""] and "404 NotFound" in errors[2]
    assert set(binder.bound) == {"default/w0", "default/w1"}
    assert all(ASSIGNED_NODE_ANNOTATION in binder.annotations[k] for k in binder.bound)
    assert ASSIGNED_NODE_ANNOTATION not in binder.annotations.get("default/w2", {})
    assert sorted(svc.cache.snapshot.holdings) == ["default/w0", "default/w1"]
    retry = {**members[2], "metadata": {**members[2]["metadata"], "uid": "w2-retry"}}
    assert bind(app, retry, filt(app, retry)[0]) == ""
    assert len(binder.bound) == 3
    check_invariants(svc.cache.snapshot)


def test_members_must_ask_the_same_and_extras_go_as_single_pods() -> None:
    app, svc, binder = gang_extender()
    a = pod_obj("a", gpus=2, gang="g", min_member=2)
    odd = pod_obj("odd", gpus=1, gang="g", min_member=2)
    b = pod_obj("b", gpus=2, gang="g", min_member=2)
    appear(svc, a, odd, b)
    filt(app, a)
    doc = {"Pod": odd, "NodeNames": NODES}
    reply = post(app, "filter", doc)
    assert reply["NodeNames"] == []
    assert "must ask the same resources" in next(iter(reply["FailedNodes"].values()))
    with ThreadPoolExecutor(2) as pool:
        futs = [pool.submit(lambda p: bind(app, p, filt(app, p)[0]), p) for p in (a, b)]
        assert [f.result(timeout=30) for f in futs] == ["", ""]
    extra = pod_obj("c", gpus=2, gang="g", min_member=2)
    appear(svc, extra)
    passed = filt(app, extra)
    assert len(passed) == 3  # not steered: the gang is bound, this one goes on its own
    assert bind(app, extra, passed[0]) == ""
    assert len(binder.bound) == 3


def test_min_member_from_podgroup_wins_over_annotation_and_volcano_is_accepted() -> None:
    binder = FakeBinder(podgroups={"default/pg": 3})
    app, svc, _ = gang_extender(binder=binder)
    appear(svc, *[pod_obj(f"x{i}", gpus=1, gang="pg", min_member=2) for i in range(3)])
    filt(app, pod_obj("x0", gpus=1, gang="pg", min_member=2))
    assert svc.gangs.status("default/pg") == (GangState.RESERVED, 1, 0, 3)
    v = pod_obj("v0", gpus=1, annotations={VOLCANO_GROUP_ANNOTATION: "vc",
                                           "gts.dev/gang-min-member": "2"})
    appear(svc, v, pod_obj("v1", gpus=1, annotations={VOLCANO_GROUP_ANNOTATION: "vc",
                                                      "gts.dev/gang-min-member": "2"}))
    filt(app, v)
    assert svc.gangs.status("default/vc") == (GangState.RESERVED, 1, 0, 2)


def test_plan_uses_only_the_nodes_kube_scheduler_allowed() -> None:
    app, svc, _ = gang_extender()
    p = pod_obj("w0", gpus=4, gang="sel", min_member=2)
    appear(svc, p, pod_obj("w1", gpus=4, gang="sel", min_member=2))
    passed = filt(app, p, names=["n2", "n3"])
    assert passed and passed[0] in ("n2", "n3")
    assert {a.node for a in svc.cache.snapshot.holdings.values()} <= {"n2", "n3"}


def test_gang_too_big_for_the_cluster_says_why() -> None:
    app, svc, _ = gang_extender()
    members = [pod_obj(f"w{i}", gpus=8, gang="huge", min_member=4) for i in range(4)]
    appear(svc, *members)
    reply = post(app, "filter", {"Pod": members[0], "NodeNames": NODES})
    assert reply["NodeNames"] == []
    why = reply["FailedNodes"]["n1"]
    assert "gang default/huge" in why and "could ever hold" in why and "at most 3" in why
    assert svc.cache.snapshot.holdings == {} and svc.gangs.active() == 0
