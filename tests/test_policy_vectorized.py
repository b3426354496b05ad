"""The vectorized scoring equals a plain per-node loop (the loop lives only here)."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_policy_properties import TOPOLOGIES, make_snapshot, requests

from scheduler.contract.request import PodRequest
from scheduler.policy import (
    DEFAULT_CONFIG,
    Snapshot,
    TypicalWorkload,
    WorkloadClasses,
    filter_nodes,
    node_fragmentation,
    place,
    score_nodes,
    snapshot_fragmentation,
)
from scheduler.policy.node_order import node_order
from scheduler.policy.share_patterns import SIZE_MIX, lp_prices, share_demand
from scheduler.policy.shares import TIE_SCALE

TIE = TIE_SCALE


def frag_loop(free: list[int], cpu: int, classes: WorkloadClasses) -> float:
    """FGD's node fragmentation, literally (frag.go): per class, loop over GPUs."""
    total = sum(free)
    out = 0.0
    for k, m, c, w in zip(classes.gpus, classes.milli, classes.cpu, classes.weight, strict=True):
        usable = sum(1 for f in free if f >= m)
        fits = usable >= k and cpu >= c
        out += w * (sum(f for f in free if f < m) if fits else total)
    return out


def waste(x: int, classes: WorkloadClasses) -> float:
    return x * float(sum(w for m, w in zip(classes.milli, classes.weight, strict=True) if m > x))


@cache
def pattern_values(sizes: tuple[int, ...], demand: tuple[float, ...]) -> tuple[float, ...]:
    """K[r]: the best priced share pattern within r thousandths, by a plain knapsack loop."""
    y = [(1 - SIZE_MIX) * p + SIZE_MIX * s / 1000
         for p, s in zip(lp_prices(sizes, demand).tolist(), sizes, strict=True)] if sizes else []
    best = [0.0] * 1001
    for r in range(1, 1001):
        best[r] = max([best[r - 1]] + [best[r - s] + p
                                       for s, p in zip(sizes, y, strict=True) if s <= r])
    return tuple(best)


def best_ring(snap: Snapshot, k: int) -> float:
    """The best k-set's ring GB/s on any empty node of the snapshot."""
    rings = [float(t.ring[int(t.best_set[(1 << t.n) - 1, k])]) for i in range(snap.n_nodes)
             if (t := snap.tables_of(i)) is not None and t.n >= k]
    return max(rings)


def premium(snap: Snapshot, node: int) -> float:
    """log2 of the node's best GPU pair's GB/s over PCIe 4.0 x16 (31.5), at least 0; 0 once
    the node has a GPU in use."""
    if int(snap.free_mask[node]) != (1 << int(snap.gpu_count[node])) - 1:
        return 0.0
    bw = snap.topology_of(node).bandwidth()
    n = len(bw)
    top = max((float(bw[i][j]) for i in range(n) for j in range(n) if i != j), default=0.0)
    return max(0.0, math.log2(top / 31.5)) if top else 0.0


