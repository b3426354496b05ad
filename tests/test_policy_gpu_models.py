"""GPU model names as people write them (scheduler.policy.gpu_models), in the policy, the
request check and the simulator's gpu_spec handling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest, RequestError
from scheduler.policy import build_snapshot, check_models, filter_nodes
from scheduler.policy.gpu_models import accepts, matching_model_ids, model_matches, model_words
from topology.presets import preset

A100_80 = "NVIDIA A100-SXM4-80GB"
A100_40 = "NVIDIA A100-SXM4-40GB"
A100_PCIE = "NVIDIA A100 80GB PCIe"
H100 = "NVIDIA H100 80GB HBM3"
H100_NVL = "NVIDIA H100 NVL"
L4 = "NVIDIA L4"
L40S = "NVIDIA L40S"
V100 = "Tesla V100-SXM2-32GB"
MODELS = (A100_80, A100_40, A100_PCIE, H100, H100_NVL, L4, L40S, V100, "V100M32", "T4")


@pytest.mark.parametrize(("name", "expected"), [
    ("A100", {A100_80, A100_40, A100_PCIE}),
    ("a100", {A100_80, A100_40, A100_PCIE}),
    ("A100-80GB", {A100_80, A100_PCIE}),
    ("A100 80G", {A100_80, A100_PCIE}),
    ("A100-SXM4", {A100_80, A100_40}),
    ("H100", {H100, H100_NVL}),
    ("H100-80GB", {H100}),
    ("NVIDIA-H100-80GB-HBM3", {H100}),       # the node agent's label value
    ("nvidia_h100_80gb_hbm3", {H100}),
    (H100, {H100}),                          # the product string itself
    ("L4", {L4}),                            # whole words: not L40S
    ("L40", set()),
    ("A10", set()),                          # not A100
    ("V100", {V100}),                        # Tesla is a brand word
    ("V100M32", {"V100M32"}),                # the trace's single-word names stay exact
    ("80GB-A100", set()),                    # words in order
    ("NVIDIA", set()),                       # a vendor word alone names no GPU
])
def test_names_match_the_models_people_mean(name: str, expected: set[str]) -> None:
    assert {m for m in MODELS if model_matches(name, m)} == expected


def test_words_ignore_case_separators_vendor_and_memory_unit() -> None:
    assert model_words("NVIDIA-H100-80GB-HBM3") == model_words("nvidia h100 80G hbm3") == (
        "h100", "80gb", "hbm3")


@given(st.sampled_from(MODELS), st.sampled_from([str.upper, str.lower, str.title]),
       st.sampled_from([" ", "-", "_"]))
def test_every_model_matches_itself_in_any_spelling(model: str, case: object,
                                                    sep: str) -> None:
    spelled = sep.join(model.replace("-", " ").split())
    assert callable(case)
    assert model_matches(case(spelled), model)


def _cluster() -> list[NodeSpec]:
    return [
        NodeSpec("h100", 224_000, 1 << 21, preset("dgx-h100")),
        NodeSpec("a100", 256_000, 1 << 21, preset("dgx-a100")),
        NodeSpec("l4", 96_000, 1 << 19, preset("pcie-8gpu-2socket", model=L4)),
    ]


def test_policy_filter_uses_the_rules() -> None:
    snap = build_snapshot(_cluster())
    for names, nodes in ((("A100", "H100"), {"h100", "a100"}),
                         (("NVIDIA-H100-80GB-HBM3",), {"h100"}),
                         (("l4",), {"l4"})):
        req = PodRequest("p", gpus=2, allowed_models=frozenset(names))
        fr = filter_nodes(req, snap)
        assert {snap.names[i] for i in fr.feasible} == nodes


def test_check_models_lists_the_models_that_exist() -> None:
    snap = build_snapshot(_cluster())
    known = frozenset(snap.models)
    check_models(PodRequest("p", gpus=1, allowed_models=frozenset({"A100", "H100"})),
                 known)
    # One unknown name beside a good one is fine: the pod lists alternatives.
    check_models(PodRequest("p", gpus=1, allowed_models=frozenset({"A100", "B200"})), known)
    with pytest.raises(RequestError) as e:
        check_models(PodRequest("p", gpus=1, allowed_models=frozenset({"A10", "B200"})), known)
    assert e.value.field == "allowed_models"
    msg = str(e.value)
    assert "A10|B200" in msg
    for m in snap.models:
        assert m in msg


def test_matching_model_ids_and_accepts() -> None:
    models = [A100_80, H100, L4]
    assert list(matching_model_ids(frozenset({"h100", "l4"}), models)) == [1, 2]
    assert matching_model_ids(frozenset({"B200"}), models).size == 0
    assert accepts((), L4) and accepts(("L4", "A100"), L4) and not accepts(("A100",), L4)


def test_simulator_gpu_spec_uses_the_rules(tmp_path: object) -> None:
    """A pod whose gpu_spec says `a100|H100-80GB` replays onto the product-named nodes."""
    from pathlib import Path

    from bench.baselines import make_policy
    from bench.policy_answer import check_assignment
    from bench.workloads import load_alibaba_pods

    assert isinstance(tmp_path, Path)
    f = tmp_path / "pods.csv"
    f.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"
                 "p0,1000,1024,8,1000,a100|H100-80GB\n"
                 "p1,1000,1024,8,1000,a100|H100-80GB\n"
                 "p2,1000,1024,1,1000,nvidia-l4\n")
    pods = load_alibaba_pods(f).pods()
    for name in ("topology", "default", "fgd", "binpack"):
        snap = build_snapshot(_cluster())
        policy = make_policy(name, 0)
        got = []
        for p in pods:
            a = policy.place(p, snap)
            assert a is not None, (name, p.key)
            check_assignment(p, a, snap, name)  # raises on a model the pod does not allow
            snap.allocate(a)
            got.append(a.node)
        assert sorted(got[:2]) == ["a100", "h100"] and got[2] == "l4", (name, got)


def test_gang_admission_bound_uses_the_rules() -> None:
    """A gang's upper bound (policy.gang.max_members) counts the nodes the written names
    reach, as the filter does."""
    from scheduler.policy.gang_admission import max_members

    snap = build_snapshot(_cluster())
    assert max_members(PodRequest("p", gpus=8, allowed_models=frozenset({"h100", "A100"})),
                       snap) == 2
    assert max_members(PodRequest("p", gpus=8, allowed_models=frozenset({"NVIDIA-L4"})),
                       snap) == 1
    assert max_members(PodRequest("p", gpus=8, allowed_models=frozenset({"B200"})), snap) == 0
