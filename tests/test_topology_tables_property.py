"""Property tests: the exact tables against brute force on random topologies of up to 8 GPUs."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from topo_m_render import render_topo_m

from topology.annotation import from_json, to_json
from topology.model import GPU, NIC, NodeTopology
from topology.quality import ring_bandwidth, set_quality
from topology.smi import parse_topo_m
from topology.tables import build_tables

KINDS = [f"NV{i}" for i in range(1, 13)] + ["PIX", "PXB", "PHB", "NODE", "SYS"]
MODELS = ["Tesla V100-SXM2-32GB", "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3", "NVIDIA L40S"]
EPS = 1e-9


@st.composite
def topologies(
    draw: st.DrawFn, max_gpus: int = 8, with_nics: bool = False, min_gpus: int = 1
) -> NodeTopology:
    n = draw(st.integers(min_value=min_gpus, max_value=max_gpus))
    # Few distinct kinds per topology make ties (the hard case for tie-breaks) common.
    palette = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=5, unique=True))
    links = [["X"] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            links[i][j] = links[j][i] = draw(st.sampled_from(palette))
    model = draw(st.sampled_from(MODELS))
    numa = draw(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=n, max_size=n))
    gpus = tuple(GPU(index=i, model=model, memory_mib=1024, numa_node=numa[i]) for i in range(n))
    nics: tuple[NIC, ...] = ()
    if with_nics:
        k = draw(st.integers(0, 3))
        pcie = ["PIX", "PXB", "PHB", "NODE", "SYS"]
        nics = tuple(
            NIC(
                f"mlx5_{m}",
                tuple(draw(st.sampled_from(pcie)) for _ in range(n)),
                draw(st.one_of(st.none(), st.integers(0, 3))),
            )
            for m in range(k)
        )
    return NodeTopology(gpus=gpus, links=tuple(tuple(r) for r in links), nics=nics)


def brute_ring(bw: np.ndarray, gpus: tuple[int, ...]) -> float:
    """Best ring's bottleneck by trying every cyclic order."""
    if len(gpus) == 1:
        return math.inf
    if len(gpus) == 2:
        return float(bw[gpus[0], gpus[1]])
    first, rest = gpus[0], gpus[1:]
    best = 0.0
    for perm in itertools.permutations(rest):
        order = (first, *perm)
        bottleneck = min(
            float(bw[order[i], order[(i + 1) % len(order)]]) for i in range(len(order))
        )
        best = max(best, bottleneck)
    return best


def brute_psum(bw: np.ndarray, gpus: tuple[int, ...]) -> float:
    return float(sum(bw[i, j] for i, j in itertools.combinations(gpus, 2)))


def bits(mask: int) -> tuple[int, ...]:
    return tuple(i for i in range(mask.bit_length()) if mask >> i & 1)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies())
def test_table_best_set_is_never_beaten(topo: NodeTopology) -> None:
    check_against_brute_force(topo)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies(min_gpus=7))
def test_table_best_set_is_never_beaten_on_full_size_nodes(topo: NodeTopology) -> None:
    # Hypothesis favours small sizes; make sure 7- and 8-GPU nodes are covered.
    check_against_brute_force(topo)


def check_against_brute_force(topo: NodeTopology) -> None:
    """Every (free mask, size) of the tables against every subset, by brute force."""
    n = topo.n
    bw = topo.bandwidth()
    tables = build_tables(topo)
    ring = {m: brute_ring(bw, bits(m)) for m in range(1, 1 << n)}
    psum = {m: brute_psum(bw, bits(m)) for m in range(1, 1 << n)}
    best_ring_of_size = {
        k: max(ring[m] for m in ring if m.bit_count() == k) for k in range(2, n + 1)
    }
    for free in range(1 << n):
        for k in range(1, n + 1):
            got, q = tables.best(free, k)
            if free.bit_count() < k:
                assert (got, q) == (0, -1.0)
                continue
            assert got & ~free == 0, "busy GPU used"
            assert got.bit_count() == k, "wrong size"
            if k == 1:
                assert q == 1.0
                continue
            # Exact quality: ring over the best ring of that size on an empty node.
            assert math.isclose(q, ring[got] / best_ring_of_size[k], rel_tol=1e-9)
            for other in itertools.combinations(bits(free), k):
                om = sum(1 << i for i in other)
                assert ring[got] >= ring[om] - EPS, (free, k, bits(got), other)
                if math.isclose(ring[got], ring[om], rel_tol=1e-9):
                    assert psum[got] >= psum[om] - 1e-6, (free, k, bits(got), other)


@settings(max_examples=40, deadline=None)
@given(topologies(max_gpus=7), st.data())
def test_quality_helpers_match_brute_force(topo: NodeTopology, data: st.DataObject) -> None:
    gpus = data.draw(st.lists(st.integers(0, topo.n - 1), min_size=1, unique=True))
    bw = topo.bandwidth()
    assert ring_bandwidth(bw, gpus) == brute_ring(bw, tuple(sorted(gpus)))
    tables = build_tables(topo)
    assert set_quality(topo, gpus) == set_quality(tables, gpus)
    assert 0.0 < set_quality(tables, gpus) <= 1.0


@settings(max_examples=60, deadline=None)
@given(topologies(with_nics=True))
def test_random_topologies_round_trip_text_and_json(topo: NodeTopology) -> None:
    text = render_topo_m(topo)
    assert parse_topo_m(text, model=topo.model, memory_mib=1024) == topo
    assert parse_topo_m(text.expandtabs(8), model=topo.model, memory_mib=1024) == topo
    assert from_json(to_json(topo)) == topo
