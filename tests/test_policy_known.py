"""Known answers of the policy on small hand-built clusters."""

from __future__ import annotations

import numpy as np
import pytest
from snapshot_equality import same_state

from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.policy import (
    DEFAULT_CONFIG,
    AllocationError,
    PolicyConfig,
    TypicalWorkload,
    assign,
    build_snapshot,
    filter_nodes,
    place,
    plan_gang,
    release_gang,
    reserve_gang,
    score_nodes,
)
from topology.model import GPU, NodeTopology
from topology.presets import DGX1_NVLINKS

# DGX-1 V100 hybrid cube-mesh, as nvidia-smi prints it (upper triangle; the rest is SYS
# across the two quads' sockets, PHB inside one).
DGX1_NV = DGX1_NVLINKS  # the preset's NVLink pairs, one source of truth


def topo(n: int, link: object, model: str = "V100", memory_mib: int = 16384) -> NodeTopology:
    def lk(i: int, j: int) -> str:
        if i == j:
            return "X"
        return link(min(i, j), max(i, j)) if callable(link) else str(link)

    gpus = tuple(GPU(index=i, model=model, memory_mib=memory_mib) for i in range(n))
    return NodeTopology(gpus=gpus, links=tuple(tuple(lk(i, j) for j in range(n)) for i in range(n)))


