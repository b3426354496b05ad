"""best-node-only's fast path (ExtenderService._best_listed): the best node of the snapshot
looked for in kube-scheduler's list instead of every listed name looked up. Its answer must be
the general path's, whatever the list's order, subset or unknown names."""

from __future__ import annotations

from typing import Any

import pytest
from extender_fakes import pod_obj, spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_extender_service import args_doc, call, make

from scheduler import policy
from scheduler.contract.assignment import Assignment
from scheduler.extender import service as service_module
from scheduler.extender.service import ServiceOptions

TOPOS = ("dgx-h100", "dgx1-v100", "pcie-8gpu-2socket", "pcie-4gpu", "pcie-2gpu")
BEST_ONLY = ServiceOptions(policy_config=policy.PolicyConfig(best_node_only=True))


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 8))
    topos = [draw(st.sampled_from(TOPOS)) for _ in range(n)]
    held = []
    for i, t in enumerate(topos):
        gpus = {"dgx-h100": 8, "dgx1-v100": 8, "pcie-8gpu-2socket": 8, "pcie-4gpu": 4,
                "pcie-2gpu": 2}[t]
        used = draw(st.lists(st.integers(0, gpus - 1), unique=True, max_size=gpus))
        if used:
            held.append((f"n{i}", tuple(sorted(used))))
    kind = draw(st.sampled_from(["whole", "share"]))
    gpus = draw(st.sampled_from([1, 2, 4])) if kind == "whole" else 0
    milli = draw(st.sampled_from([200, 470, 810])) if kind == "share" else 0
    listed = draw(st.lists(st.sampled_from([f"n{i}" for i in range(n)] + ["ghost"]),
                           unique=True, min_size=1))
    return {"topos": topos, "held": held, "gpus": gpus, "milli": milli, "listed": listed}


def answer(case: dict[str, Any], fast: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    nodes = [spec(f"n{i}", t) for i, t in enumerate(case["topos"])]
    app, svc, _ = make(nodes, options=BEST_ONLY)
    with svc.cache.lock:
        for j, (node, gpus) in enumerate(case["held"]):
            svc.cache.assume(Assignment(f"default/h{j}", node, gpus=gpus))
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(service_module.ExtenderService, "_best_listed",
                      lambda self, req, snap, names: None)
        _, fr = call(app, "filter", args_doc(pod_obj("p", gpus=case["gpus"],
                                                     milli=case["milli"]), case["listed"]))
    return fr["NodeNames"]


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_the_fast_path_chooses_what_the_general_path_chooses(
        case: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    assert answer(case, True, monkeypatch) == answer(case, False, monkeypatch)


def test_the_common_case_maps_no_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node fits and is listed: the answer comes without the name-by-name lookup."""
    looked_up: list[int] = []
    real = service_module._known_indices

    def spy(names: Any, snap: Any, memo: Any) -> Any:
        looked_up.append(len(names))
        return real(names, snap, memo)

    monkeypatch.setattr(service_module, "_known_indices", spy)
    app, _, _ = make([spec(f"n{i}") for i in range(6)], options=BEST_ONLY)
    listed = ["n4", "n1", "ghost", "n0", "n5", "n3", "n2"]  # any order, an unknown name too
    _, fr = call(app, "filter", args_doc(pod_obj("p", gpus=2), listed))
    assert len(fr["NodeNames"]) == 1 and fr["NodeNames"][0] in listed
    assert looked_up == []
    # Nothing fits anywhere: the general path gives every listed node its reason.
    _, fr = call(app, "filter", args_doc(pod_obj("big", gpus=9), listed))
    assert fr["NodeNames"] == [] and looked_up == [len(listed)]
    assert set(fr["FailedNodes"]) | set(fr["FailedAndUnresolvableNodes"]) == set(listed)


def test_a_best_node_kube_scheduler_left_out_gives_the_next_best(
        monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = [spec(f"n{i}") for i in range(5)]
    app, _, _ = make(nodes, options=BEST_ONLY)
    everyone = [f"n{i}" for i in range(5)]
    _, fr = call(app, "filter", args_doc(pod_obj("p", gpus=1), everyone))
    (best,) = fr["NodeNames"]
    rest = [n for n in everyone if n != best]
    _, fr = call(app, "filter", args_doc(pod_obj("q", gpus=1), rest))
    monkeypatch.setattr(service_module.ExtenderService, "_best_listed",
                        lambda self, req, snap, names: None)
    _, general = call(app, "filter", args_doc(pod_obj("r", gpus=1), rest))
    assert fr["NodeNames"] == general["NodeNames"] and fr["NodeNames"][0] in rest
