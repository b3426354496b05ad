"""The NVIDIA device plugin's GPU choice (go-gpuallocator best-effort) on known topologies."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.baselines.allocator import (
    DevicePluginAllocator,
    hidden_pcie_level,
    is_nvswitch,
    pair_scores,
    preferred_allocation,
)
from topology.model import GPU, NodeTopology
from topology.presets import preset


def go_allocate(order: list[int], size: int, scores: np.ndarray) -> tuple[int, ...]:
    """A line-by-line port of bestEffortPolicy.Allocate (required = []), walking every
    partition as iterateGPUPartitions does; the reference the fast version must equal."""
    if size <= 0 or len(order) < size:
        return ()
    devs: list[int | None] = list(order)
    if size == 1:
        return (order[0],)
    while len(devs) % size:
        devs.append(None)
    padding = sum(d is None for d in devs)

    def set_score(s: tuple[int | None, ...]) -> int:
        return sum(int(scores[a, b]) for a, b in combinations([d for d in s if d is not None], 2))

    best: list[tuple[int | None, ...]] | None = None
    best_score = 0

    def iterate(rem: list[int | None], accum: list[tuple[int | None, ...]]) -> None:
        nonlocal best, best_score
        if len(rem) == size:
            cand = [*accum, tuple(rem)]
            sc = sum(set_score(s) for s in cand)
            if best is None or sc > best_score:
                best, best_score = cand, sc
            return
        for c in combinations(range(1, len(rem)), size - 1):
            s = (rem[0], *(rem[i] for i in c))
            p = sum(d is None for d in s)
            if not (p == 0 or p == padding):
                continue
            rest = [d for i, d in enumerate(rem) if i != 0 and i not in c]
            iterate(rest, [*accum, s])

    iterate(devs, [])
    assert best is not None
    chosen = max((s for s in best if None not in s), key=set_score)  # first max
    return tuple(d for d in chosen if d is not None)


def test_dgx1_two_gpus_get_an_nv2_pair() -> None:
    topo = preset("dgx1-v100")
    alloc = DevicePluginAllocator()
    for seed in range(20):
        got = alloc.choose(topo, list(range(8)), 2, np.random.default_rng(seed))
        assert topo.links[got[0]][got[1]] == "NV2", (seed, got)


def test_dgx1_pair_scores_count_nvlinks_and_hidden_pcie_level() -> None:
    s = pair_scores(preset("dgx1-v100"))
    assert hidden_pcie_level(preset("dgx1-v100"), 0, 1) == "PIX"  # one PCIe switch per pair
    assert s[0, 1] == 100 + 50  # NV1 + PIX
    assert s[0, 3] == 200 + 30  # NV2 + PHB (same socket, other switch)
    assert s[0, 4] == 200 + 10  # NV2 + SYS
    assert s[0, 5] == 10  # SYS, no NVLink


def test_partition_not_greedy_on_a_partly_used_dgx1() -> None:
    # Free {0,1,2,4}: the partitions are {01,24}=160, {02,14}=140, {04,12}=440; the best
    # partition's best set is (1,2) (NV2 + PHB = 230).
    topo = preset("dgx1-v100")
    assert preferred_allocation([0, 1, 2, 4], 2, pair_scores(topo)) == (1, 2)


def test_partition_beats_the_single_best_pair() -> None:
    # a-b is the best pair, but taking it leaves c-d (10): the partition {ac, bd} (180) wins
    # and its first best set is returned.
    s = np.zeros((4, 4), dtype=np.int64)
    for (i, j), v in {(0, 1): 100, (2, 3): 10, (0, 2): 90, (1, 3): 90, (0, 3): 1,
                      (1, 2): 1}.items():
        s[i, j] = s[j, i] = v
    assert preferred_allocation([0, 1, 2, 3], 2, s) == (0, 2)
    assert go_allocate([0, 1, 2, 3], 2, s) == (0, 2)


def test_nvswitch_ignores_nvlink_and_pcie_decides() -> None:
    topo = preset("dgx-a100")
    assert is_nvswitch(topo)
    s = pair_scores(topo)
    assert s.max() < 100  # no NVLink term through the switch
    assert s[0, 1] == 40 and s[0, 2] == 20 and s[0, 4] == 10  # PXB, NODE, SYS
    alloc = DevicePluginAllocator()
    for seed in range(10):
        a, b = alloc.choose(topo, list(range(8)), 2, np.random.default_rng(seed))
        assert a // 2 == b // 2  # the two GPUs behind one PCIe switch
    assert not is_nvswitch(preset("dgx1-v100"))
    assert not is_nvswitch(preset("pcie-8gpu-2socket"))


def test_size_one_takes_the_first_free_gpu_of_the_list() -> None:
    s = pair_scores(preset("pcie-8gpu-2socket"))
    assert preferred_allocation([5, 2, 7], 1, s) == (5,)
    alloc = DevicePluginAllocator()
    free = [1, 3, 4, 6]
    for seed in range(5):
        got = alloc.choose(preset("pcie-8gpu-2socket"), free, 1, np.random.default_rng(seed))
        assert got == (int(np.random.default_rng(seed).permutation(free)[0]),)


def test_too_few_free_gpus_gives_nothing() -> None:
    s = pair_scores(preset("pcie-4gpu"))
    assert preferred_allocation([0, 1], 3, s) == ()
    assert preferred_allocation([0, 1], 0, s) == ()


def test_nv_pair_without_nics_uses_numa() -> None:
    gpus = (GPU(0, numa_node=0), GPU(1, numa_node=0), GPU(2, numa_node=1))
    links = (("X", "NV4", "NV4"), ("NV4", "X", "SYS"), ("NV4", "SYS", "X"))
    topo = NodeTopology(gpus=gpus, links=links)
    assert hidden_pcie_level(topo, 0, 1) == "NODE"
    assert hidden_pcie_level(topo, 0, 2) == "SYS"
    assert pair_scores(topo)[0, 1] == 400 + 20


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 7),
    size=st.integers(2, 4),
    data=st.data(),
)
def test_fast_search_equals_the_go_enumeration(n: int, size: int, data: st.DataObject) -> None:
    vals = data.draw(st.lists(st.sampled_from([10, 20, 30, 40, 50, 110, 150, 210, 230]),
                              min_size=n * n, max_size=n * n))
    s = np.array(vals, dtype=np.int64).reshape(n, n)
    s = np.triu(s, 1)
    s = s + s.T
    order = data.draw(st.permutations(list(range(n))))
    k = data.draw(st.integers(1, n))
    free = list(order[:k])
    if size > len(free):
        assert preferred_allocation(free, size, s) == ()
        return
    got = preferred_allocation(free, size, s)
    want = go_allocate(free, size, s)
    assert got == want
    assert len(set(got)) == size and set(got) <= set(free)


@pytest.mark.parametrize("name", ["dgx1-v100", "dgx-a100", "dgx-h100", "pcie-8gpu-2socket"])
def test_every_size_returns_that_many_free_gpus(name: str) -> None:
    topo = preset(name)
    alloc = DevicePluginAllocator()
    free = [0, 2, 3, 5, 6, 7]
    for k in range(1, len(free) + 1):
        got = alloc.choose(topo, free, k, np.random.default_rng(k))
        assert len(got) == k and set(got) <= set(free)


def test_sixteen_gpu_board_mid_sizes_take_the_best_single_set() -> None:
    topo = preset("hgx-2-v100-16")
    s = pair_scores(topo)
    order = [int(x) for x in np.random.default_rng(0).permutation(16)]
    best = max(combinations(order, 4),
               key=lambda c: sum(int(s[a, b]) for a, b in combinations(c, 2)))
    assert preferred_allocation(order, 4, s) == best
