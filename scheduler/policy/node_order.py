"""The tie-break between equally good nodes: a fixed pseudo-random rank per node index."""

from __future__ import annotations

import numpy as np

from scheduler.policy.snapshot import Snapshot


def node_order(idx: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random rank in [0, 1) per node index (splitmix-style hash).

    Ties go to the lowest rank, so they always fall on the same nodes (packing) without
    following the snapshot's node order, which groups nodes of one kind together.
    """
    h = (idx.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(32)
    out: np.ndarray = (h >> np.uint64(11)).astype(np.float64) / 2.0**53
    return out


def node_ranks(snap: Snapshot) -> np.ndarray:
    """node_order of every node of the snapshot, hashed once per snapshot."""
    ranks = snap.memo.get("node_order")
    if not isinstance(ranks, np.ndarray) or ranks.shape != (snap.n_nodes,):
        ranks = node_order(np.arange(snap.n_nodes, dtype=np.int64))
        snap.memo["node_order"] = ranks
    return ranks
