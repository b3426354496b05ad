"""Issue 8, root 1: one explicit scheduling cycle per pod (filter -> prioritize -> bind)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from extender_fakes import KEY, FakeBinder, check_invariants, pod_obj, spec, static_cache

from scheduler.constants import (
    ASSIGNED_NODE_ANNOTATION,
    GPU_MILLI_RESOURCE,
    GPU_RESOURCE,
)
from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.extender.metrics import ExtenderMetrics
from scheduler.extender.ports import RecordOnlyBinder
from scheduler.extender.server import ExtenderApp
from scheduler.extender.service import ExtenderService, ServiceOptions
from scheduler.podcodec.assignment import assignment_from_pod, assignment_signature_ok
from scheduler.podcodec.signing import Signer

if TYPE_CHECKING:
    from scheduler.extender.cycle import Cycle


class SlowBinder(FakeBinder):
    """A binder whose Binding takes a while, so concurrent binds of one pod overlap."""

    def bind(self, ns: str, name: str, uid: str, node: str,
             annotations: Mapping[str, str] | None = None) -> None:
        time.sleep(0.05)
        if annotations is None:
            super().bind(ns, name, uid, node)
        else:
            super().bind(ns, name, uid, node, annotations)


def make(specs: list[Any], binder: Any = None, record_only: bool = False
         ) -> tuple[ExtenderApp, ExtenderService, Any]:
    cache = static_cache(specs)
    binder = binder if binder is not None else FakeBinder()
    metrics = ExtenderMetrics()
    svc = ExtenderService(cache, binder, Signer(KEY), ServiceOptions(record_only=record_only),
                          metrics=metrics)
    return ExtenderApp(svc, metrics, ready=lambda: cache.synced), svc, binder


def post(app: ExtenderApp, verb: str, doc: object) -> Any:
    status, _, body = app.handle("POST", f"/{verb}", json.dumps(doc).encode())
    assert status == 200, body
    return json.loads(body)


def filt(app: ExtenderApp, pod: dict[str, Any], names: list[str]) -> list[str]:
    out: list[str] = post(app, "filter", {"Pod": pod, "NodeNames": names})["NodeNames"]
    return out


def bind(app: ExtenderApp, pod: dict[str, Any], node: str) -> str:
    m = pod["metadata"]
    err: str = post(app, "bind", {"PodName": m["name"], "PodNamespace": m["namespace"],
                                  "PodUID": m["uid"], "Node": node})["Error"]
    return err


def test_concurrent_binds_of_one_pod_are_serialized_and_a_repeat_gets_the_first_answer(
        ) -> None:
    binder = SlowBinder()
    app, svc, _ = make([spec("a")], binder=binder)
    pod = pod_obj("p", gpus=2)
    assert filt(app, pod, ["a"]) == ["a"]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: bind(app, pod, "a"), range(6)))
    assert answers == [""] * 6
    # One Binding, and the pod keeps its signed assignment (no rollback by a loser).
    assert [c for c in binder.calls if c[0] == "bind"] == [("bind", "default/p")]
    ann = binder.annotations["default/p"]
    held = svc.cache.snapshot.holdings["default/p"]
    bound = {**pod, "metadata": {**pod["metadata"], "annotations": ann},
             "spec": {**pod["spec"], "nodeName": "a"}}
    assert assignment_from_pod(bound) == held
    assert assignment_signature_ok(bound, held, Signer(KEY))
    assert len(svc.cache.snapshot.holdings) == 1
    check_invariants(svc.cache.snapshot)
    # Later repeats too; to another node it is refused.
    assert bind(app, pod, "a") == ""
    assert "already bound to a" in bind(app, pod, "b")


def test_static_mode_binds_a_pod_once_however_many_binds_race() -> None:
    app, svc, _ = make([spec("a")], binder=RecordOnlyBinder(), record_only=True)
    pod = pod_obj("p", gpus=1)
    filt(app, pod, ["a"])
    barrier = threading.Barrier(8)

    def go(_: int) -> str:
        barrier.wait()
        return bind(app, pod, "a")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(go, range(8)))
    assert answers == [""] * 8
    text = svc.metrics.render().decode()
    bound = [line for line in text.splitlines()
             if line.startswith("gts_extender_decisions_total")
             and 'verb="bind"' in line and 'outcome="bound"' in line]
    assert len(bound) == 1 and float(bound[0].rsplit(" ", 1)[1]) == 1.0
    assert list(svc.cache.snapshot.holdings) == ["default/p"]


def test_bind_refuses_a_node_filter_did_not_approve() -> None:
    app, svc, binder = make([spec("a"), spec("b")])
    pod = pod_obj("p", gpus=1)
    assert filt(app, pod, ["a"]) == ["a"]  # kube-scheduler's own filters excluded b
    err = bind(app, pod, "b")
    assert "did not pass filter" in err
    assert binder.bound == {} and svc.cache.snapshot.holdings == {}
    assert bind(app, pod, "a") == ""


def test_bind_refuses_a_node_filter_rejected_for_the_pod() -> None:
    app, _svc, binder = make([spec("a"), spec("small", "pcie-4gpu")])
    pod = pod_obj("p", gpus=8)
    assert filt(app, pod, ["a", "small"]) == ["a"]
    assert "did not pass filter" in bind(app, pod, "small")
    assert binder.bound == {}


def test_bind_refuses_pods_of_another_scheduler() -> None:
    app, svc, binder = make([spec("a")])
    pod = pod_obj("p", gpus=1)
    pod["spec"]["schedulerName"] = "default-scheduler"
    filt(app, pod, ["a"])
    err = bind(app, pod, "a")
    assert "schedulerName" in err and "default-scheduler" in err
    assert binder.bound == {} and svc.cache.snapshot.holdings == {}


@pytest.mark.parametrize(("resource", "value"), [
    (GPU_RESOURCE, "0"), (GPU_MILLI_RESOURCE, "0"), (GPU_MILLI_RESOURCE, "0.0"),
    (GPU_RESOURCE, None),
])
def test_zero_quantity_requests_pass_filter_and_bind_without_gpus(
        resource: str, value: str | None) -> None:
    app, svc, binder = make([spec("a")])
    pod = pod_obj("zero", gpus=0)
    c = pod["spec"]["containers"][0]["resources"]
    c["requests"][resource] = value
    c["limits"][resource] = value
    assert filt(app, pod, ["a"]) == ["a"]
    assert bind(app, pod, "a") == ""
    assert binder.bound == {"default/zero": "a"}
    assert ASSIGNED_NODE_ANNOTATION not in binder.annotations.get("default/zero", {})
    assert svc.cache.snapshot.holdings == {}


def test_bind_assigns_exactly_the_gpus_the_score_assumed_or_fails() -> None:
    app, svc, binder = make([spec("a")])
    pod = pod_obj("p", gpus=1)
    names = ["a"]
    assert filt(app, pod, names) == ["a"]
    post(app, "prioritize", {"Pod": pod, "NodeNames": names})
    with svc.cache.lock:
        cyc = svc.cycles.get(pod["metadata"]["uid"], "default/p")
        assert cyc is not None
        mask = cyc.assumed_on("a")
        assert mask is not None and bin(mask).count("1") == 1
        gpu = mask.bit_length() - 1
        # Another pod takes exactly that GPU between prioritize and bind.
        svc.cache.assume(Assignment(pod="default/other", node="a", gpus=(gpu,)))
    err = bind(app, pod, "a")
    assert "no longer free" in err and f"GPUs {gpu}" in err
    assert binder.bound == {}
    assert list(svc.cache.snapshot.holdings) == ["default/other"]


def test_bind_gets_the_gpus_prioritize_assumed() -> None:
    app, svc, _binder = make([spec("a"), spec("b", "pcie-8gpu-2socket")])
    pod = pod_obj("p", gpus=2)
    names = ["a", "b"]
    filt(app, pod, names)
    post(app, "prioritize", {"Pod": pod, "NodeNames": names})
    cyc = svc.cycles.get(pod["metadata"]["uid"], "default/p")
    assert cyc is not None
    for node in names:
        mask = cyc.assumed_on(node)
        assert mask is not None
    mask_b = cyc.assumed_on("b")
    assert mask_b is not None
    assert bind(app, pod, "b") == ""
    held = svc.cache.snapshot.holdings["default/p"]
    assert sum(1 << g for g in held.gpus) == mask_b


def test_the_pod_is_parsed_once_per_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    import scheduler.extender.service as service

    calls = []
    real = service.pod_request_from_k8s  # type: ignore[attr-defined]  # patched where used

    def counting(pod: object, **kw: Any) -> PodRequest:
        calls.append(1)
        return real(pod, **kw)

    monkeypatch.setattr(service, "pod_request_from_k8s", counting)
    app, _svc, _ = make([spec("a"), spec("b")])
    pod = pod_obj("p", gpus=1)
    filt(app, pod, ["a", "b"])
    post(app, "prioritize", {"Pod": pod, "NodeNames": ["a", "b"]})
    assert bind(app, pod, "a") == ""
    assert len(calls) == 1


def _cycle(uid: str, n: int, t: float = 0.0) -> Cycle:
    from scheduler.extender.cycle import Cycle, name_hashes

    return Cycle(uid=uid, namespace="ns", name=uid, req=PodRequest(key=f"ns/{uid}", gpus=1),
                 scheduler_name="s", started=t,
                 approved=name_hashes([f"n{i}" for i in range(n)]))


def test_cycles_are_bounded_in_number_bytes_and_age() -> None:
    from scheduler.extender.cycle import Cycles

    now = [0.0]
    cycles = Cycles(lambda: now[0], max_cycles=3, max_bytes=1 << 30, ttl_s=10)
    for i in range(5):
        cycles.start(_cycle(f"u{i}", 10))
    assert len(cycles) == 3 and cycles.get("u0", "ns/u0") is None
    assert cycles.get("u4", "ns/u4") is not None
    by_bytes = Cycles(lambda: 0.0, max_cycles=100, max_bytes=50_000)
    for i in range(10):
        by_bytes.start(_cycle(f"u{i}", 1000))  # ~8.6 KB each
    assert by_bytes.nbytes <= 50_000 and len(by_bytes) < 10
    now[0] = 11.0
    assert cycles.get("u4", "ns/u4") is None


def test_a_bound_cycle_shrinks_but_keeps_its_answer() -> None:
    from scheduler.extender.cycle import BindOutcome, Cycles, name_hashes

    cycles = Cycles(lambda: 0.0)
    c = _cycle("u", 5000)
    cycles.start(c)
    big = cycles.nbytes
    cycles.finish(c, BindOutcome("n1", ""))
    assert cycles.nbytes < big // 10
    got = cycles.get("u", "ns/u")
    assert got is c and got.outcome == BindOutcome("n1", "")
    assert got.approves("n1") and not got.approves("n2")
    # A uid sent with another pod's name is not this pod's cycle.
    assert cycles.get("u", "ns/other") is None
    assert np.all(got.approved == name_hashes(["n1"]))


def test_cycles_accounting_matches_what_is_kept_under_any_operations() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from scheduler.extender.cycle import BindOutcome, Cycles

    op = st.tuples(st.sampled_from(["start", "scored", "finish", "get", "tick"]),
                   st.integers(0, 7), st.integers(0, 300))

    @settings(max_examples=60, deadline=None)
    @given(st.lists(op, max_size=60))
    def check(ops: list[tuple[str, int, int]]) -> None:
        now = [0.0]
        cycles = Cycles(lambda: now[0], max_cycles=5, max_bytes=12_000, ttl_s=50)
        made: dict[str, Cycle] = {}
        for kind, u, n in ops:
            uid = f"u{u}"
            if kind == "start":
                made[uid] = _cycle(uid, n, now[0])
                cycles.start(made[uid])
            elif kind == "scored" and uid in made:
                cycles.scored(made[uid], np.arange(n, dtype=np.int64),
                              np.arange(n, dtype=np.int64))
            elif kind == "finish" and uid in made:
                cycles.finish(made[uid], BindOutcome("n0", "" if n % 2 else "failed"))
            elif kind == "get":
                cycles.get(uid, f"ns/{uid}")
            elif kind == "tick":
                now[0] += n / 10
            live = list(cycles._items.values())
            assert cycles.nbytes == sum(c.nbytes for c in live)
            assert len(live) <= 5 and cycles.nbytes <= 12_000

    check()
