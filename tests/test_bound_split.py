"""bench.bound's min_placed (the LP may no longer refuse those shares) and bench.bound_split's
count of the shares a run placed."""

from __future__ import annotations

import pytest

from bench import bound_split
from bench.baselines import make_policy
from bench.bound import arrived_prefix, fill_bound, lp_bound
from bench.bound_split import placed_shares
from bench.fill_replay import fill_order, replay_fill
from bench.metrics import at_arrived
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


@pytest.mark.parametrize("policy", ["fgd", "topology"])
def test_placing_bound_stays_below_the_run_that_placed_those_shares(policy: str) -> None:
    # The validity claim of bench.bound_split: a run that placed at least min_placed shares of
    # each size by the read-off is still bounded by the LP held to place them.
    shapes = [(4, 32000), (4, 32000), (2, 16000), (2, 16000), (1, 8000)]
    nodes = [NodeSpec(f"n{i}", cpu, 131072, preset({4: "pcie-4gpu", 2: "pcie-2gpu",
                                                     1: "single-gpu"}[g]))
             for i, (g, cpu) in enumerate(shapes)]
    sizes = [810, 470, 650, 320, 160, 1000, 230, 1000, 2000, 110]
    pods = [PodRequest(key=f"p{i}", cpu_milli=[1000, 2000, 4000][i % 3], memory_mib=4096,
                       gpu_milli=s if s < 1000 else 0, gpus=s // 1000)
            for i, s in enumerate(sizes[(i * 7) % len(sizes)] for i in range(40))]
    capacity = 13 * 1000
    checked = raised = 0
    for seed in (0, 1, 2):
        r = replay_fill(make_policy(policy, seed), nodes, pods, seed=seed)
        order, _ = fill_order(pods, capacity, seed)
        for x in (100, 120):
            got = 100.0 - at_arrived(r.arrived_pct, r.allocated_pct, x)
            if got != got:  # no pod's arrival near x on so small a cluster
                continue
            n = arrived_prefix(order, capacity, x)
            counts = placed_shares(r.placed.tolist(), order, n)
            plain = fill_bound(nodes, pods, seed, x).unallocated_pct
            held = fill_bound(nodes, pods, seed, x, min_placed=counts).unallocated_pct
            assert plain - 1e-9 <= held <= got + 1e-9
            checked += 1
            raised += held > plain + 1e-9
    assert checked >= 4
    assert raised >= 1  # the floor binds somewhere, or this would test nothing


@pytest.mark.parametrize(("argv", "names"), [
    (["--variant", "nope"], "--variant"),
    (["--seeds", "0"], "--seeds=0"),
    (["--at", "0"], "--at=0.0"),
])
def test_bad_arguments_are_refused_naming_the_option(
        argv: list[str], names: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        bound_split.main(argv)
    assert e.value.code == 2
    assert names in capsys.readouterr().err