def score_loop(req: PodRequest, snap: Snapshot, node: int, classes: WorkloadClasses) -> float:
    """One node's score from scratch, following PolicyConfig's formula term by term."""
    cfg = DEFAULT_CONFIG
    n = int(snap.gpu_count[node])
    free = [int(x) for x in snap.milli_free[node, :n]]
    cpu = int(snap.cpu_free[node])
    fmask = int(snap.free_mask[node])
    tables = snap.tables_of(node)
    after = list(free)
    score = 0.0
    loss = 0.0
    if req.gpus:
        assert tables is not None
        s = int(tables.best_set[fmask, req.gpus])
        q = float(tables.best_quality[fmask, req.gpus])
        for g in range(n):
            if s >> g & 1:
                after[g] = 0
        loss = float(tables.value[fmask] - tables.value[fmask & ~s])
        score += cfg.topology_weight_for(req.gpus) * q
        if req.gpus >= 2:
            score += cfg.bandwidth_weight * min(0.0, math.log2(float(tables.ring[s])
                                                               / best_ring(snap, req.gpus)))
        else:
            score -= cfg.premium_weight * premium(snap, node)
    elif req.is_share:
        best, best_cost = -1, float("inf")
        for g in range(n):
            ok_mem = int(snap.gpu_mem_free[node, g]) >= req.gpu_memory_mib
            if req.gpu_milli <= free[g] < 1000 and ok_mem:
                cost = waste(free[g] - req.gpu_milli, classes) - waste(free[g], classes)
                cost += TIE * free[g]
                if cost < best_cost:
                    best, best_cost = g, cost
        assert tables is not None
        one = int(tables.best_set[fmask, 1]) if fmask else 0
        if one:
            g1 = one.bit_length() - 1
            cost = waste(1000 - req.gpu_milli, classes) - waste(1000, classes) + TIE * 1001
            if int(snap.gpu_mem_total[node, g1]) >= req.gpu_memory_mib and cost < best_cost:
                best = g1
                loss = float(tables.value[fmask] - tables.value[fmask & ~one])
        if free[best] == 1000:
            score -= cfg.premium_weight * premium(snap, node)
        after[best] -= req.gpu_milli
        k = pattern_values(*share_demand(classes))
        score += cfg.pattern_weight * (k[after[best]] - k[free[best]])
    dfrag = frag_loop(after, cpu - req.cpu_milli, classes) - frag_loop(free, cpu, classes)
    # CPU stranding: free thousandths beyond what the free CPU feeds at the mix's CPU per
    # thousandth (GPU classes, weighted by demand).
    gpu_classes = [(k, m, c, w) for k, m, c, w in
                   zip(classes.gpus, classes.milli, classes.cpu, classes.weight, strict=True)
                   if k < 64]
    demand = sum(w * k * m for k, m, c, w in gpu_classes)
    if demand > 0 and cfg.strand_weight:
        kappa = sum(w * c for k, m, c, w in gpu_classes) / demand
        dfrag += cfg.strand_weight * max(0.0, max(0.0, sum(after) - (cpu - req.cpu_milli)
                                                  / kappa) - max(0.0, sum(free) - cpu / kappa))
    if cfg.frag_step:
        dfrag = math.ceil(dfrag / cfg.frag_step - 1e-3) * cfg.frag_step
    score -= cfg.frag_weight * dfrag / 1000 + cfg.value_weight * loss
    score -= cfg.order_weight * float(node_order(np.array([node]))[0])
    if req.wants_gpu:
        score += cfg.pack_weight * (1 - sum(free) / (1000 * max(n, 1)))
    else:
        score -= cfg.cpu_node_weight * (n > 0)
    return score


clusters = st.lists(
    st.tuples(st.integers(0, len(TOPOLOGIES) - 1), st.sampled_from([8000, 32000, 96000]),
              st.just("")),
    min_size=1, max_size=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters, st.lists(requests(), max_size=20), requests())
def test_vectorized_scores_equal_the_per_node_loop(
    spec: list[tuple[int, int, str]], background: list[PodRequest], req: PodRequest
) -> None:
    snap = make_snapshot(spec)
    mix = TypicalWorkload(refresh_every=1)
    for i, b in enumerate(background):
        b = PodRequest(f"b{i}", b.cpu_milli, b.memory_mib, b.gpus, b.gpu_milli,
                       b.gpu_memory_mib, b.allowed_models)
        mix.observe(b)
        a = place(b, snap, mix)
        if a is not None:
            snap.allocate(a)
    classes = mix.classes()
    feasible = filter_nodes(req, snap).feasible
    got = score_nodes(req, snap, feasible, mix)
    want = np.array([score_loop(req, snap, int(i), classes) for i in feasible])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3)
    # And the cached, float32 fragmentation equals FGD's literal definition.
    loop = [frag_loop([int(x) for x in snap.milli_free[i, : int(snap.gpu_count[i])]],
                      int(snap.cpu_free[i]), classes) for i in range(snap.n_nodes)]
    np.testing.assert_allclose(snapshot_fragmentation(snap, classes), loop, rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose(node_fragmentation(snap.milli_free, snap.cpu_free, classes), loop,
                               rtol=1e-9, atol=1e-6)
