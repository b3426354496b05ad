"""The 0..10 extender priorities (scheduler.extender.scores): equal nodes score equal, the
points follow the size of the gap to the best node, and the example cluster's known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.cluster.static import load_cluster_file
from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.extender.scores import extender_scores, levels
from scheduler.policy import (
    DEFAULT_CONFIG,
    TypicalWorkload,
    build_snapshot,
    filter_nodes,
    score_nodes,
)
from scheduler.policy.snapshot import TopologyIndex
from topology.presets import preset

ROOT = Path(__file__).resolve().parents[1]
STEP = DEFAULT_CONFIG.frag_step / 1000


def test_points_follow_the_gap_not_the_rank() -> None:
    best = 5.0
    s = np.array([best, best - STEP, best - 3 * STEP, best - 7 * STEP, best - 1e4, best])
    assert extender_scores(s).tolist() == [10, 9, 8, 7, 0, 10]
    # Rank would give the 1e4 gap a 6; a shift of every score changes nothing.
    assert extender_scores(s + 123.0).tolist() == extender_scores(s).tolist()
    # Two nodes a hair apart and a third 25 steps behind (log2(26) = 4.7 points off).
    assert extender_scores(np.array([1.0, 1.0 - 1e-9, 0.0])).tolist() == [10, 10, 5]
    assert extender_scores(np.zeros(0)).size == 0


def test_levels_chain_near_equal_scores() -> None:
    s = np.array([1.0, 1.0 + 5e-7, 0.5, 1.0 - 5e-7])
    lv = levels(s)
    assert lv[0] == lv[1] == lv[3] == 1.0 + 5e-7 and lv[2] == 0.5


def test_four_idle_h100_nodes_score_the_same_and_above_l4() -> None:
    """The issue's case: a 4-GPU pod on the example cluster gave idle H100s 6, 3, 7, 9."""
    snap = build_snapshot(load_cluster_file(ROOT / "deploy/examples/cluster.yaml"))
    req = PodRequest("p", gpus=4, cpu_milli=8000, memory_mib=32768)
    fr = filter_nodes(req, snap)
    raw = score_nodes(req, snap, fr.feasible, TypicalWorkload())
    ext = dict(zip((snap.names[i] for i in fr.feasible),
                   extender_scores(raw, fr.feasible).tolist(), strict=True))
    h100 = {ext[f"h100-0{i}"] for i in range(4)}
    assert h100 == {10}
    assert ext["a100-00"] == ext["a100-01"] < 10
    assert ext["l4-00"] == ext["l4-01"] < ext["a100-00"]


TIX = TopologyIndex()
KINDS = ("dgx-h100", "dgx-a100", "dgx1-v100", "pcie-8gpu-2socket", "pcie-4gpu")


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=4),
    copies=st.integers(2, 4),
    used=st.lists(st.integers(0, 255), min_size=1, max_size=4),
    req_kind=st.sampled_from(["whole", "share", "cpu"]),
    gpus=st.integers(1, 8),
    milli=st.integers(1, 999),
    models=st.sampled_from([frozenset(), frozenset({"A100", "H100"}), frozenset({"v100"})]),
    offset=st.integers(0, 50),
)
def test_identical_nodes_get_identical_scores(
    kinds: list[str], copies: int, used: list[int], req_kind: str, gpus: int, milli: int,
    models: frozenset[str], offset: int,
) -> None:
    """Nodes of one spec holding the same GPUs get one extender score, whatever their index."""
    nodes: list[NodeSpec] = []
    placed: list[Assignment] = []
    groups: list[list[int]] = []
    # Padding nodes first shift the identical ones to arbitrary snapshot indices.
    for p in range(offset % 7):
        nodes.append(NodeSpec(f"pad{p}", 64_000, 1 << 18, preset("pcie-2gpu")))
    for g, kind in enumerate(kinds):
        topo = preset(kind)
        mask = used[g % len(used)] & ((1 << topo.n) - 1)
        members = []
        for c in range(copies):
            name = f"g{g}-{c}"
            members.append(len(nodes))
            nodes.append(NodeSpec(name, 128_000, 1 << 20, topo, (f"b{c % 2}",)))
            held = tuple(i for i in range(topo.n) if mask >> i & 1)
            if held:
                placed.append(Assignment(f"x-{name}", name, held, cpu_milli=1000))
        groups.append(members)
    snap = build_snapshot(nodes, placed, topo_index=TIX)
    if req_kind == "whole":
        req = PodRequest("p", 1000, 1024, gpus=gpus, allowed_models=models)
    elif req_kind == "share":
        req = PodRequest("p", 1000, 1024, gpu_milli=milli, allowed_models=models)
    else:
        req = PodRequest("p", 1000, 1024)
    fr = filter_nodes(req, snap)
    raw = score_nodes(req, snap, fr.feasible, TypicalWorkload())
    ext = dict(zip(fr.feasible.tolist(), extender_scores(raw, fr.feasible).tolist(),
                   strict=True))
    for members in groups:
        got = {ext.get(i) for i in members}
        assert len(got) == 1, (members, got)
    if ext:
        assert max(ext.values()) == 10
