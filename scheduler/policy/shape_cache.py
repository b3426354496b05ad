"""Per-node results for one request shape, kept on the snapshot and refreshed only where nodes
changed.

A burst of pods is mostly copies of one shape (a Job's replicas, a gang's members): the filter
codes and scores of every node for that shape stay valid until the node changes, and a
decision changes one node. So the first pod of a shape is computed on every node and the
next ones only on the nodes whose `Snapshot.node_version` moved since, which turns a decision
from O(nodes) vectorized work into a gather plus O(changed nodes). Every row is computed by
the same functions as before, so the values are the ones an uncached call would give.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

from scheduler.policy.snapshot import Snapshot

MEMO_KEY = "shape_rows"
MAX_SHAPES = 32  # shapes kept per snapshot, least recently used dropped first

Compute = Callable[[np.ndarray], tuple[np.ndarray, ...]]


@dataclass(eq=False)
class ShapeRows:
    """Arrays over all nodes for one key, valid for the nodes at `versions`."""

    owner: object  # an object the key names by identity (kept alive so the id stays unique)
    generation: int
    versions: np.ndarray
    arrays: tuple[np.ndarray, ...]


def shape_rows(snap: Snapshot, key: Hashable, owner: object, compute: Compute) -> ShapeRows:
    """The up-to-date rows of `key` on `snap`; `compute(rows)` gives the arrays for node
    indices `rows` (each array's first axis aligned with rows)."""
    memo = snap.memo.get(MEMO_KEY)
    if not isinstance(memo, OrderedDict):
        memo = OrderedDict()
        snap.memo[MEMO_KEY] = memo
    e = memo.get(key)
    if not isinstance(e, ShapeRows) or e.owner is not owner:
        rows = np.arange(snap.n_nodes, dtype=np.int64)
        e = ShapeRows(owner, snap.generation, snap.node_version.copy(),
                      tuple(np.array(a) for a in compute(rows)))
        memo[key] = e
        while len(memo) > MAX_SHAPES:
            memo.popitem(last=False)
    elif e.generation != snap.generation:
        rows = np.flatnonzero(snap.node_version != e.versions)
        if rows.size:
            for dst, src in zip(e.arrays, compute(rows), strict=True):
                dst[rows] = src
            e.versions[rows] = snap.node_version[rows]
        e.generation = snap.generation
    memo.move_to_end(key)
    return e
