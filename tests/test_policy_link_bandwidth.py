"""Absolute link bandwidth in the score (scheduler.policy.link_bandwidth): known answers on the
example cluster, and no change where every node has the same hardware."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.cluster.static import load_cluster_file
from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import GangRef, PodRequest
from scheduler.policy import DEFAULT_CONFIG, TypicalWorkload, build_snapshot, place, plan_gang
from scheduler.policy.link_bandwidth import link_premium, link_tables, set_bandwidth
from scheduler.policy.snapshot import Snapshot, TopologyIndex
from topology.presets import preset

ROOT = Path(__file__).resolve().parents[1]
NO_BANDWIDTH = dataclasses.replace(DEFAULT_CONFIG, bandwidth_weight=0.0, premium_weight=0.0)
PREMIUM = dataclasses.replace(DEFAULT_CONFIG, premium_weight=0.01)


def example() -> Snapshot:
    return build_snapshot(load_cluster_file(ROOT / "deploy/examples/cluster.yaml"))


def test_ring_bandwidth_and_premium_per_node() -> None:
    snap = example()
    lt = link_tables(snap)
    h100, a100, l4 = (snap.index[n] for n in ("h100-00", "a100-00", "l4-00"))
    idx = np.array([h100, a100, l4])
    eight = np.full(3, 0xFF)
    # NVSwitch H100: 18 NVLink 4 links x 25 GB/s; A100: 12 x 25; L4 across sockets: SYS.
    assert set_bandwidth(snap, idx, eight).tolist() == [450.0, 300.0, 0.4 * 31.5]
    assert lt.ref[8] == 450.0
    prem = link_premium(snap, idx, snap.free_mask[idx])
    assert prem[2] == 0.0 and prem[0] > prem[1] > 3.0


def test_two_by_eight_gang_lands_on_h100_nvswitch_nodes() -> None:
    """The issue's case: on the empty example cluster a 2 x 8 gang took an L4 and an A100 node
    while four H100 NVSwitch nodes were idle."""
    snap = example()
    gang = GangRef("ns/train", 2)
    members = [PodRequest(f"ns/train-{i}", cpu_milli=16000, memory_mib=65536, gpus=8, gang=gang)
               for i in range(2)]
    plan = plan_gang(members, snap, TypicalWorkload())
    assert not isinstance(plan, str), plan
    assert len(plan.nodes) == 2
    assert all(n.startswith("h100-") for n in plan.nodes), plan.nodes
    # One network block holds both (the H100s' block-0).
    assert plan.level == 1


def test_multi_gpu_pod_allowing_several_models_takes_the_fastest_links() -> None:
    snap = example()
    for k in (2, 4, 8):
        req = PodRequest("p", gpus=k, allowed_models=frozenset({"L4", "A100", "H100"}))
        a = place(req, snap, TypicalWorkload())
        assert a is not None and a.node.startswith("h100-"), (k, a)
        # Without the term the normalised quality ties every model.
        req_a = PodRequest("p", gpus=k, allowed_models=frozenset({"L4", "A100"}))
        b = place(req_a, snap, TypicalWorkload())
        assert b is not None and b.node.startswith("a100-"), (k, b)


def test_one_gpu_and_share_pods_fill_pcie_before_breaking_nvswitch() -> None:
    snap = example()
    for req in (PodRequest("one", cpu_milli=4000, memory_mib=8192, gpus=1,
                           allowed_models=frozenset({"L4", "H100"})),
                PodRequest("share", cpu_milli=2000, memory_mib=4096, gpu_milli=500)):
        for cfg in (DEFAULT_CONFIG, PREMIUM):
            a = place(req, snap, TypicalWorkload(), cfg)
            assert a is not None and a.node.startswith("l4-"), (req.key, a)


def test_premium_decides_where_fragmentation_ties() -> None:
    """An H100 and an L4 node with equal CPU and memory tie on fragmentation for a 1-GPU pod;
    without the premium the hashed node order picks (here the H100), with it the L4; once
    the H100 is broken up, the premium no longer keeps small pods off it."""
    nodes = [NodeSpec("l4", 128_000, 1 << 20, preset("pcie-8gpu-2socket", model="NVIDIA L4")),
             NodeSpec("h100", 128_000, 1 << 20, preset("dgx-h100"))]
    snap = build_snapshot(nodes)
    for req in (PodRequest("one", cpu_milli=4000, memory_mib=8192, gpus=1),
                PodRequest("share", cpu_milli=2000, memory_mib=4096, gpu_milli=500)):
        a = place(req, snap, TypicalWorkload(), PREMIUM)
        b = place(req, snap, TypicalWorkload(), NO_BANDWIDTH)
        assert a is not None and b is not None
        assert (a.node, b.node) == ("l4", "h100"), req.key
    snap.allocate(Assignment("x", "h100", (7,)))
    snap.allocate(Assignment("y", "l4", (7,)))
    for cfg in (PREMIUM, NO_BANDWIDTH):
        one = PodRequest("one", cpu_milli=4000, memory_mib=8192, gpus=1)
        a = place(one, snap, TypicalWorkload(), cfg)
        assert a is not None and a.node == "h100"


TIX = TopologyIndex()


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["dgx1-v100", "pcie-8gpu-2socket", "pcie-4gpu", "dgx-a100"]),
       used=st.lists(st.integers(0, 255), min_size=1, max_size=6),
       gpus=st.integers(1, 8))
def test_one_hardware_kind_decides_as_without_the_term(kind: str, used: list[int],
                                                       gpus: int) -> None:
    """Where all nodes share one topology the absolute term is a monotone function of quality
    and a whole-GPU pod's premium a constant: every decision stays what it was. (A share's
    premium is not constant: it prefers GPUs already shared, by design.)"""
    topo = preset(kind)
    nodes = [NodeSpec(f"n{i}", 256_000, 1 << 21, topo) for i in range(len(used))]
    placed = [Assignment(f"x{i}", f"n{i}", tuple(g for g in range(topo.n) if u >> g & 1))
              for i, u in enumerate(used) if u & ((1 << topo.n) - 1)]
    snap = build_snapshot(nodes, placed, topo_index=TIX)
    req = PodRequest("p", 1000, 1024, gpus=min(gpus, topo.n))
    assert place(req, snap, TypicalWorkload()) == place(req, snap, TypicalWorkload(), NO_BANDWIDTH)
