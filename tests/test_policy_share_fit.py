"""The share best-fit term: among nodes FGD leaves tied, the share goes where its GPU is fullest."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.policy import TopologyPolicy, TypicalWorkload, build_snapshot
from scheduler.policy.config import PolicyConfig
from scheduler.policy.share_fit import share_fill
from topology.presets import preset


def test_fill_is_the_gpu_in_use_after_the_share() -> None:
    got = share_fill(np.array([1000, 190, 400, 700]), 190)
    assert got.tolist() == pytest.approx([0.19, 1.0, 0.79, 0.49])


@given(st.lists(st.integers(1, 1000), min_size=1, max_size=16), st.integers(1, 1000))
def test_fill_is_a_fraction_and_falls_as_the_gpu_is_emptier(free: list[int], milli: int) -> None:
    fits = np.array([f for f in free if f >= milli])
    got = share_fill(fits, milli)
    assert ((got >= 0.0) & (got <= 1.0)).all()
    order = np.argsort(fits, kind="stable")
    assert (np.diff(got[order]) <= 1e-12).all()


@pytest.mark.parametrize(("weight", "node"), [(0.0, "roomy"), (0.01, "tight")])
def test_share_fills_the_tighter_gap_when_fgd_ties(weight: float, node: str) -> None:
    # Typical workload: whole GPUs only, so any GPU not wholly free is a fragment and a 300
    # share in either partial GPU lowers FGD's measure by 300 on both nodes: a tie, which
    # the fixed node order gives to "roomy" (index 1). Best fit closes the 400 gap instead.
    nodes = [NodeSpec("tight", 64000, 1 << 18, preset("pcie-2gpu")),
             NodeSpec("roomy", 64000, 1 << 18, preset("pcie-2gpu"))]
    snap = build_snapshot(nodes)
    snap.allocate(Assignment("u1", "tight", (0,), gpu_milli=600))
    snap.allocate(Assignment("u2", "roomy", (0,), gpu_milli=300))
    mix = TypicalWorkload(prior=((1, 1000, 0, 10),), prior_weight=100.0, cpu_only=False)
    pol = TopologyPolicy(PolicyConfig(share_fit_weight=weight), mix)
    a = pol.place(PodRequest("s", gpu_milli=300), snap)
    assert a is not None and a.node == node and a.gpus == (0,)


def test_share_fit_weight_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="share_fit_weight"):
        PolicyConfig(share_fit_weight=-0.5)
