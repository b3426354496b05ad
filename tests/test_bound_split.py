"""bench.bound's min_placed (the LP may no longer refuse those shares) and bench.bound_split's
count of the shares a run placed."""

from __future__ import annotations

import pytest

from bench.bound import lp_bound
from bench.bound_split import placed_shares
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from topology.presets import preset


def one_gpu_node() -> list[NodeSpec]:
    return [NodeSpec("n0", 8000, 32000, preset("single-gpu"))]


def share(i: int, milli: int) -> PodRequest:
    return PodRequest(key=f"s{i}", cpu_milli=0, memory_mib=0, gpu_milli=milli)


def whole(i: int) -> PodRequest:
    return PodRequest(key=f"w{i}", cpu_milli=0, memory_mib=0, gpus=1)


def test_plain_bound_refuses_the_share_that_leaves_a_gap() -> None:
    # One GPU, an 810 share and a whole-GPU pod: the best is to refuse the share.
    assert lp_bound(one_gpu_node(), [share(0, 810), whole(0)]).unallocated_pct == pytest.approx(0)


def test_min_placed_makes_it_place_the_share() -> None:
    b = lp_bound(one_gpu_node(), [share(0, 810), whole(0)], min_placed={810: 1})
    assert b.unallocated_pct == pytest.approx(19.0)


def test_min_placed_zero_is_the_plain_bound() -> None:
    pods = [share(0, 810), share(1, 160), whole(0)]
    nodes = one_gpu_node() * 1 + [NodeSpec("n1", 8000, 32000, preset("single-gpu"))]
    assert (lp_bound(nodes, pods, min_placed={810: 0}).unallocated_pct
            == pytest.approx(lp_bound(nodes, pods).unallocated_pct))


def test_min_placed_above_the_arrivals_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"min_placed\[810\]=2"):
        lp_bound(one_gpu_node(), [share(0, 810)], min_placed={810: 2})


def test_placed_shares_counts_shares_of_the_prefix_only() -> None:
    order = [share(0, 810), whole(0), share(1, 810), share(2, 470), share(3, 810)]
    placed = [True, True, False, True, True]
    assert placed_shares(placed, order, 4) == {810: 1, 470: 1}
