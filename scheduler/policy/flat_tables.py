"""Every distinct topology's subset tables laid end to end, so one fancy-index looks up the
best free GPU set (and its quality, and the value of what stays free) on all nodes at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.policy.snapshot import Snapshot


@dataclass(frozen=True, slots=True, eq=False)
class FlatTables:
    """Per topology id t (the last entry is a sentinel for CPU nodes, topo_id -1):
    best_set[set_base[t] + F * (n[t] + 1) + k] and best_quality[...] as in SubsetTables,
    value[value_base[t] + F]; `exact[t]` is False where no tables exist (> 16 GPUs)."""

    n: np.ndarray
    exact: np.ndarray
    set_base: np.ndarray
    best_set: np.ndarray
    best_quality: np.ndarray
    value_base: np.ndarray
    value: np.ndarray
    n_topologies: int
    # Every topology has tables (CPU nodes aside, whose free mask is 0 and so read entry 0
    # anyway): the lookups need not mask out topologies without tables.
    all_exact: bool

    def positions(self, topo: np.ndarray, free_mask: np.ndarray, k: int) -> np.ndarray:
        """Flat positions of (F, k) for each node; k is clipped to each topology's size."""
        n = self.n[topo]
        pos: np.ndarray = self.set_base[topo] + free_mask * (n + 1) + np.minimum(k, n)
        if self.all_exact:
            return pos
        # Topologies without tables (and CPU nodes) read the one-entry empty table at 0.
        out: np.ndarray = np.where(self.exact[topo], pos, 0)
        return out

    def value_of(self, topo: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """value[mask] of each node's topology (0 without tables)."""
        out: np.ndarray = self.value[self.value_base[topo] + np.where(self.exact[topo], mask, 0)]
        return out


def flat_tables(snap: Snapshot) -> FlatTables:
    """The snapshot's flattened tables, built once per set of topologies and cached."""
    tix = snap.topo_index
    cached = snap.memo.get("flat_tables")
    if isinstance(cached, FlatTables) and cached.n_topologies == len(tix.topologies):
        return cached
    ns: list[int] = []
    exact: list[bool] = []
    set_base: list[int] = []
    value_base: list[int] = []
    sets: list[np.ndarray] = []
    quals: list[np.ndarray] = []
    values: list[np.ndarray] = []
    pos = vpos = 0
    # A one-entry "empty" table first: sentinel and no-table topologies point at it
    # (best set 0, quality -1, value 0).
    sets.append(np.zeros(1, np.int64))
    quals.append(np.full(1, -1.0))
    values.append(np.zeros(1))
    pos = vpos = 1
    for topo, tables in zip(tix.topologies, tix.tables, strict=True):
        if tables is None:
            ns.append(topo.n)
            exact.append(False)
            set_base.append(0)
            value_base.append(0)
            continue
        ns.append(tables.n)
        exact.append(True)
        set_base.append(pos)
        value_base.append(vpos)
        sets.append(tables.best_set.ravel())
        quals.append(tables.best_quality.ravel())
        values.append(tables.value)
        pos += tables.best_set.size
        vpos += tables.value.size
    # Sentinel last, so topo_id -1 indexes it.
    ns.append(0)
    exact.append(False)
    set_base.append(0)
    value_base.append(0)
    ft = FlatTables(
        n=np.array(ns, np.int64),
        exact=np.array(exact, bool),
        set_base=np.array(set_base, np.int64),
        best_set=np.concatenate(sets),
        best_quality=np.concatenate(quals),
        value_base=np.array(value_base, np.int64),
        value=np.concatenate(values),
        n_topologies=len(tix.topologies),
        all_exact=all(exact[:-1]),
    )
    snap.memo["flat_tables"] = ft
    return ft
