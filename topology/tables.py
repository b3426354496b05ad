"""Best GPU subsets, precomputed once per distinct topology.

For every free-GPU mask F and request size k the tables hold the best k-subset of F and its
quality, so choosing GPUs on a node is a lookup and can be vectorised over all nodes at once.

Order of preference for a k-subset s of F (all from the topology, no special cases):
1. ring bandwidth of s (the best ring's bottleneck link, exact Hamiltonian-cycle search);
2. sum of pairwise bandwidth inside s;
3. usefulness of what is left, `value[F - s]`: the sum over sizes j of the best j-set quality
   still available. This is what makes a 1-GPU pod take the GPU whose loss hurts the remaining
   sets least (HAMi's rule for single-GPU pods), and a 2-GPU pod keep an NVLinked quad whole.
Exact for up to EXACT_MAX_GPUS GPUs; the third rule is applied exactly up to
TIEBREAK_EXACT_MAX_GPUS (it needs all 3^n (F, s) pairs), and above that only for k = 1.
Topologies above EXACT_MAX_GPUS (a 72-GPU NVLink domain) use `greedy_best_set`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from topology.model import NodeTopology

EXACT_MAX_GPUS = 16
TIEBREAK_EXACT_MAX_GPUS = 12


def popcounts(n: int) -> np.ndarray:
    """Popcount of every mask below 2^n, as int64."""
    masks = np.arange(1 << n, dtype=np.int64)
    pop = np.zeros(1 << n, dtype=np.int64)
    for b in range(n):
        pop += (masks >> b) & 1
    return pop


def _lowbit_index(masks: np.ndarray) -> np.ndarray:
    low = masks & -masks
    out = np.zeros_like(masks)
    nz = low > 0
    out[nz] = np.log2(low[nz]).astype(np.int64)
    return out


def ring_bottleneck_all(bw: np.ndarray) -> np.ndarray:
    """For every subset mask, the bottleneck bandwidth of its best ring (exact).

    A ring over s exists at threshold t iff the graph of links >= t has a Hamiltonian cycle on
    s; a bitset DP over all masks per distinct threshold finds the largest such t. Singletons get
    +inf, the empty set 0.
    """
    n = bw.shape[0]
    size = 1 << n
    masks = np.arange(size, dtype=np.int64)
    pop = popcounts(n)
    low = _lowbit_index(masks)
    ring = np.zeros(size, dtype=np.float64)
    ring[pop == 1] = np.inf
    iu, ju = np.triu_indices(n, 1)
    if n >= 2:
        ring[(1 << iu) | (1 << ju)] = bw[iu, ju]
    layers = [masks[pop == k] for k in range(n + 1)]
    unresolved = pop >= 3
    for t in sorted({float(x) for x in bw[iu, ju]}, reverse=True):
        if not unresolved.any():
            break
        adj = np.array(
            [sum(1 << v for v in range(n) if v != u and bw[u, v] >= t) for u in range(n)],
            dtype=np.int64,
        )
        # ham[m]: bitmask of end vertices of Hamiltonian paths over m that start at lowbit(m)
        ham = np.zeros(size, dtype=np.int64)
        ham[1 << np.arange(n, dtype=np.int64)] = 1 << np.arange(n, dtype=np.int64)
        for k in range(1, n):
            ms = layers[k]
            ends = ham[ms]
            lb = low[ms]
            live = ends != 0
            ms, ends, lb = ms[live], ends[live], lb[live]
            for u in range(n):
                ok = (((ms >> u) & 1) == 0) & (u > lb) & ((ends & adj[u]) != 0)
                new = ms[ok] | (1 << u)
                ham[new] |= 1 << u
        cyc = unresolved & ((ham & adj[low]) != 0)
        ring[cyc] = t
        unresolved &= ~cyc
    return ring


def pairwise_sum_all(bw: np.ndarray) -> np.ndarray:
    """For every subset mask, the sum of bandwidth over its GPU pairs."""
    n = bw.shape[0]
    masks = np.arange(1 << n, dtype=np.int64)
    bits = ((masks[:, None] >> np.arange(n)) & 1).astype(np.float64)
    out: np.ndarray = np.einsum("mi,ij,mj->m", bits, bw, bits) / 2.0
    return out


def _subset_max(vals: np.ndarray, n: int) -> np.ndarray:
    """out[F] = max over s subset of F of vals[s] (superset-closure of a max)."""
    out = vals.copy()
    masks = np.arange(1 << n, dtype=np.int64)
    for b in range(n):
        has = masks[(masks >> b) & 1 == 1]
        out[has] = np.maximum(out[has], out[has ^ (1 << b)])
    return out


def _dense_rank(x: np.ndarray) -> np.ndarray:
    # Round first so float noise in sums does not split equal keys.
    return np.unique(np.round(x, 6), return_inverse=True)[1].astype(np.int64)


@dataclass(frozen=True, slots=True, eq=False)
class SubsetTables:
    """Best k-subset of every free mask for one topology.

    `best_set[F, k]` is a GPU bitmask (0 when F has fewer than k GPUs), `best_quality[F, k]`
    its quality in [0, 1] (-1 when impossible), `set_quality[s]` the quality of any set s,
    `value[F]` how useful free set F is to future requests (sum of best quality per size).
    """

    key: str
    n: int
    bandwidth: np.ndarray
    best_set: np.ndarray
    best_quality: np.ndarray
    set_quality: np.ndarray
    value: np.ndarray
    ring: np.ndarray

    def best(self, free_mask: int, k: int) -> tuple[int, float]:
        """(mask of the best k-set inside free_mask, its quality); (0, -1.0) if impossible."""
        return int(self.best_set[free_mask, k]), float(self.best_quality[free_mask, k])


def build_tables(topo: NodeTopology) -> SubsetTables:
    """Precompute the subset tables of a topology of at most EXACT_MAX_GPUS GPUs."""
    n = topo.n
    if n > EXACT_MAX_GPUS:
        raise ValueError(
            f"topology has {n} GPUs; exact tables stop at {EXACT_MAX_GPUS}, use greedy_best_set"
        )
    bw = np.asarray(topo.bandwidth(), dtype=np.float64)
    size = 1 << n
    masks = np.arange(size, dtype=np.int64)
    pop = popcounts(n)
    ring = ring_bottleneck_all(bw) if n else np.zeros(1)
    psum = pairwise_sum_all(bw) if n else np.zeros(1)

    # Normalise ring bandwidth by the best set of the same size on an empty node.
    best_ring = np.zeros(n + 1)
    for k in range(2, n + 1):
        best_ring[k] = ring[pop == k].max()
    quality = np.ones(size, dtype=np.float64)
    multi = pop >= 2
    quality[multi] = ring[multi] / np.where(best_ring[pop[multi]] > 0, best_ring[pop[multi]], 1)
    quality[0] = 1.0

    # Best achievable quality per (F, k), independent of tie-breaks; it defines value[F].
    best_q = np.full((size, n + 1), -1.0)
    best_q[:, 0] = 1.0
    for k in range(1, n + 1):
        best_q[:, k] = _subset_max(np.where(pop == k, quality, -1.0), n)
    value = np.where(best_q[:, 1:] > 0, best_q[:, 1:], 0.0).sum(axis=1)

    key1 = _dense_rank(ring) * (int(_dense_rank(psum).max()) + 1) + _dense_rank(psum)
    vrank = _dense_rank(value)
    best_set = np.zeros((size, n + 1), dtype=np.int64)
    if n <= TIEBREAK_EXACT_MAX_GPUS:
        f_all, s_all = _all_submask_pairs(n)
        k_all = pop[s_all]
        comp = key1[s_all] * (int(vrank.max()) + 1) + vrank[f_all ^ s_all]
        group = f_all * (n + 1) + k_all
        order = np.lexsort((-s_all, comp, group))
        g_sorted = group[order]
        last = np.r_[g_sorted[1:] != g_sorted[:-1], True]
        win = order[last]
        best_set[f_all[win], k_all[win]] = s_all[win]
    else:
        # Rules 1-2 exactly by a subset-max over the set key; rule 3 for k = 1 only.
        for k in range(2, n + 1):
            vals = np.where(pop == k, key1 * size + (size - 1 - masks), -1)
            best = _subset_max(vals, n)
            ok = best >= 0
            best_set[ok, k] = size - 1 - (best[ok] % size)
        bestv = np.full(size, -1, dtype=np.int64)
        for b in range(n):
            has = ((masks >> b) & 1) == 1
            cand = np.where(has, vrank[masks ^ (1 << b)], -1)
            better = cand > bestv
            bestv[better] = cand[better]
            best_set[better, 1] = 1 << b
    feasible = pop[:, None] >= np.arange(n + 1)[None, :]
    best_set[~feasible] = 0
    best_quality = np.where(feasible, quality[best_set], -1.0)
    for arr in (bw, best_set, best_quality, quality, value, ring):
        arr.setflags(write=False)
    return SubsetTables(topo.key(), n, bw, best_set, best_quality, quality, value, ring)


def _all_submask_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (F, s) with s a subset of F over n bits: 3^n pairs."""
    f = np.zeros(1, dtype=np.int64)
    s = np.zeros(1, dtype=np.int64)
    for b in range(n):
        bit = np.int64(1 << b)
        f = np.concatenate([f, f | bit, f | bit])
        s = np.concatenate([s, s, s | bit])
    return f, s


def greedy_best_set(bw: np.ndarray, free: list[int], k: int) -> list[int] | None:
    """Greedy k-set for topologies too large for tables (e.g. a 72-GPU NVLink domain).

    Seeds with the free GPU best connected to the other free GPUs, then adds the GPU that
    maximises (weakest link to the chosen set, total bandwidth to it). Not guaranteed optimal.
    """
    if k > len(free) or k <= 0:
        return [] if k == 0 else None
    fr = np.asarray(free, dtype=np.int64)
    sub = bw[np.ix_(fr, fr)]
    chosen = [int(np.argmax(sub.sum(axis=1)))]
    rest = [i for i in range(len(fr)) if i != chosen[0]]
    while len(chosen) < k:
        cols = sub[np.ix_(rest, chosen)]
        score = cols.min(axis=1) * 1e6 + cols.sum(axis=1)
        pick = rest.pop(int(np.argmax(score)))
        chosen.append(pick)
    return sorted(int(fr[i]) for i in chosen)
