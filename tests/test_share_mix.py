"""bench.share_mix: the share patterns a fill run leaves on GPUs, and its command line."""

from __future__ import annotations

import pytest

from bench.fill_replay import fill_order
from bench.share_mix import free_share, lines, main, policy_patterns
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy import TopologyPolicy
from topology.presets import preset


def test_free_share_orders_patterns_by_the_room_they_leave() -> None:
    rows = free_share({(810,): 10, (470, 470): 20, (650, 320): 5}, 100 * MILLI_PER_GPU)
    assert [r[0] for r in rows] == [(810,), (470, 470), (650, 320)]
    assert rows[0][2] == pytest.approx(100.0 * 10 * 190 / 100_000)
    text = lines("x", rows, 2)
    assert text[0] == "x: 35 GPUs hold shares, their free room is 3.25 % of capacity"
    assert len(text) == 3 and text[1].startswith("  810 ")
    assert "free room" not in lines("lp", rows, 1, total=False)[0]


def test_patterns_are_what_the_first_n_pods_put_on_each_gpu() -> None:
    nodes = [NodeSpec(f"n{i}", 64_000, 512_000, preset("pcie-2gpu")) for i in range(3)]
    sizes = (810, 470, 320, 650, 230, 160, 470, 320)
    pods = [PodRequest(f"p{i}", cpu_milli=1000, memory_mib=1024, gpu_milli=m)
            for i, m in enumerate(sizes)] + [PodRequest("w", cpu_milli=1000, gpus=1)]
    capacity = 6 * MILLI_PER_GPU
    order, _ = fill_order(pods, capacity, 3)
    n = 7
    pats, placed = policy_patterns(TopologyPolicy(), nodes, pods, 3, n)
    # Every GPU holds at most a whole GPU, and the patterns hold exactly the shares placed
    # among the first n pods of the replay's own order.
    assert all(sum(p) <= MILLI_PER_GPU for p in pats)
    got = sorted(m for p, c in pats.items() for _ in range(c) for m in p)
    want = sorted(q.gpu_milli for q, ok in zip(order[:n], placed[:n], strict=True)
                  if ok and q.is_share)
    assert got == want and got
    # The replay goes on past n (copies up to 130 %): those placements are not counted.
    assert len(placed) > n
    assert sum(pats.values()) <= 6


@pytest.mark.parametrize(("args", "says"), [
    (["--at", "0"], "--at=0.0"),
    (["--seed", "-1"], "--seed=-1"),
    (["--top", "0"], "--top=0"),
    (["--set", "nosuch=1"], "'nosuch=1'"),
    (["--variant", "nosuch"], "invalid choice"),
])
def test_command_line_refuses_bad_arguments(args: list[str], says: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(args)
    assert says in capsys.readouterr().err
