"""The LP-pattern term for shares: prices from the cutting-stock LP, the pattern table, the term."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from test_policy_admission import pcie2_cluster

from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.policy import TopologyPolicy, TypicalWorkload, build_snapshot
from scheduler.policy.config import PolicyConfig
from scheduler.policy.share_patterns import (
    knapsack,
    lp_prices,
    pattern_gain,
    pattern_gains,
    pattern_table,
    share_demand,
)
from topology.presets import preset


def _pattern_lp_by_enumeration(sizes: tuple[int, ...], demand: tuple[float, ...]) -> float:
    """The cutting-stock LP's optimum over every pattern, listed outright (the oracle)."""
    ranges = [range(1000 // s + 1) for s in sizes]
    cols = [c for c in itertools.product(*ranges)
            if 0 < sum(n * s for n, s in zip(c, sizes, strict=True)) <= 1000]
    a = np.array(cols, dtype=np.float64).T
    res = linprog(np.ones(a.shape[1]), A_ub=-a, b_ub=-np.asarray(demand), bounds=(0, None),
                  method="highs")
    assert res.status == 0
    return float(res.fun)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([150, 200, 250, 300, 350, 450, 500, 650, 700, 800, 950]),
                min_size=1, max_size=3, unique=True),
       st.lists(st.integers(1, 20), min_size=3, max_size=3))
def test_lp_prices_reach_the_pattern_lp_optimum(sizes: list[int], counts: list[int]) -> None:
    # Strong duality: the prices column generation stops at are feasible (no pattern is worth
    # more than one GPU) and price the demand at the LP optimum over all patterns.
    s = tuple(sorted(sizes))
    d = tuple(float(c) for c in counts[: len(s)])
    y = lp_prices(s, d)
    assert (y >= 0).all()
    assert knapsack(np.asarray(s), y)[1000] <= 1.0 + 1e-7
    assert float(np.dot(y, d)) == pytest.approx(_pattern_lp_by_enumeration(s, d), rel=1e-6)


def test_halves_are_priced_at_half_a_gpu() -> None:
    y = lp_prices((470, 530), (1.0, 1.0))
    assert y.sum() == pytest.approx(1.0)
    assert lp_prices((500,), (1.0,)).tolist() == pytest.approx([0.5])


def test_demand_counts_only_fractional_classes_by_size() -> None:
    mix = TypicalWorkload(prior=((1, 470, 1000, 3), (1, 470, 8000, 1), (1, 810, 1000, 4),
                                 (1, 1000, 1000, 8), (2, 1000, 1000, 8)), prior_weight=24.0)
    assert share_demand(mix.classes()) == ((470, 810), (0.5, 0.5))


def test_table_prices_what_a_residual_can_still_hold() -> None:
    # 470 + 530 is the pattern that fills a GPU. A 470 on a GPU with 470 free closes the pair;
    # on one with 800 free it leaves 330, which holds neither size, and gives up the room of
    # a 530: the table says the first keeps more value.
    mix = TypicalWorkload(prior=((1, 470, 1000, 1), (1, 530, 1000, 1)), prior_weight=2.0,
                          cpu_only=False)
    table = pattern_table(mix.classes())
    assert (np.diff(table) >= -1e-12).all() and table[0] == 0.0
    assert table[1000] == pytest.approx(1.0)
    assert table[469] == 0.0 and table[329] == 0.0
    gain = pattern_gain(np.array([470, 800]), 470, table)
    assert gain[0] > gain[1]


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=32), st.integers(1, 999))
def test_gain_is_finite_and_never_positive(free: list[int], milli: int) -> None:
    table = pattern_table(TypicalWorkload().classes())
    got = pattern_gain(np.array(free), milli, table)
    assert np.isfinite(got).all() and (got <= 1e-12).all()
    assert (got[np.array(free) < milli] == 0.0).all()
    # The scorer's cached rows give the same numbers.
    classes = TypicalWorkload().classes()
    assert (pattern_gains(classes, np.array(free), milli)
            == pattern_gain(np.array(free), milli, pattern_table(classes))).all()


@pytest.mark.parametrize(("weight", "node"), [(0.0, "a"), (1.0, "b")])
def test_share_leaves_the_gap_its_pattern_partner_fills(weight: float, node: str) -> None:
    # Typical shares 810, 470, 320, 650. Node a has 470 free on a shared GPU, node b 650.
    # A 320 closes a's gap best by FGD's one-step waste (150 left), but that gap is exactly
    # a 470's; on b it leaves 330, which another 320 fills (350 + 320 + 320 = 990).
    nodes = [NodeSpec("a", 64000, 1 << 18, preset("pcie-2gpu")),
             NodeSpec("b", 64000, 1 << 18, preset("pcie-2gpu"))]
    snap = build_snapshot(nodes)
    snap.allocate(Assignment("u1", "a", (1,), gpu_milli=530))
    snap.allocate(Assignment("u2", "b", (0,), gpu_milli=1000))
    snap.allocate(Assignment("u3", "b", (1,), gpu_milli=350))
    mix = TypicalWorkload(prior=((1, 810, 0, 4), (1, 470, 0, 3), (1, 320, 0, 2), (1, 650, 0, 1),
                                 (1, 1000, 0, 6)), prior_weight=16.0, cpu_only=False)
    pol = TopologyPolicy(PolicyConfig(pattern_weight=weight), mix)
    a = pol.place(PodRequest("s", gpu_milli=320), snap)
    assert a is not None and a.node == node and a.gpus == (1,)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(0, 1000), min_size=2, max_size=2), min_size=1,
                max_size=4),
       st.integers(1, 999), st.sampled_from([0.3, 1.0, 10.0]))
def test_term_never_picks_an_infeasible_gpu(used: list[list[int]], milli: int,
                                            weight: float) -> None:
    # Whatever the weight, the placement fits (the snapshot accepts it) and a share is
    # refused exactly when the term is off refuses it too.
    snap = pcie2_cluster(used)
    req = PodRequest("s", gpu_milli=milli)
    on = TopologyPolicy(PolicyConfig(pattern_weight=weight)).place(req, snap)
    off = TopologyPolicy(PolicyConfig()).place(req, snap)
    assert (on is None) == (off is None)
    if on is not None:
        snap.allocate(on)


def test_pattern_weight_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="pattern_weight"):
        PolicyConfig(pattern_weight=-1.0)
