"""The best free set of k whole GPUs on each node, read from the flattened subset tables."""

from __future__ import annotations

import numpy as np

from scheduler.policy.flat_tables import FlatTables
from scheduler.policy.snapshot import Snapshot


def whole_set_lookup(
    snap: Snapshot, idx: np.ndarray, k: int, flat: FlatTables
) -> tuple[np.ndarray, np.ndarray]:
    """(best free k-set mask, its quality) per node of idx; quality -1 where none is free.

    Nodes without exact tables (> 16 GPUs) get the lowest k free GPUs at quality 0 (unknown)
    here; `assign` gives them the greedy set instead.
    """
    topo = snap.topo_id[idx]
    fm = snap.free_mask[idx]
    pos = flat.positions(topo, fm, k)
    sets = flat.best_set[pos]
    q = flat.best_quality[pos]
    if flat.all_exact:
        return sets, q
    noex = ~flat.exact[topo] & (snap.gpu_count[idx] > 0)
    if noex.any():
        enough = np.bitwise_count(fm[noex]) >= k
        q = q.copy()
        q[noex] = np.where(enough, 0.0, -1.0)
    return sets, q
