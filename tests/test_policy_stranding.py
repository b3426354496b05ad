"""The CPU-stranding term: free GPU capacity a node's CPU can no longer feed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.policy import TopologyPolicy, TypicalWorkload, build_snapshot
from scheduler.policy.config import PolicyConfig
from scheduler.policy.stranding import stranded_delta
from scheduler.policy.typical_workload import WorkloadClasses
from topology.presets import preset


def test_kappa_is_the_demand_weighted_cpu_per_thousandth() -> None:
    # 1 GPU with 8000 CPU, weight 3; a 500 share with 2000 CPU, weight 1; a CPU-only class.
    classes = WorkloadClasses.of([(1, 1000, 8000, 3), (1, 500, 2000, 1), (64, 1000, 4000, 4)])
    assert classes.cpu_per_milli == pytest.approx((3 * 8000 + 2000) / (3 * 1000 + 500))
    assert WorkloadClasses.of([(64, 1000, 4000, 1)]).cpu_per_milli == 0.0


def test_eating_the_cpu_of_a_node_with_free_gpus_strands_them() -> None:
    # kappa 8 CPU milli per thousandth: 2 free GPUs need 16000 CPU.
    d = stranded_delta(np.array([2000.0, 2000.0]), np.array([16000, 40000]), 0, 8000, 8.0)
    assert d.tolist() == [1000.0, 0.0]  # the first node can feed one GPU after, the second two
    # Taking GPU with its CPU share strands nothing; taking GPU alone frees CPU headroom.
    assert stranded_delta(np.array([2000.0]), np.array([16000]), 1000, 8000, 8.0)[0] == 0.0
    # Taking GPU alone frees headroom: no bonus for it (increases only).
    assert stranded_delta(np.array([2000.0]), np.array([8000]), 1000, 0, 8.0)[0] == 0.0
    assert stranded_delta(np.array([2000.0]), np.array([0]), 0, 0, 0.0)[0] == 0.0


@given(st.lists(st.tuples(st.integers(0, 8000), st.integers(0, 96000)), min_size=1, max_size=8),
       st.integers(0, 1000), st.integers(0, 16000), st.floats(0.1, 40.0))
def test_equals_the_literal_definition(
    nodes: list[tuple[int, int]], taken: int, cpu: int, kappa: float
) -> None:
    d = stranded_delta(np.array([t for t, _ in nodes], dtype=np.float32),
                       np.array([c for _, c in nodes]), taken, cpu, kappa)
    for (total, free_cpu), got in zip(nodes, d, strict=True):
        before = max(0.0, total - free_cpu / kappa)
        after = max(0.0, total - taken - (free_cpu - cpu) / kappa)
        assert got == pytest.approx(max(0.0, after - before), abs=0.05)


@pytest.mark.parametrize(("weight", "node"), [(0.0, "a"), (1.0, "b")])
def test_cpu_pod_goes_where_it_strands_no_gpu(weight: float, node: str) -> None:
    # The mix asks 8 cores per GPU. Node a has 2 free GPUs and 12 cores, b 2 GPUs and 24
    # cores. A 4-core CPU-only pod leaves one typical pod fitting on either (FGD's measure
    # does not move: a tie, which the fixed node order gives to a, index 1), but on a only
    # 8 cores would be left for 2 GPUs: one GPU's worth stranded. The term sends it to b.
    nodes = [NodeSpec("b", 24000, 1 << 18, preset("pcie-2gpu")),
             NodeSpec("a", 12000, 1 << 18, preset("pcie-2gpu"))]
    mix = TypicalWorkload(prior=((1, 1000, 8000, 10),), prior_weight=100.0, cpu_only=False)
    pol = TopologyPolicy(PolicyConfig(strand_weight=weight), mix)
    a = pol.place(PodRequest("c", cpu_milli=4000), build_snapshot(nodes))
    assert a is not None and a.node == node


def test_strand_weight_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="strand_weight"):
        PolicyConfig(strand_weight=-1.0)