def dgx1(model: str = "V100") -> NodeTopology:
    return topo(8, lambda i, j: DGX1_NV.get((i, j)) or ("PHB" if i // 4 == j // 4 else "SYS"),
                model)


def nvswitch8(model: str = "A100") -> NodeTopology:
    return topo(8, "NV12", model, 81920)


def pcie(n: int, model: str = "T4") -> NodeTopology:
    return topo(n, lambda i, j: "PIX" if i // 2 == j // 2 else "SYS", model, 15360)


def node(name: str, t: NodeTopology, cpu: int = 96000, mem: int = 512000,
         levels: tuple[str, ...] = ()) -> NodeSpec:
    return NodeSpec(name, cpu, mem, t, levels)


def whole(pod: str, n: str, gpus: tuple[int, ...]) -> Assignment:
    return Assignment(pod=pod, node=n, gpus=gpus)


def test_two_gpu_pod_on_half_used_dgx1_gets_an_nvlinked_pair() -> None:
    # GPUs 0, 4, 5, 6 taken: free {1, 2, 3, 7}; NVLinked pairs among them: (1,2) NV2,
    # (1,3) NV1, (2,3) NV2, (3,7) NV1. The NV2 pairs are the best.
    snap = build_snapshot([node("d", dgx1())], [whole("x", "d", (0, 4, 5, 6))])
    a = assign(PodRequest("p", gpus=2), snap, 0)
    assert a.gpus in ((1, 2), (2, 3))
    t = dgx1()
    assert t.links[a.gpus[0]][a.gpus[1]] == "NV2"


def test_one_gpu_pod_prefers_partly_used_node_over_breaking_a_free_8gpu_node() -> None:
    snap = build_snapshot(
        [node("empty", nvswitch8()), node("busy", nvswitch8())],
        [whole("x", "busy", (0, 1, 2))],
    )
    a = place(PodRequest("p", gpus=1, cpu_milli=4000), snap, TypicalWorkload())
    assert a is not None and a.node == "busy"


@pytest.mark.parametrize(("used", "share"), [(470, 470), (650, 320), (350, 650), (190, 810)])
def test_fractional_pod_fills_a_shared_gpu_it_completes_first(used: int, share: int) -> None:
    # Pairs of the prior mix's share cutting-stock LP (470+470, 650+320) and an exact fill:
    # the GPU already shared, not a fresh one.
    snap = build_snapshot(
        [node("a", pcie(2)), node("b", pcie(2))],
        [Assignment(pod="s", node="b", gpus=(1,), gpu_milli=used)],
    )
    a = place(PodRequest("p", gpu_milli=share, cpu_milli=1000), snap, TypicalWorkload())
    assert a is not None and (a.node, a.gpus, a.gpu_milli) == ("b", (1,), share)


def test_fractional_pod_keeps_a_gap_a_better_pattern_needs() -> None:
    # 400 used leaves 600, which the prior mix's LP fills with a 470 or 460 (pattern value
    # 0.66 GPU); a 300 there would leave 300 (0.25), while on a fresh GPU it leaves 700 for a
    # 650 (0.75): the share goes to the node with a fresh GPU.
    snap = build_snapshot(
        [node("a", pcie(2)), node("b", pcie(2))],
        [Assignment(pod="s", node="b", gpus=(1,), gpu_milli=400)],
    )
    a = place(PodRequest("p", gpu_milli=300, cpu_milli=1000), snap, TypicalWorkload())
    assert a is not None and a.node == "a"
    # Without the pattern term FGD's waste decides: the shared GPU.
    off = place(PodRequest("p", gpu_milli=300, cpu_milli=1000), snap, TypicalWorkload(),
                PolicyConfig(pattern_weight=0.0))
    assert off is not None and (off.node, off.gpus) == ("b", (1,))
    # Inside one node the GPU is chosen by FGD's waste curve: the shared one.
    a2 = assign(PodRequest("p", gpu_milli=300), snap, 1)
    assert a2.gpus == (1,)


def test_four_gpu_pod_prefers_free_nvlinked_quad_over_scattered_gpus() -> None:
    # "quad" keeps {0,1,2,3} free (all NVLinked); "scattered" keeps {0,1,6,7}... built so its
    # 4 free GPUs need a SYS hop.
    snap = build_snapshot(
        [node("scattered", dgx1()), node("quad", dgx1())],
        [whole("x", "scattered", (2, 3, 4, 5)), whole("y", "quad", (4, 5, 6, 7))],
    )
    r = PodRequest("p", gpus=4)
    fr = filter_nodes(r, snap)
    s = score_nodes(r, snap, fr.feasible, TypicalWorkload())
    assert list(fr.feasible) == [0, 1]
    assert s[1] > s[0]
    placed = place(r, snap, TypicalWorkload())
    assert placed is not None and placed.node == "quad"
    assert assign(r, snap, 1).gpus == (0, 1, 2, 3)


def test_wrong_model_is_unresolvable_and_the_reason_names_the_model() -> None:
    snap = build_snapshot([node("t4", pcie(2, "T4")), node("a100", nvswitch8("A100"))])
    r = PodRequest("p", gpus=1, allowed_models=frozenset({"A100"}))
    fr = filter_nodes(r, snap)
    assert list(fr.feasible) == [1]
    assert fr.unresolvable == frozenset({0})
    assert "A100" in fr.reasons[0] and "T4" in fr.reasons[0]


def test_reasons_a_person_can_act_on() -> None:
    snap = build_snapshot(
        [node("small", pcie(2), cpu=16000), node("busy", nvswitch8())],
        [Assignment(pod="x", node="busy", gpus=(0, 1, 2, 3, 4), cpu_milli=90000)],
    )
    fr = filter_nodes(PodRequest("p", gpus=4, cpu_milli=8000), snap)
    assert fr.reasons[0] == "needs 4 GPUs, node has 2 in total"
    assert fr.reasons[1] == "insufficient cpu: needs 8000m, 6000m free"
    assert fr.unresolvable == frozenset({0})
    fr2 = filter_nodes(PodRequest("p", gpus=4), snap)
    assert fr2.reasons[1] == "needs 4 free GPUs, 3 free"
    fr3 = filter_nodes(PodRequest("p", gpus=2), snap, config=PolicyConfig(min_quality=0.9))
    assert 1 not in fr3.reasons  # NVSwitch: every pair is quality 1.0


def test_min_quality_rejects_badly_linked_sets() -> None:
    snap = build_snapshot([node("d", dgx1())], [whole("x", "d", (1, 2, 3, 5, 6, 7))])
    # Free {0, 4}: NV2, quality below 1 only if NV2 pairs are not the best... {0,4} is NV2.
    r = PodRequest("p", gpus=2)
    assert filter_nodes(r, snap, config=PolicyConfig(min_quality=1.0)).feasible.size == 1
    snap2 = build_snapshot([node("d", dgx1())], [whole("x", "d", (1, 2, 3, 4, 6, 7))])
    fr = filter_nodes(r, snap2, config=PolicyConfig(min_quality=0.5))  # free {0, 5}: SYS
    assert fr.feasible.size == 0
    assert "quality" in fr.reasons[0]


def test_assign_raises_with_the_reason_when_it_does_not_fit() -> None:
    snap = build_snapshot([node("a", pcie(2))])
    with pytest.raises(AllocationError, match="needs 4 GPUs, node has 2 in total"):
        assign(PodRequest("p", gpus=4), snap, 0)


def test_share_never_exceeds_gpu_memory() -> None:
    snap = build_snapshot(
        [node("a", pcie(2))],
        [Assignment(pod="s", node="a", gpus=(0,), gpu_milli=200, gpu_memory_mib=14000)],
    )
    a = assign(PodRequest("p", gpu_milli=300, gpu_memory_mib=4000), snap, 0)
    assert a.gpus == (1,)
    fr = filter_nodes(PodRequest("p", gpu_milli=300, gpu_memory_mib=20000), snap)
    assert fr.unresolvable == frozenset({0})


def test_gang_two_4gpu_members_share_one_nvswitch_node() -> None:
    snap = build_snapshot(
        [node("a", nvswitch8(), levels=("r1",)), node("b", nvswitch8(), levels=("r1",))]
    )
    members = [PodRequest(f"m{i}", gpus=4) for i in range(2)]
    plan = plan_gang(members, snap, TypicalWorkload())
    assert not isinstance(plan, str)
    assert len(plan.nodes) == 1
    before = snap.copy()
    reserve_gang(snap, plan.assignments)
    assert int(np.bitwise_count(snap.free_mask).sum()) == 8
    release_gang(snap, plan.assignments)
    assert same_state(snap, before)


def test_gang_goes_to_the_narrowest_domain_that_holds_it() -> None:
    nodes = [node(f"n{i}", pcie(4), levels=(f"rack{i // 2}", "zone")) for i in range(4)]
    snap = build_snapshot(nodes, [whole("x", "n0", (0, 1))])
    members = [PodRequest(f"m{i}", gpus=4) for i in range(2)]
    plan = plan_gang(members, snap, TypicalWorkload())
    assert not isinstance(plan, str)
    assert plan.level == 0 and set(plan.nodes) == {"n2", "n3"}
    # Three 4-GPU members fit only across racks: the zone level.
    plan3 = plan_gang([PodRequest(f"m{i}", gpus=4) for i in range(3)], snap, TypicalWorkload())
    assert not isinstance(plan3, str) and plan3.level == 1
    # Restricted to n0 and n1 (6 free GPUs), two 4-GPU members do not fit; one does.
    only = np.array([0, 1])
    assert isinstance(plan_gang(members, snap, TypicalWorkload(), candidates=only), str)
    plan1 = plan_gang(members[:1], snap, TypicalWorkload(), candidates=only)
    assert not isinstance(plan1, str) and plan1.nodes == ("n1",)


def test_gang_that_cannot_fit_leaves_the_snapshot_alone() -> None:
    snap = build_snapshot([node("a", pcie(2)), node("b", pcie(2))])
    before = snap.copy()
    plan = plan_gang([PodRequest(f"m{i}", gpus=2) for i in range(3)], snap, TypicalWorkload())
    assert isinstance(plan, str) and "whole gang" in plan
    assert same_state(snap, before)
    plan2 = plan_gang([PodRequest("big", gpus=4)], snap, TypicalWorkload())
    assert isinstance(plan2, str) and "needs 4 GPUs, node has 2 in total" in plan2


def test_one_gpu_weighs_nothing_in_the_topology_term() -> None:
    assert DEFAULT_CONFIG.topology_weight_for(1) == 0.0


def test_nodes_beyond_exact_tables_use_the_greedy_set() -> None:
    # 20 GPUs: no subset tables; whole-GPU pods get greedy_best_set, shares the lowest GPU.
    big = topo(20, "NV18", "B200", 1000)
    snap = build_snapshot([node("big", big)])
    assert snap.tables_of(0) is None
    a = place(PodRequest("a", gpus=4), snap, TypicalWorkload())
    assert a is not None and len(a.gpus) == 4
    snap.allocate(a)
    s = place(PodRequest("s", gpu_milli=300), snap, TypicalWorkload())
    assert s is not None and s.gpus[0] not in a.gpus
    snap.allocate(s)
    fr = filter_nodes(PodRequest("x", gpus=16), snap)
    assert fr.reasons[0] == "needs 16 free GPUs, 15 free"
