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

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

# Lingjun (Alibaba, 2023) switch tree: host -> ASW (top of rack) -> PSW (aggregation) -> DSW.
LINGJUN_LEVEL_KEYS: tuple[str, ...] = ("ASW", "PSW", "DSW")
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


def load_lingjun_topo(path: str | Path, *, qualify: bool = True) -> dict[str, dict[str, str]]:
    """Host -> {"ASW": ..., "PSW": ..., "DSW": ...} from the Lingjun `lingjun_topo.csv`.

    Switch names in that file are only unique under their parent (ASW `S14` exists under
    several PSWs), so by default each value is qualified by its ancestors (`G6/P10/S14`) and
    equal values mean the same physical switch. Raises ValueError naming a bad line.
    """
    out: dict[str, dict[str, str]] = {}
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh)
        want = ("ip", "DSW", "PSW", "ASW")
        missing = [c for c in want if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
        for row in reader:
            line = reader.line_num
            vals = {c: (row.get(c) or "").strip() for c in want}
            empty = [c for c in want if not vals[c]]
            if empty:
                raise ValueError(f"{path}: line {line}: empty {', '.join(empty)}")
            host = vals["ip"]
            if host in out:
                raise ValueError(f"{path}: line {line}: duplicate host {host}")
            dsw, psw, asw = vals["DSW"], vals["PSW"], vals["ASW"]
            if qualify:
                psw = f"{dsw}/{psw}"
                asw = f"{psw}/{asw}"
            out[host] = {"ASW": asw, "PSW": psw, "DSW": dsw}
    return out
