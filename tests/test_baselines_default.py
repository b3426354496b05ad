"""kube-scheduler's default profile model: formulas on hand-computed examples, sampling, GPUs."""

from __future__ import annotations

import numpy as np
import pytest

from bench.baselines.binpack import BinpackPolicy
from bench.baselines.default import (
    KubeDefaultPolicy,
    balanced_allocation_score,
    least_requested_score,
    most_requested_score,
    num_feasible_nodes_to_find,
    search_feasible,
    weighted_mean_score,
)
from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.policy.snapshot import build_snapshot
from topology.presets import preset


def node(name: str, cpu: int, mem: int, topo: str = "pcie-4gpu") -> NodeSpec:
    return NodeSpec(name=name, cpu_milli=cpu, memory_mib=mem, topology=preset(topo))


@pytest.mark.parametrize(("nodes", "want"), [
    (1213, 497),  # 50 - 1213/125 = 41 % -> 497
    (5000, 500),  # 10 %
    (99, 99),  # fewer than 100 nodes: all of them
    (100, 100),  # 50 % of 100 is 50, raised to the minimum of 100
    (300, 144),  # 50 - 300/125 = 48 %
    (20000, 1000),  # the percentage bottoms out at 5 %
])
def test_num_feasible_nodes_to_find(nodes: int, want: int) -> None:
    assert num_feasible_nodes_to_find(nodes) == want


def test_num_feasible_nodes_to_find_with_a_percentage() -> None:
    assert num_feasible_nodes_to_find(1213, 100) == 1213
    assert num_feasible_nodes_to_find(1213, 20) == 242
    assert num_feasible_nodes_to_find(1213, 1) == 100


def test_least_allocated_hand_computed() -> None:
    # cpu: (4000 - 3000) * 100 / 4000 = 25; memory: (10000 - 5000) * 100 / 10000 = 50
    cpu = least_requested_score(np.array([3000]), np.array([4000]))
    mem = least_requested_score(np.array([5000]), np.array([10000]))
    assert cpu.tolist() == [25] and mem.tolist() == [50]
    ok = np.array([True])
    assert weighted_mean_score([cpu, mem], [1, 1], [ok, ok]).tolist() == [37]  # 75 // 2
    # Over capacity scores 0; integer division truncates: (3 - 1) * 100 // 3 = 66.
    assert least_requested_score(np.array([5, 1]), np.array([4, 3])).tolist() == [0, 66]


def test_most_allocated_hand_computed() -> None:
    assert most_requested_score(np.array([3000, 5000, 1]), np.array([4000, 4000, 3])).tolist() \
        == [75, 100, 33]


def test_balanced_allocation_hand_computed() -> None:
    # fractions 0.75 and 0.5: std = 0.125, score int(87.5) = 87
    got = balanced_allocation_score(np.array([3000]), np.array([4000]), np.array([5000]),
                                    np.array([10000]))
    assert got.tolist() == [87]
    # fractions above 1 are capped: 1.0 and 0.2 -> std 0.4 -> 60
    got = balanced_allocation_score(np.array([9000]), np.array([4000]), np.array([2000]),
                                    np.array([10000]))
    assert got.tolist() == [60]


def test_search_starts_at_the_index_and_counts_processed_nodes() -> None:
    feasible = np.array([True, False, True, True, False, True])
    found, processed = search_feasible(feasible, 2, 2)
    assert found.tolist() == [2, 3] and processed == 2
    found, processed = search_feasible(feasible, 4, 3)  # 4 (no), 5, 0, 1 (no), 2
    assert found.tolist() == [5, 0, 2] and processed == 5
    found, processed = search_feasible(feasible, 1, 10)  # fewer than wanted: all processed
    assert sorted(found.tolist()) == [0, 2, 3, 5] and processed == 6


