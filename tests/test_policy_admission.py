"""Bid-price admission for shares: what a GPU opened for a size is worth, and when it is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.policy import TopologyPolicy, TypicalWorkload, build_snapshot
from scheduler.policy.admission import (
    REASON_PREFIX,
    opened_fill,
    protected_gpus,
    share_refusal,
    whole_share,
)
from scheduler.policy.config import DEFAULT_CONFIG, PolicyConfig
from scheduler.policy.share_patterns import lp_prices, lp_solution
from scheduler.policy.snapshot import Snapshot
from topology.presets import preset

# 810s outnumber what can fill their 190 (nothing here can), next to whole-GPU pods.
MIX = ((1, 810, 0, 4), (1, 470, 0, 2), (1, 1000, 0, 4))


def _workload(mix: tuple[tuple[int, int, int, int], ...] = MIX) -> TypicalWorkload:
    return TypicalWorkload(prior=mix, prior_weight=float(sum(r[3] for r in mix)),
                           cpu_only=False)


def pcie2_cluster(used: list[list[int]]) -> Snapshot:
    """pcie-2gpu nodes with the given thousandths in use per GPU (1000 = a whole-GPU pod)."""
    nodes = [NodeSpec(f"n{i}", 64000, 1 << 18, preset("pcie-2gpu")) for i in range(len(used))]
    snap = build_snapshot(nodes)
    for i, gpus in enumerate(used):
        for g, m in enumerate(gpus):
            if m:
                snap.allocate(Assignment(f"u{i}-{g}", f"n{i}", (g,), gpu_milli=m))
    return snap


def test_fill_is_the_pattern_a_size_ends_up_in() -> None:
    fill = opened_fill(_workload().classes())
    assert fill[810] == pytest.approx(810.0)
    assert fill[470] == pytest.approx(940.0)
    pair = opened_fill(_workload(((1, 470, 0, 1), (1, 530, 0, 1))).classes())
    assert pair == {470: pytest.approx(1000.0), 530: pytest.approx(1000.0)}


def test_lp_solution_covers_the_demand_at_the_prices_optimum() -> None:
    sizes, demand = (320, 470, 810), (0.2, 0.3, 0.5)
    pats, x, y = lp_solution(sizes, demand)
    assert (pats.T @ np.asarray(sizes) <= 1000).all()
    assert (pats @ x >= np.asarray(demand) - 1e-9).all()
    assert x.sum() == pytest.approx(float(np.dot(y, demand)), rel=1e-9)
    assert (lp_prices(sizes, demand) == y).all()


def test_without_whole_gpu_pods_nothing_is_protected() -> None:
    classes = _workload(((1, 810, 0, 4), (1, 470, 0, 2))).classes()
    assert whole_share(classes) == 0.0
    assert protected_gpus(classes, 810, 10.0, 100) == 0.0


def test_scarce_whole_gpus_refuse_a_share_that_opens_one() -> None:
    # Three of four GPUs hold whole-GPU pods; an 810 would take the last free one.
    snap = pcie2_cluster([[1000, 1000], [1000, 0]])
    req = PodRequest("s", gpu_milli=810)
    cfg = PolicyConfig(admission_reserve=10.0)
    pol = TopologyPolicy(cfg, _workload())
    assert pol.place(req, snap) is None
    assert pol.events == {"share_admission_refused": 1}
    assert pol.last_refusal.startswith(REASON_PREFIX)
    assert "admission_reserve 10" in pol.last_refusal
    # Off (the default) it is placed on the free GPU.
    a = TopologyPolicy(DEFAULT_CONFIG, _workload()).place(req, snap)
    assert a is not None and (a.node, a.gpus) == ("n1", (1,))


def test_default_policy_never_refuses() -> None:
    assert DEFAULT_CONFIG.admission_reserve == 0.0
    snap = pcie2_cluster([[1000, 1000], [1000, 0]])
    assert share_refusal(PodRequest("s", gpu_milli=810), snap, np.arange(2),
                         _workload().classes(), DEFAULT_CONFIG.admission_reserve) is None


def test_whole_gpu_pods_are_never_refused() -> None:
    snap = pcie2_cluster([[1000, 1000], [1000, 0]])
    pol = TopologyPolicy(PolicyConfig(admission_reserve=10.0), _workload())
    a = pol.place(PodRequest("w", gpus=1), snap)
    assert a is not None and pol.events == {}


_used = st.lists(st.lists(st.sampled_from([0, 0, 0, 100, 190, 500, 810, 1000]), min_size=2,
                          max_size=2), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(_used, st.sampled_from([110, 190, 470, 810, 999]), st.floats(0.01, 1.0))
def test_plenty_of_free_whole_gpus_never_refuses(used: list[list[int]], milli: int,
                                                 reserve: float) -> None:
    # At least reserve * N whole GPUs free: above R * w * N * (1 - v/1000) for any w, v.
    snap = pcie2_cluster(used)
    n = 2 * len(used)
    free = int(np.count_nonzero(snap.milli_free == 1000))
    reserve = min(reserve, free / n)
    pol = TopologyPolicy(PolicyConfig(admission_reserve=reserve), _workload())
    pol.place(PodRequest("s", gpu_milli=milli), snap)
    assert pol.events == {}


@settings(max_examples=60, deadline=None)
@given(_used, st.sampled_from([110, 190, 470, 810, 999]), st.floats(0.0, 100.0))
def test_a_share_that_fits_a_gpu_in_use_is_never_refused(used: list[list[int]], milli: int,
                                                          reserve: float) -> None:
    snap = pcie2_cluster(used)
    in_use = [m for gpus in used for m in gpus if 0 < m < 1000 and 1000 - m >= milli]
    pol = TopologyPolicy(PolicyConfig(admission_reserve=reserve), _workload())
    a = pol.place(PodRequest("s", gpu_milli=milli), snap)
    if in_use:
        assert a is not None and pol.events == {}
    off = TopologyPolicy(DEFAULT_CONFIG, _workload()).place(PodRequest("s", gpu_milli=milli),
                                                              snap)
    # Admission only ever turns a placement into a refusal, never the other way round.
    assert a is None or off is not None
    if a is None and off is not None:
        assert pol.events == {"share_admission_refused": 1}


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_admission_reserve_must_not_be_negative(bad: float) -> None:
    with pytest.raises(ValueError, match="admission_reserve"):
        PolicyConfig(admission_reserve=bad)
