"""Quality of a GPU set, and a cache of subset tables per distinct topology.

Quality (DESIGN.md section 2) is the estimated ring all-reduce bandwidth of the set, its best
ring's bottleneck link, divided by the best set of the same size on an empty node: 1.0 means
"as good as this hardware can do". Topologies of up to `tables.EXACT_MAX_GPUS` GPUs read it
from the exact tables. Larger ones (a 72-GPU NVLink domain) use a greedy estimate: the set's
ring is found by a threshold search that is exact when Dirac's condition settles it and a lower
bound otherwise, and the reference best set comes from `tables.greedy_best_set`, so the
quality there is an estimate, clipped to [0, 1].
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np

from topology.model import NodeTopology
from topology.tables import (
    EXACT_MAX_GPUS,
    SubsetTables,
    build_tables,
    greedy_best_set,
    ring_bottleneck_all,
)


class TablesCache:
    """A thread-safe LRU of SubsetTables keyed by `NodeTopology.key()`.

    Topologies with equal links and GPU model share one entry, so a cluster of a thousand
    identical nodes builds its tables once.
    """

    def __init__(self, maxsize: int = 256) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[str, SubsetTables] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, topo: NodeTopology) -> SubsetTables:
        """The tables of `topo`, built on first use."""
        key = topo.key()
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
                self.hits += 1
                return hit
        # Build outside the lock: a 16-GPU build takes a while and other keys need not wait.
        # Two threads may build the same key once; the results are equal.
        tables = build_tables(topo)
        with self._lock:
            self.misses += 1
            self._data[key] = tables
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return tables

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._data.clear()


@functools.lru_cache(maxsize=1)
def default_tables_cache() -> TablesCache:
    """The process-wide cache used by `tables_for` when no cache is given."""
    return TablesCache()


def tables_for(topo: NodeTopology, cache: TablesCache | None = None) -> SubsetTables:
    """Cached SubsetTables of a topology (at most EXACT_MAX_GPUS GPUs), keyed by topo.key()."""
    return (cache or default_tables_cache()).get(topo)


def gpu_mask(gpus: Iterable[int], n: int | None = None) -> int:
    """Bitmask of GPU indices; ValueError on a duplicate, negative or out-of-range index."""
    mask = 0
    for g in gpus:
        gi = int(g)
        if gi < 0 or (n is not None and gi >= n):
            raise ValueError(f"GPU index {gi} out of range for {n} GPUs")
        if mask >> gi & 1:
            raise ValueError(f"GPU index {gi} given twice")
        mask |= 1 << gi
    return mask


def mask_gpus(mask: int) -> list[int]:
    """GPU indices of a bitmask, ascending."""
    return [i for i in range(int(mask).bit_length()) if mask >> i & 1]


def _hamiltonian_cycle_heuristic(adj: np.ndarray) -> bool:
    """True if a Hamiltonian cycle is found (or guaranteed by Dirac); False means "not found"."""
    m = adj.shape[0]
    deg = adj.sum(axis=1)
    if deg.min() >= math.ceil(m / 2):
        return True  # Dirac's theorem
    # Greedy walk from each start, always to the unvisited neighbour with the fewest unvisited
    # neighbours (Warnsdorff's rule), which finds a cycle in most structured graphs.
    for start in range(m):
        seen = np.zeros(m, dtype=bool)
        seen[start] = True
        cur = start
        for _ in range(m - 1):
            cand = np.flatnonzero(adj[cur] & ~seen)
            if cand.size == 0:
                break
            onward = (adj[cand] & ~seen).sum(axis=1)
            cur = int(cand[np.argmin(onward)])
            seen[cur] = True
        if seen.all() and adj[cur, start]:
            return True
    return False


def ring_bandwidth(bw: np.ndarray, gpus: Iterable[int]) -> float:
    """Bottleneck GB/s of the best ring through `gpus` (inf for one GPU, 0.0 for none).

    Exact (a Hamiltonian-cycle search per threshold) up to EXACT_MAX_GPUS GPUs in the set;
    above that a lower bound (see the module docstring).
    """
    idx = sorted(set(int(g) for g in gpus))
    m = len(idx)
    if m == 0:
        return 0.0
    if m == 1:
        return math.inf
    sub = np.asarray(bw, dtype=np.float64)[np.ix_(idx, idx)]
    if m == 2:
        return float(sub[0, 1])
    if m <= EXACT_MAX_GPUS:
        return float(ring_bottleneck_all(sub)[(1 << m) - 1])
    iu = np.triu_indices(m, 1)
    for t in sorted({float(x) for x in sub[iu]}, reverse=True):
        adj = sub >= t
        np.fill_diagonal(adj, False)
        if _hamiltonian_cycle_heuristic(adj):
            return t
    return float(sub[iu].min())  # the complete graph at the weakest link always has a ring


def greedy_set_quality(topo: NodeTopology, gpus: Iterable[int]) -> float:
    """Estimated quality for topologies too large for tables (see the module docstring)."""
    idx = sorted(set(int(g) for g in gpus))
    gpu_mask(idx, topo.n)
    k = len(idx)
    if k <= 1:
        return 1.0
    bw = topo.bandwidth()
    ref_set = greedy_best_set(bw, list(range(topo.n)), k)
    ref = ring_bandwidth(bw, ref_set or [])
    if ref <= 0:
        return 1.0
    return float(min(1.0, ring_bandwidth(bw, idx) / ref))


def set_quality(topo_or_tables: NodeTopology | SubsetTables, gpus: Iterable[int]) -> float:
    """Quality in [0, 1] of a GPU set: its ring bandwidth over the best same-size set's.

    Exact from the tables up to EXACT_MAX_GPUS GPUs; a greedy estimate above.
    """
    if isinstance(topo_or_tables, SubsetTables):
        return float(topo_or_tables.set_quality[gpu_mask(gpus, topo_or_tables.n)])
    if topo_or_tables.n > EXACT_MAX_GPUS:
        return greedy_set_quality(topo_or_tables, gpus)
    return float(tables_for(topo_or_tables).set_quality[gpu_mask(gpus, topo_or_tables.n)])


def best_gpus(
    topo: NodeTopology, free: Sequence[int] | None, k: int
) -> tuple[tuple[int, ...], float] | None:
    """The best k GPUs among `free` (all GPUs when None) and their quality; None if too few.

    From the tables up to EXACT_MAX_GPUS GPUs, else `greedy_best_set`.
    """
    free_list = list(range(topo.n)) if free is None else sorted(set(free))
    fmask = gpu_mask(free_list, topo.n)
    if k < 0 or k > len(free_list):
        return None
    if topo.n <= EXACT_MAX_GPUS:
        mask, q = tables_for(topo).best(fmask, k)
        return tuple(mask_gpus(mask)), q
    chosen = greedy_best_set(topo.bandwidth(), free_list, k)
    if chosen is None:
        return None
    return tuple(chosen), greedy_set_quality(topo, chosen)
