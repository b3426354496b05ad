"""Gang admission (issue 8, root 2): a gang reserves only once it exists, backs off after a
timeout, is a new gang when its name is reused, follows deleted members, plans off the cache
lock, says the right reason, and reports through Events and metrics.

Each test here fails on the extender before this fix (f5d2427) and passes after it."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from extender_fakes import check_invariants, pod_obj, spec, wait_for
from gang_extender import NODES, appear, gang_extender
from hand_clock import HandClock
from recorded_events import RecordedEvents

import scheduler.policy as policy_pkg
from scheduler.contract.assignment import Assignment
from scheduler.extender.server import ExtenderApp
from scheduler.extender.service import ExtenderService


def created(p: dict[str, Any], ts: str) -> dict[str, Any]:
    p["metadata"]["creationTimestamp"] = ts
    return p


def gone(svc: ExtenderService, *pods: dict[str, Any]) -> None:
    """The pods are deleted (watch DELETED)."""
    for p in pods:
        svc.cache.delete_pod(p)  # type: ignore[attr-defined]


def filter_reply(app: ExtenderApp, pod: dict[str, Any],
                 names: list[str] = NODES) -> dict[str, Any]:
    st, _, body = app.handle("POST", "/filter",
                             json.dumps({"Pod": pod, "NodeNames": names}).encode())
    assert st == 200, body
    out: dict[str, Any] = json.loads(body)
    return out


def passed(app: ExtenderApp, pod: dict[str, Any], names: list[str] = NODES) -> list[str]:
    return list(filter_reply(app, pod, names)["NodeNames"] or [])


def reason(app: ExtenderApp, pod: dict[str, Any], names: list[str] = NODES) -> str:
    r = filter_reply(app, pod, names)
    assert not r["NodeNames"], r
    return str(next(iter({**r["FailedNodes"], **r["FailedAndUnresolvableNodes"]}.values())))


def bind(app: ExtenderApp, pod: dict[str, Any], node: str) -> str:
    m = pod["metadata"]
    st, _, body = app.handle("POST", "/bind", json.dumps({
        "PodName": m["name"], "PodNamespace": m["namespace"], "PodUID": m["uid"],
        "Node": node}).encode())
    assert st == 200, body
    return str(json.loads(body)["Error"])


def held(svc: ExtenderService) -> dict[str, Assignment]:
    with svc.cache.lock:
        return dict(svc.cache.snapshot.holdings)



# ---- defect: an incomplete gang re-reserved 1 s after each timeout ---------------------------


def test_incomplete_gang_never_reserves_at_any_time() -> None:
    clock = HandClock()
    app, svc, _ = gang_extender(timeout=5.0, clock=clock)
    members = [pod_obj(f"w{i}", gpus=4, gang="five", min_member=5) for i in range(3)]
    appear(svc, *members)
    for step in range(75):  # 75 one-second samples, as the report measured
        for p in members:
            why = reason(app, p)
            assert "waiting for 2 more members (3 of 5 pods exist)" in why
            assert "nothing is reserved" in why
        svc.tick()
        assert held(svc) == {}, f"held at second {step}"
        assert svc.gangs.reserved_gpus() == 0
        clock.t += 1.0


def test_gang_that_timed_out_backs_off_growing_and_capped() -> None:
    clock = HandClock()
    app, svc, _ = gang_extender(timeout=5.0, clock=clock)
    svc.gangs.backoff_max_s = 12.0
    pods = [pod_obj(f"w{i}", gpus=2, gang="slow", min_member=2) for i in range(2)]
    appear(svc, *pods)
    assert len(passed(app, pods[0])) == 1  # reserved; the other member never filters
    for backoff in (5.0, 10.0, 12.0):  # doubling from the timeout, capped at 12 s
        assert len(held(svc)) == 2
        clock.t += 5.0
        svc.tick()  # timed out: released
        assert held(svc) == {}
        clock.t += 1.0  # one second after the timeout: no new reservation
        assert "backing off" in reason(app, pods[0]) and held(svc) == {}
        clock.t += backoff - 1.0 - 0.1
        assert "backing off" in reason(app, pods[0]) and held(svc) == {}
        clock.t += 0.2
        assert len(passed(app, pods[0])) == 1


# ---- defect: one fabricated pod with gang-min-member 32 reserved every GPU -------------------


def test_a_lone_pod_claiming_a_big_gang_reserves_nothing() -> None:
    nodes = [spec(f"n{i}") for i in range(8)]  # 64 GPUs
    app, svc, _ = gang_extender(nodes=nodes)
    p = pod_obj("fake", gpus=2, gang="big", min_member=32)
    appear(svc, p)
    why = reason(app, p, [f"n{i}" for i in range(8)])
    assert "waiting for 31 more members" in why
    assert held(svc) == {} and svc.gangs.reserved_gpus() == 0


def test_min_member_beyond_what_the_cluster_could_hold_is_refused_with_the_reason() -> None:
    app, svc, _ = gang_extender()  # 3 x 8 GPUs
    p = pod_obj("w0", gpus=2, gang="huge", min_member=13)
    appear(svc, p)
    why = reason(app, p)
    assert "minMember 13 is more than the cluster could ever hold" in why
    assert "at most 12 such pods" in why
    assert held(svc) == {}
    absurd = pod_obj("w1", gpus=1, gang="absurd", min_member=100_000)
    why = reason(app, absurd)
    assert "gang-min-member" in why and "1..10000" in why


def test_planning_does_not_hold_the_cache_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    app, svc, _ = gang_extender()
    real = policy_pkg.plan_gang
    lock_free: list[bool] = []

    def spy(*a: Any, **kw: Any) -> Any:
        # Another thread tries the cache lock while the plan runs: it must get it at once.
        got: list[bool] = []

        def probe() -> None:
            ok = svc.cache.lock.acquire(timeout=0.5)
            got.append(ok)
            if ok:
                svc.cache.lock.release()

        t = threading.Thread(target=probe)
        t.start()
        t.join()
        lock_free.append(got[0])
        return real(*a, **kw)

    monkeypatch.setattr(policy_pkg, "plan_gang", spy)
    pods = [pod_obj(f"w{i}", gpus=4, gang="g", min_member=2) for i in range(2)]
    appear(svc, *pods)
    for p in pods:
        passed(app, p)
    assert lock_free == [True]
    assert len(held(svc)) == 2


def test_plan_is_rechecked_when_the_cluster_changed_meanwhile(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app, svc, _ = gang_extender(nodes=[spec("n1")])
    real = policy_pkg.plan_gang

    def racing(*a: Any, **kw: Any) -> Any:
        plan = real(*a, **kw)
        # While the gang was planned off-lock, a single pod took GPUs the plan counted on.
        taken = Assignment(pod="default/single", node="n1", gpus=(0, 1, 2, 3, 4, 5),
                           cpu_milli=1000)
        svc.cache.assume(taken)
        return plan

    monkeypatch.setattr(policy_pkg, "plan_gang", racing)
    pods = [pod_obj(f"w{i}", gpus=4, gang="g", min_member=2) for i in range(2)]
    appear(svc, *pods)
    why = reason(app, pods[0], ["n1"])
    assert "the cluster changed while the gang was planned" in why
    assert set(held(svc)) == {"default/single"}
    check_invariants(svc.cache.snapshot)


# ---- defect: a reused PodGroup name dropped all-or-nothing -----------------------------------


def _bind_gang(app: ExtenderApp, pods: list[dict[str, Any]]) -> list[str]:
    with ThreadPoolExecutor(len(pods)) as pool:
        futs = [pool.submit(lambda p: bind(app, p, passed(app, p)[0]), p) for p in pods]
        return [f.result(timeout=30) for f in futs]


def test_reused_gang_name_without_podgroup_is_a_new_gang() -> None:
    app, svc, binder = gang_extender()
    old = [created(pod_obj(f"a{i}", gpus=2, gang="job", min_member=2), "2026-01-01T00:00:00Z")
           for i in range(2)]
    appear(svc, *old)
    assert _bind_gang(app, old) == ["", ""]
    gone(svc, *old)  # the job finished; its pods are deleted
    new = [created(pod_obj(f"b{i}", gpus=2, gang="job", min_member=2), "2026-01-01T00:10:00Z")
           for i in range(2)]
    appear(svc, new[0])
    # Only one member of the new gang exists: it must not go through as a single pod.
    assert "waiting for 1 more member" in reason(app, new[0])
    assert bind(app, new[0], "n1") != ""  # refused: no reservation (or no cycle) for it
    assert "default/b0" not in binder.bound
    appear(svc, new[1])
    assert _bind_gang(app, new) == ["", ""]
    assert {"default/b0", "default/b1"} <= set(binder.bound)


def test_reused_podgroup_is_known_by_its_uid() -> None:
    app, svc, binder = gang_extender()
    cache = svc.cache
    pg: dict[str, Any] = {"metadata": {"name": "job", "namespace": "default", "uid": "pg-1"},
          "spec": {"minMember": 2}}
    cache.upsert_podgroup(pg)  # type: ignore[attr-defined]
    a = [pod_obj(f"a{i}", gpus=2, gang="job") for i in range(2)]
    binder.podgroups["default/job"] = 2
    appear(svc, *a)
    assert _bind_gang(app, a) == ["", ""]
    # The PodGroup is recreated under the same name; the old pods are still there.
    cache.delete_podgroup(pg)  # type: ignore[attr-defined]
    cache.upsert_podgroup({**pg, "metadata": {**pg["metadata"], "uid": "pg-2"}})  # type: ignore[attr-defined]
    gone(svc, *a)
    b = pod_obj("b0", gpus=2, gang="job")
    appear(svc, b)
    assert "waiting for 1 more member" in reason(app, b)
    assert "default/b0" not in binder.bound


# ---- defect: a deleted member kept its slot --------------------------------------------------


def test_deleted_member_frees_its_slot_for_its_replacement() -> None:
    app, svc, binder = gang_extender()
    w0, w1 = (pod_obj(f"w{i}", gpus=4, gang="g", min_member=2) for i in range(2))
    appear(svc, w0, w1)
    n0, n1 = passed(app, w0), passed(app, w1)
    assert len(n0) == 1 and len(n1) == 1
    with ThreadPoolExecutor(1) as pool:
        survivor = pool.submit(bind, app, w0, n0[0])
        wait_for(lambda: (svc.gangs.status("default/g") or (0, 0, 0, 0))[2] == 1)
        gone(svc, w1)
        replacement = pod_obj("w1b", gpus=4, gang="g", min_member=2)
        appear(svc, replacement)
        steered = passed(app, replacement)
        assert steered == n1  # the freed slot, not a single pod's own placement
        assert bind(app, replacement, steered[0]) == ""
        assert survivor.result(timeout=30) == ""
    assert set(binder.bound) == {"default/w0", "default/w1b"}
    assert "default/w1" not in held(svc)
    check_invariants(svc.cache.snapshot)


def test_deleted_member_with_no_replacement_releases_the_gang() -> None:
    app, svc, binder = gang_extender()
    w0, w1 = (pod_obj(f"w{i}", gpus=4, gang="g", min_member=2) for i in range(2))
    appear(svc, w0, w1)
    n0 = passed(app, w0)
    with ThreadPoolExecutor(1) as pool:
        survivor = pool.submit(bind, app, w0, n0[0])
        wait_for(lambda: (svc.gangs.status("default/g") or (0, 0, 0, 0))[2] == 1)
        gone(svc, w1)
        svc.tick()
        err = survivor.result(timeout=30)
    assert "a member is gone" in err and "waiting for 1 more member" in err
    assert held(svc) == {} and binder.bound == {}
    assert "waiting for 1 more member" in reason(app, w0)


# ---- defect: wrong reason for an unplaceable gang --------------------------------------------


def test_unplaceable_gang_reason_ignores_nodes_kube_scheduler_excluded() -> None:
    app, svc, _ = gang_extender()
    # n1's GPUs are all taken; n2 and n3 are free but kube-scheduler's filters excluded them.
    svc.cache.assume(Assignment(pod="default/big", node="n1",
                                gpus=tuple(range(8)), cpu_milli=1000))
    pods = [pod_obj(f"w{i}", gpus=1, gang="g", min_member=2) for i in range(2)]
    appear(svc, *pods)
    why = reason(app, pods[0], ["n1"])
    assert "insufficient cpu" not in why and "0m free" not in why
    assert "needs 1 free GPUs, 0 free" in why and "1 of 1 candidate nodes" in why


# ---- Events and metrics ----------------------------------------------------------------------


def test_gang_events_and_metrics() -> None:
    clock = HandClock()
    events = RecordedEvents()
    app, svc, _ = gang_extender(timeout=5.0, clock=clock, events=events)
    svc.metrics.track(svc.cache, svc.gangs)
    a = [pod_obj(f"w{i}", gpus=2, gang="g", min_member=3) for i in range(3)]
    appear(svc, *a[:2])
    for _ in range(5):
        reason(app, a[0])
    assert events.reasons() == ["GangWaiting"]  # rate-limited per gang
    text = svc.metrics.render().decode()
    assert "gts_gangs_waiting 1.0" in text and "gts_gangs_backing_off 0.0" in text
    appear(svc, a[2])
    assert passed(app, a[0])
    clock.t += 5.0
    svc.tick()
    assert events.reasons()[1:] == ["GangTimedOut", "GangBackoff"]
    assert all(e.type == "Warning" for e in events.events[1:])
    assert events.events[1].about.kind == "Pod" and events.events[1].about.name == "w0"
    text = svc.metrics.render().decode()
    assert "gts_gangs_backing_off 1.0" in text and "gts_gangs_waiting 0.0" in text
    clock.t += 6.0
    assert _bind_gang(app, a) == ["", "", ""]
    assert events.reasons()[-1] == "GangScheduled"
    text = svc.metrics.render().decode()
    assert "gts_gangs_backing_off 0.0" in text


def test_static_mode_counts_the_pods_seen_at_filter() -> None:
    app, svc, _ = gang_extender(record_only=True)
    a = [pod_obj(f"w{i}", gpus=2, gang="g", min_member=2) for i in range(2)]
    assert "waiting for 1 more member" in reason(app, a[0])
    assert held(svc) == {}
    # The second member's filter completes the gang; the first one's retry finds its slot.
    nodes = [passed(app, a[1]), passed(app, a[0])]
    assert all(len(n) == 1 for n in nodes)
    with ThreadPoolExecutor(2) as pool:
        futs = [pool.submit(bind, app, p, n[0]) for p, n in zip(a[::-1], nodes, strict=True)]
        assert [f.result(timeout=30) for f in futs] == ["", ""]
