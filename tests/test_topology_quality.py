"""Quality helpers: set quality, ring bandwidth, the tables cache, and the greedy path."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from topology.model import GPU, NodeTopology
from topology.presets import preset
from topology.quality import (
    TablesCache,
    best_gpus,
    default_tables_cache,
    gpu_mask,
    greedy_set_quality,
    mask_gpus,
    ring_bandwidth,
    set_quality,
    tables_for,
)
from topology.tables import SubsetTables, build_tables


def _uniform(n: int, link: str, model: str = "NVIDIA B200") -> NodeTopology:
    return NodeTopology(
        gpus=tuple(GPU(index=i, model=model) for i in range(n)),
        links=tuple(tuple("X" if i == j else link for j in range(n)) for i in range(n)),
        name=f"uniform-{n}",
    )


def test_set_quality_from_topology_or_tables() -> None:
    topo = preset("pcie-8gpu-2socket")
    tables = build_tables(topo)
    assert set_quality(topo, [0, 1]) == set_quality(tables, (0, 1)) == 1.0
    assert set_quality(topo, iter([0, 2])) == pytest.approx(0.9)  # PXB / PIX
    assert set_quality(topo, [0, 4]) == pytest.approx(0.4)  # SYS / PIX
    assert set_quality(topo, [3]) == 1.0
    with pytest.raises(ValueError, match="out of range"):
        set_quality(topo, [8])
    with pytest.raises(ValueError, match="twice"):
        set_quality(tables, [1, 1])


def test_ring_bandwidth() -> None:
    bw = preset("dgx1-v100").bandwidth()
    assert ring_bandwidth(bw, []) == 0.0
    assert ring_bandwidth(bw, [3]) == math.inf
    assert ring_bandwidth(bw, [0, 3]) == 50.0  # NV2 x 25 GB/s
    assert ring_bandwidth(bw, [0, 1, 2, 3]) == 25.0
    # The eight NV2 links form a Hamiltonian cycle 0-3-2-1-5-6-7-4-0.
    assert ring_bandwidth(bw, range(8)) == 50.0


def test_tables_cache_shares_equal_topologies() -> None:
    cache = TablesCache(maxsize=2)
    a = cache.get(preset("dgx-h100"))
    b = cache.get(preset("dgx-h100"))  # a different object, same key
    assert a is b and (cache.hits, cache.misses) == (1, 1)
    cache.get(preset("pcie-4gpu"))
    cache.get(preset("pcie-2gpu"))
    assert len(cache) == 2  # LRU evicted dgx-h100
    assert cache.get(preset("dgx-h100")) is not a
    assert tables_for(preset("dgx1-v100")) is tables_for(preset("dgx1-v100"))
    assert tables_for(preset("dgx1-v100")) is default_tables_cache().get(preset("dgx1-v100"))
    with pytest.raises(ValueError):
        TablesCache(maxsize=0)


def test_tables_cache_threads() -> None:
    """Four threads asking at once each get the tables of the topology (two may build them:
    equal results), and the cache then holds one entry that later calls share."""
    cache = TablesCache()
    topo = preset("pcie-8gpu-2socket")
    got: list[SubsetTables] = []
    start = threading.Barrier(4)

    def ask() -> None:
        start.wait()
        got.append(cache.get(topo))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and len(cache) == 1
    want = build_tables(topo)  # the oracle: built here, without the cache
    for tables in got:
        assert (tables.key, tables.n) == (want.key, want.n)
        for f in ("bandwidth", "best_set", "best_quality", "set_quality", "value", "ring"):
            assert np.array_equal(getattr(tables, f), getattr(want, f)), f
    assert cache.get(topo) is cache.get(topo) and cache.get(topo) in got


def test_masks() -> None:
    assert gpu_mask([0, 3]) == 0b1001 and mask_gpus(0b1001) == [0, 3]
    with pytest.raises(ValueError):
        gpu_mask([-1])


def test_greedy_quality_above_table_limit() -> None:
    # A 72-GPU NVLink domain: every set is as good as any other.
    nvl = _uniform(72, "NV18")
    assert set_quality(nvl, range(0, 72, 3)) == 1.0
    assert best_gpus(nvl, None, 72) == (tuple(range(72)), 1.0)
    assert best_gpus(nvl, [1, 2], 3) is None
    with pytest.raises(ValueError):
        tables_for(nvl)
    # 20 GPUs: two NVLinked halves joined by SYS; a set spanning both is worse.
    n = 20
    links = [["X" if i == j else ("NV4" if i // 10 == j // 10 else "SYS") for j in range(n)]
             for i in range(n)]  # fmt: skip
    split = NodeTopology(
        gpus=tuple(GPU(index=i, model="Tesla V100-SXM2-32GB") for i in range(n)),
        links=tuple(tuple(r) for r in links),
    )
    inside, q_in = best_gpus(split, None, 10) or ((), 0.0)
    assert len({g // 10 for g in inside}) == 1 and q_in == 1.0
    assert greedy_set_quality(split, [0, 1, 2, 10, 11]) < 0.2
    # Exact ring search agrees with the heuristic where both apply.
    bw = split.bandwidth()
    assert ring_bandwidth(bw, range(17)) == pytest.approx(bw[0, 10])
    assert ring_bandwidth(bw, [0, 1, 2]) == bw[0, 1]


def test_ring_heuristic_on_random_dense_graph() -> None:
    rng = np.random.default_rng(7)
    bw = rng.integers(1, 6, size=(24, 24)).astype(float)
    bw = np.maximum(bw, bw.T)
    np.fill_diagonal(bw, 0)
    r = ring_bandwidth(bw, range(24))
    # A lower bound of the true ring: at least the weakest link, at most the weakest node's
    # second-best link.
    second_best = np.sort(bw, axis=1)[:, -2].min()
    assert bw[np.triu_indices(24, 1)].min() <= r <= second_best
