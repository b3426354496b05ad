"""The extender's verbs over a static cache and the real policy, without sockets."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from extender_fakes import (
    KEY,
    ApiFailure,
    FakeBinder,
    check_invariants,
    pod_obj,
    spec,
    static_cache,
)
from kube_scheduler_oracle import check_bind_reply, check_filter_reply, check_prioritize_reply

from scheduler import policy
from scheduler.cluster.cache import ClusterCache
from scheduler.cluster.nodes import node_spec_from_k8s
from scheduler.constants import ALLOWED_MODELS_ANNOTATION, ASSIGNED_NODE_ANNOTATION
from scheduler.contract.assignment import Assignment
from scheduler.extender.metrics import ExtenderMetrics
from scheduler.extender.ports import RecordOnlyBinder
from scheduler.extender.server import ExtenderApp
from scheduler.extender.service import ExtenderService, ServiceOptions
from scheduler.podcodec.assignment import assignment_from_pod, assignment_signature_ok
from scheduler.podcodec.signing import Signer


def make(specs: list[Any], *, binder: Any = None, options: ServiceOptions | None = None,
         cache: ClusterCache | None = None) -> tuple[ExtenderApp, ExtenderService, Any]:
    cache = cache or static_cache(specs)
    binder = binder if binder is not None else FakeBinder()
    metrics = ExtenderMetrics()
    svc = ExtenderService(cache, binder, Signer(KEY), options or ServiceOptions(),
                          metrics=metrics)
    metrics.track(cache, svc.gangs, svc.fragmentation)
    return ExtenderApp(svc, metrics, ready=lambda: cache.synced), svc, binder


def call(app: ExtenderApp, verb: str, doc: object) -> tuple[int, Any]:
    status, _, body = app.handle("POST", f"/{verb}", json.dumps(doc).encode())
    return status, json.loads(body)


def args_doc(pod: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {"Pod": pod, "Nodes": None, "NodeNames": names}


def schedule(app: ExtenderApp, pod: dict[str, Any], names: list[str]) -> tuple[str, str]:
    """filter -> prioritize -> pick the best -> bind, as kube-scheduler does; (node, error)."""
    doc = args_doc(pod, names)
    st, fr = call(app, "filter", doc)
    assert st == 200
    passed = check_filter_reply(fr, doc)
    if not passed:
        return "", "no node passed filter"
    if len(passed) > 1:
        st, pr = call(app, "prioritize", args_doc(pod, passed))
        scores = check_prioritize_reply(pr, args_doc(pod, passed))
        node = max(passed, key=lambda n: (scores[n], -passed.index(n)))
    else:
        node = passed[0]
    meta = pod["metadata"]
    st, br = call(app, "bind", {"PodName": meta["name"], "PodNamespace": meta["namespace"],
                                "PodUID": meta["uid"], "Node": node})
    assert st == 200
    return node, check_bind_reply(br)


def fixture_calls(shared: Path, mode: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for f in sorted((shared / "fixtures/extender" / mode / "all").glob("*.request.json")):
        out.append((f.name.split("-")[1], json.loads(f.read_bytes())))
    return out


@pytest.mark.parametrize("mode", ["ncc-true", "ncc-false"])
def test_fixture_traffic_gets_replies_kube_scheduler_accepts(shared: Path, mode: str) -> None:
    nodes = json.loads((shared / "fixtures/extender/ncc-false/filter.request.json")
                       .read_bytes())["Nodes"]["items"]
    specs = [node_spec_from_k8s(n) for n in nodes] + [spec("cpu-node-1", "")]
    # The fixtures were recorded from a kube-scheduler profile named extender-scheduler.
    app, svc, binder = make(specs, options=ServiceOptions(scheduler_name="extender-scheduler"))
    for verb, doc in fixture_calls(shared, mode):
        if verb == "preempt":
            # No preemptVerb is registered (see service docstring): the route does not exist.
            status, _, _ = app.handle("POST", "/preempt", json.dumps(doc).encode())
            assert status == 404
            continue
        st, reply = call(app, verb, doc)
        assert st == 200, reply
        if verb == "filter":
            passed = check_filter_reply(reply, doc)
            if mode == "ncc-false":
                assert reply["Nodes"]["items"] == [n for n in doc["Nodes"]["items"]
                                                  if n["metadata"]["name"] in passed]
        elif verb == "prioritize":
            check_prioritize_reply(reply, doc)
        else:
            check_bind_reply(reply)
    # The first pod (1 GPU) was bound; what it holds is what the policy assigns on that node.
    first = "default/ext-gpu-true" if mode == "ncc-true" else "default/ext-gpu-false"
    held = svc.cache.snapshot.holdings[first]
    assert binder.bound[first] == held.node and len(held.gpus) == 1
    check_invariants(svc.cache.snapshot)


def test_pods_without_gpus_pass_unchanged_and_score_neutral() -> None:
    app, _, _ = make([spec("a"), spec("b", "pcie-4gpu")])
    cpu_pod = pod_obj("web", gpus=0, cpu="2")
    st, fr = call(app, "filter", args_doc(cpu_pod, ["a", "b", "unknown"]))
    assert st == 200 and fr["NodeNames"] == ["a", "b", "unknown"]
    assert fr["FailedNodes"] == {} and fr["FailedAndUnresolvableNodes"] == {}
    nodes = {"items": [{"metadata": {"name": "a"}, "odd": [1, {"x": None}]},
                       {"metadata": {"name": "b"}}]}
    st, fr = call(app, "filter", {"Pod": cpu_pod, "Nodes": nodes, "NodeNames": None})
    assert fr["Nodes"]["items"] == nodes["items"]
    st, pr = call(app, "prioritize", args_doc(cpu_pod, ["a", "b"]))
    assert pr == [{"Host": "a", "Score": 0}, {"Host": "b", "Score": 0}]


@pytest.mark.parametrize(("pod", "needle"), [
    (pod_obj("big-share", gpus=0, milli=1500), "gpu-milli"),
    (pod_obj("typo", annotations={ALLOWED_MODELS_ANNOTATION: "NVIDIA H1000"}), "H1000"),
    (pod_obj("neg", gpus=0, resources={"nvidia.com/gpu": "-1"}), "nvidia.com/gpu"),
    (pod_obj("huge", gpus=0, resources={"nvidia.com/gpu": "100000"}), "nvidia.com/gpu"),
    (pod_obj("junk", gpus=0, resources={"nvidia.com/gpu": "lots"}), "lots"),
    (pod_obj("gang-no-size", gang="g1"), "gang"),
])
def test_unacceptable_pods_get_200_with_every_node_unresolvable(
        pod: dict[str, Any], needle: str) -> None:
    app, svc, _ = make([spec("a"), spec("b")])
    st, fr = call(app, "filter", args_doc(pod, ["a", "b"]))
    assert st == 200
    assert fr["NodeNames"] == [] and fr["FailedNodes"] == {} and fr["Error"] == ""
    assert set(fr["FailedAndUnresolvableNodes"]) == {"a", "b"}
    reason = fr["FailedAndUnresolvableNodes"]["a"]
    assert needle in reason and "gpu-topology-scheduler" in reason
    st, pr = call(app, "prioritize", args_doc(pod, ["a", "b"]))
    assert st == 200 and {e["Score"] for e in pr} == {0}
    assert svc.cache.snapshot.holdings == {}


def test_reasons_split_never_fits_from_busy_and_unknown() -> None:
    cache = static_cache([spec("dgx"), spec("small", "pcie-4gpu"), spec("cpu", "")])
    cache.errors["broken"] = "annotation gts.dev/topology: not JSON"
    app, _svc, _ = make([], cache=cache)
    with cache.lock:
        cache.assume(Assignment("default/filler", "dgx", gpus=tuple(range(6))))
    pod = pod_obj("p8", gpus=8)
    _, fr = call(app, "filter", args_doc(pod, ["dgx", "small", "cpu", "broken", "ghost"]))
    assert fr["NodeNames"] == []
    assert "2 free" in fr["FailedNodes"]["dgx"]  # busy: may fit later (preemption may help)
    assert "not in the extender's cache" in fr["FailedNodes"]["ghost"]
    unres = fr["FailedAndUnresolvableNodes"]
    assert "4 in total" in unres["small"] and "0 in total" in unres["cpu"]
    assert "not JSON" in unres["broken"]
    pod2 = pod_obj("p2", gpus=2)
    _st, fr = call(app, "filter", args_doc(pod2, ["dgx", "small"]))
    assert fr["NodeNames"] == ["dgx", "small"]


def test_not_synced_fails_every_node_resolvably_and_readyz_says_so() -> None:
    cache = static_cache([spec("a")])
    cache.synced = False
    app, _, _ = make([], cache=cache)
    st, fr = call(app, "filter", args_doc(pod_obj("p"), ["a"]))
    assert st == 200 and "not synced" in fr["FailedNodes"]["a"]
    assert app.handle("GET", "/readyz", b"")[0] == 503
    assert app.handle("GET", "/healthz", b"")[0] == 200
    cache.synced = True
    assert app.handle("GET", "/readyz", b"")[0] == 200


def test_bind_takes_the_gpus_the_score_assumed_and_signs_them() -> None:
    app, svc, binder = make([spec("a"), spec("b", "pcie-8gpu-2socket")])
    pod = pod_obj("train", gpus=4)
    node, err = schedule(app, pod, ["a", "b"])
    assert err == ""
    held = svc.cache.snapshot.holdings["default/train"]
    assert held.node == node and best_linked(svc, held)
    ann = binder.annotations["default/train"]
    bound_pod = {**pod, "metadata": {**pod["metadata"], "annotations": ann},
                 "spec": {**pod["spec"], "nodeName": node}}
    assert assignment_from_pod(bound_pod) == held
    assert assignment_signature_ok(bound_pod, held, Signer(KEY))
    # One write: the Binding carries the signed assignment (issue 9).
    assert binder.calls == [("bind", "default/train")]
    check_invariants(svc.cache.snapshot)


def best_linked(svc: ExtenderService, held: Assignment) -> bool:
    """Oracle by brute force over the node's topology: no other set of as many GPUs free
    before the pod came has a better slowest link between two of its GPUs."""
    snap = svc.cache.snapshot
    i = snap.index[held.node]
    bw = snap.specs[i].topology.bandwidth()
    free = [g for g in range(int(snap.gpu_count[i]))
            if g in held.gpus or snap.milli_free[i, g] == 1000]

    def slowest(gpus: tuple[int, ...]) -> float:
        return min(float(bw[a, b]) for a, b in itertools.combinations(gpus, 2))

    best = max(slowest(c) for c in itertools.combinations(free, len(held.gpus)))
    return slowest(held.gpus) == best


def test_bind_on_a_pcie_node_takes_the_best_linked_free_gpus() -> None:
    """pcie-8gpu-2socket: pairs (0,1) (2,3) (4,5) (6,7) share a switch, 0-3 and 4-7 a socket."""
    app, svc, _binder = make([spec("b", "pcie-8gpu-2socket")])
    with svc.cache.lock:
        svc.cache.assume(Assignment("default/x", "b", gpus=(0,)))
    node, err = schedule(app, pod_obj("four", gpus=4), ["b"])
    assert (node, err) == ("b", "")
    assert svc.cache.snapshot.holdings["default/four"].gpus == (4, 5, 6, 7)  # the whole socket
    _node, err = schedule(app, pod_obj("two", gpus=2), ["b"])
    two = svc.cache.snapshot.holdings["default/two"]
    assert err == "" and two.gpus == (2, 3) and best_linked(svc, two)  # one switch


def test_api_failure_during_bind_rolls_back() -> None:
    binder = FakeBinder()
    app, svc, _ = make([spec("a")], binder=binder)
    binder.fail[("bind", "default/p")] = ApiFailure("409 Conflict: uid precondition failed")
    _, err = schedule(app, pod_obj("p", gpus=2), ["a"])
    assert "409 Conflict" in err and "released" in err
    assert svc.cache.snapshot.holdings == {}
    assert ASSIGNED_NODE_ANNOTATION not in binder.annotations.get("default/p", {})
    assert "default/p" not in binder.bound
    # kube-scheduler retries: this time it works, and nothing was leaked in between.
    _node, err = schedule(app, pod_obj("p", gpus=2), ["a"])
    assert err == "" and binder.bound["default/p"] == "a"
    check_invariants(svc.cache.snapshot)


def test_bind_of_a_pod_never_filtered_or_recreated_fails_clearly() -> None:
    app, svc, binder = make([spec("a")])
    st, br = call(app, "bind", {"PodName": "ghost", "PodNamespace": "default",
                                "PodUID": "u1", "Node": "a"})
    assert st == 200 and "not seen at filter" in br["Error"]
    pod = pod_obj("p", uid="old")
    call(app, "filter", args_doc(pod, ["a"]))
    st, br = call(app, "bind", {"PodName": "p", "PodNamespace": "default", "PodUID": "new",
                                "Node": "a"})
    assert "recreated" in br["Error"] and svc.cache.snapshot.holdings == {}
    assert binder.calls == []


def test_bind_to_a_node_that_filled_up_meanwhile_fails_without_overcommit() -> None:
    app, svc, _binder = make([spec("a")])
    pods = [pod_obj(f"p{i}", gpus=4) for i in range(3)]
    for p in pods:  # all three pass filter while the node is empty
        _, fr = call(app, "filter", args_doc(p, ["a"]))
        assert fr["NodeNames"] == ["a"]
    errors = []
    for p in pods:
        _st, br = call(app, "bind", {"PodName": p["metadata"]["name"], "PodNamespace": "default",
                                    "PodUID": p["metadata"]["uid"], "Node": "a"})
        errors.append(br["Error"])
    assert errors[:2] == ["", ""] and "no longer fits" in errors[2]
    check_invariants(svc.cache.snapshot)


def test_best_node_only_passes_just_the_top_node() -> None:
    nodes = [spec("a"), spec("b"), spec("c", "pcie-8gpu-2socket")]
    opts = ServiceOptions(policy_config=policy.PolicyConfig(best_node_only=True))
    app, svc, _ = make(nodes, options=opts)
    # The same cluster without best-node-only: its prioritize ranks all three nodes.
    app_all, svc_all, _ = make(nodes)
    for s in (svc, svc_all):
        with s.cache.lock:
            s.cache.assume(Assignment("default/x", "a", gpus=(0, 1, 2)))
    _, ranked = call(app_all, "prioritize", args_doc(pod_obj("p", gpus=2), ["a", "b", "c"]))
    top = max(e["Score"] for e in ranked)
    _, fr = call(app, "filter", args_doc(pod_obj("p", gpus=2), ["a", "b", "c"]))
    # Exactly one node, so kube-scheduler skips prioritize; one that the full ranking puts top.
    assert len(fr["NodeNames"]) == 1
    assert {e["Host"]: e["Score"] for e in ranked}[fr["NodeNames"][0]] == top
    # The others fit: they are left out of FailedNodes (only reasons of nodes that do not).
    assert fr["FailedNodes"] == {} and fr["FailedAndUnresolvableNodes"] == {}
    _st, pr = call(app, "prioritize", args_doc(pod_obj("p", gpus=2), fr["NodeNames"]))
    assert {e["Score"] for e in pr} == {10}


def test_share_admission_leaves_the_share_pending_with_the_rule_as_reason() -> None:
    # Opt-in bid-price admission: three of four GPUs hold whole-GPU pods, so an 810 share
    # (the prior's low-fill size) may not open the last free GPU; a 470 next to a GPU in use
    # with room still passes, and without the setting the 810 passes too.
    nodes = [spec("a", "pcie-2gpu"), spec("b", "pcie-2gpu")]
    opts = ServiceOptions(policy_config=policy.PolicyConfig(admission_reserve=10.0))
    app, svc, _ = make(nodes, options=opts)
    app_off, svc_off, _ = make(nodes)
    for s in (svc, svc_off):
        with s.cache.lock:
            s.cache.assume(Assignment("default/x", "a", gpus=(0, 1)))
            s.cache.assume(Assignment("default/y", "b", gpus=(0,)))
    _, fr = call(app, "filter", args_doc(pod_obj("s", gpus=0, milli=810), ["a", "b"]))
    assert fr["NodeNames"] == []
    assert fr["FailedNodes"]["b"].startswith("share admission")
    _, fr = call(app_off, "filter", args_doc(pod_obj("s", gpus=0, milli=810), ["a", "b"]))
    assert fr["NodeNames"] == ["b"]
    with svc.cache.lock:
        svc.cache.assume(Assignment("default/z", "b", gpus=(1,), gpu_milli=300))
    _, fr = call(app, "filter", args_doc(pod_obj("t", gpus=0, milli=470), ["a", "b"]))
    assert fr["NodeNames"] == ["b"]


def test_static_mode_bind_only_records() -> None:
    cache = static_cache([spec("a")])
    svc = ExtenderService(cache, RecordOnlyBinder(), None, ServiceOptions(record_only=True))
    app = ExtenderApp(svc, svc.metrics, ready=lambda: True)
    _node, err = schedule(app, pod_obj("p", gpus=1), ["a"])
    assert err == "" and list(cache.snapshot.holdings) == ["default/p"]
    with pytest.raises(ValueError, match="signing key"):
        ExtenderService(cache, FakeBinder(), None, ServiceOptions())


def test_metrics_expose_decisions_latency_and_gpu_state() -> None:
    app, svc, _ = make([spec("a"), spec("b", "pcie-4gpu")])
    schedule(app, pod_obj("p", gpus=2), ["a", "b"])
    call(app, "filter", args_doc(pod_obj("bad", gpus=0, milli=1500), ["a"]))
    st, ctype, body = app.handle("GET", "/metrics", b"")
    text = body.decode()
    assert st == 200 and ctype.startswith("text/plain")
    assert 'gts_extender_request_duration_seconds_count{verb="filter"} 2.0' in text
    assert 'gts_extender_decisions_total{outcome="rejected",reason="bad_request",verb="filter"}' \
        in text
    assert 'gts_extender_decisions_total{outcome="bound",reason="assigned",verb="bind"} 1.0' \
        in text
    snap = svc.cache.snapshot
    held = snap.index[snap.holdings["default/p"].node]
    model, total = snap.models[snap.model_id[held]], int(snap.gpu_count[held])
    assert f'gts_gpus_allocated{{model="{model}"}} 2.0' in text
    assert f'gts_gpus_free{{model="{model}"}} {total - 2}.0' in text
    assert "gts_cache_synced 1.0" in text and "gts_fragmentation_gpus" in text
    assert "gts_gang_reserved_gpus 0.0" in text


def test_not_extender_requests_get_400_naming_the_problem() -> None:
    app, _, _ = make([spec("a")])
    for verb, body, needle in [
        ("filter", b"{not json", "not JSON"),
        ("filter", b"[]", "body"),
        ("prioritize", b'{"Pod": 1}', "Pod"),
        ("bind", b'{"PodName": "p"}', "PodNamespace"),
    ]:
        st, _ctype, out = app.handle("POST", f"/{verb}", body)
        assert st == 400 and needle in json.loads(out)["Error"]
    assert app.handle("GET", "/filter", b"")[0] == 405
    assert app.handle("GET", "/nope", b"")[0] == 404
