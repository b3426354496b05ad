"""Network levels between nodes: which switch domains (NVLink domain, leaf block, spine,
datacenter) two or more nodes share, from node labels.

Levels are given as label keys ordered narrowest first, the way NVIDIA's topograph labels nodes
and Kueue/KAI topology CRDs list levels. The keys are always an argument: this package does not
know the scheduler's defaults.

A node without a label for a level is in no domain at that level: it shares that level with
nobody (in `level_ids` it gets -1, which never counts as equal to anything). These functions
are the one definition of that rule: the policy's snapshot and gang planner and the
simulator's speed model use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

MISSING = -1


def level_names(labels: Mapping[str, str], keys: Sequence[str]) -> tuple[str, ...]:
    """One node's domain name per level (`keys` narrowest first); "" where it has no label."""
    return tuple(labels.get(k, "") for k in keys)


def level_ids(levels_per_node: Sequence[Sequence[str]]) -> np.ndarray:
    """int32 array (nodes, levels): each level's domain names coded 0.. in order of first use.

    `levels_per_node[i]` is node i's names narrowest first (level_names); "" or a missing
    entry is MISSING (-1), which callers treat as "shares with nobody", never as a domain of
    its own. The width is the longest tuple.
    """
    n_levels = max((len(names) for names in levels_per_node), default=0)
    out = np.full((len(levels_per_node), n_levels), MISSING, dtype=np.int32)
    for lv in range(n_levels):
        codes: dict[str, int] = {}
        for i, names in enumerate(levels_per_node):
            name = names[lv] if lv < len(names) else ""
            if name:
                out[i, lv] = codes.setdefault(name, len(codes))
    return out


def common_level(ids: np.ndarray, nodes: Sequence[int] | np.ndarray) -> int | None:
    """Narrowest level (column of `ids`, a level_ids array) that all the given nodes (row
    indices) share; None if none, or no nodes. A MISSING id never matches, not even another."""
    idx = np.asarray(nodes, dtype=np.int64)
    if idx.size == 0:
        return None
    sub = ids[idx]
    same = np.all(sub == sub[0], axis=0) & (sub[0] != MISSING)
    hit = np.flatnonzero(same)
    return int(hit[0]) if hit.size else None


def domain_ids(ids: np.ndarray, level: int | None) -> np.ndarray:
    """int64 domain id per node at a level (column of `ids`), where each MISSING node gets an
    id of its own above all real ones; level None is the whole cluster as one domain (0)."""
    n = ids.shape[0]
    if level is None:
        return np.zeros(n, dtype=np.int64)
    dom = ids[:, level].astype(np.int64)
    unknown = dom < 0
    top = int(dom.max()) + 1 if n else 0
    dom[unknown] = top + np.flatnonzero(unknown)
    return dom