def test_default_picks_the_best_total_score() -> None:
    # Pod 1000m / 1000 MiB / 1 GPU. Node a: 4000m, 8000 MiB, half its CPU used.
    # a: LA cpu (4000-3000)*100/4000 = 25, mem (8000-1000)*100/8000 = 87 -> 56;
    #    BA f = 0.75, 0.125 -> std 0.3125 -> 68; total 124.
    # b: 8000m, 8000 MiB, empty: LA cpu 87, mem 87 -> 87; BA 0.125/0.125 -> 100; total 187.
    nodes = [node("a", 4000, 8000), node("b", 8000, 8000)]
    snap = build_snapshot(nodes, [Assignment(pod="x", node="a", cpu_milli=2000)])
    pol = KubeDefaultPolicy(seed=1)
    req = PodRequest(key="p", cpu_milli=1000, memory_mib=1000, gpus=1)
    idx = np.array([0, 1])
    free = np.bitwise_count(snap.free_mask).astype(np.int64)
    assert pol.node_scores(req, snap, idx, free).tolist() == [124, 187]
    a = pol.place(req, snap)
    assert a is not None and a.node == "b" and len(a.gpus) == 1


def test_binpack_prefers_the_fuller_node() -> None:
    nodes = [node("a", 8000, 8000), node("b", 8000, 8000)]
    snap = build_snapshot(nodes, [Assignment(pod="x", node="a", gpus=(0, 1), cpu_milli=1000,
                                             memory_mib=1000)])
    req = PodRequest(key="p", cpu_milli=1000, memory_mib=1000, gpus=1)
    assert KubeDefaultPolicy(seed=0).place(req, snap).node == "b"  # type: ignore[union-attr]
    assert BinpackPolicy(seed=0).place(req, snap).node == "a"  # type: ignore[union-attr]


def test_a_share_takes_a_whole_gpu_and_the_filter_counts_whole_gpus() -> None:
    snap = build_snapshot([node("a", 8000, 8000, "pcie-2gpu")])
    pol = KubeDefaultPolicy(seed=0)
    a = pol.place(PodRequest(key="s1", cpu_milli=100, gpu_milli=300), snap)
    assert a is not None and a.gpu_milli == 1000 and len(a.gpus) == 1
    snap.allocate(a)
    b = pol.place(PodRequest(key="s2", cpu_milli=100, gpu_milli=300), snap)
    assert b is not None
    snap.allocate(b)
    assert pol.place(PodRequest(key="s3", cpu_milli=100, gpu_milli=300), snap) is None


def test_models_cpu_memory_filter() -> None:
    nodes = [node("a", 8000, 8000, "pcie-4gpu"), node("b", 2000, 8000, "single-gpu")]
    snap = build_snapshot(nodes)
    pol = KubeDefaultPolicy(seed=0)
    t4 = PodRequest(key="t", cpu_milli=1000, gpus=1, allowed_models=frozenset({"Tesla T4"}))
    assert pol.place(t4, snap).node == "b"  # type: ignore[union-attr]
    big = PodRequest(key="c", cpu_milli=4000, gpus=1)
    assert pol.place(big, snap).node == "a"  # type: ignore[union-attr]
    assert pol.place(PodRequest(key="m", memory_mib=9000), snap) is None
    assert pol.place(PodRequest(key="g", gpus=5), snap) is None


def test_round_robin_start_advances_by_processed_nodes() -> None:
    # 150 nodes: 50 - 1 = 49 % -> 73, raised to 100 feasible nodes to find.
    nodes = [node(f"n{i:03d}", 8000, 8000) for i in range(150)]
    snap = build_snapshot(nodes)
    pol = KubeDefaultPolicy(seed=0)
    pol.place(PodRequest(key="p", cpu_milli=100), snap)
    assert pol.next_start_node_index == 100
    pol.place(PodRequest(key="q", cpu_milli=100), snap)
    assert pol.next_start_node_index == 50  # (100 + 100) % 150


def test_default_tie_break_is_seeded_and_spreads() -> None:
    nodes = [node(f"n{i}", 8000, 8000) for i in range(10)]
    req = PodRequest(key="p", cpu_milli=100, gpus=1)
    picks = {KubeDefaultPolicy(seed=s).place(req, build_snapshot(nodes)).node  # type: ignore
             for s in range(40)}
    assert len(picks) > 3
    a = KubeDefaultPolicy(seed=7).place(req, build_snapshot(nodes))
    b = KubeDefaultPolicy(seed=7).place(req, build_snapshot(nodes))
    assert a == b


def test_default_never_places_a_gang_whole() -> None:
    snap = build_snapshot([node("a", 8000, 8000)])
    pol = KubeDefaultPolicy(seed=0)
    assert pol.supports_gangs is False
    assert pol.place_gang([PodRequest(key="g0", gpus=1)], snap) is None
