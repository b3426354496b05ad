"""Network levels between nodes: which switch domains (NVLink domain, leaf block, spine,
datacenter) two or more nodes share, from node labels.

Levels are given as label keys ordered narrowest first, the way NVIDIA's topograph labels nodes
and Kueue/KAI topology CRDs list levels. The keys are always an argument: this package does not
know the scheduler's defaults.

A node without a label for a level is in no domain at that level: it shares that level with
nobody (in `level_ids` it gets -1, which never counts as equal to anything).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Lingjun (Alibaba, 2023) switch tree: host -> ASW (top of rack) -> PSW (aggregation) -> DSW.
LINGJUN_LEVEL_KEYS: tuple[str, ...] = ("ASW", "PSW", "DSW")
MISSING = -1


def lowest_common_level(
    node_labels: Sequence[Mapping[str, str]], keys: Sequence[str]
) -> int | None:
    """Index in `keys` of the narrowest level whose label value all nodes share; None if none.

    A node missing the label of a level never shares that level. No nodes: None.
    """
    if not node_labels:
        return None
    for li, key in enumerate(keys):
        first = node_labels[0].get(key)
        if first is not None and all(lbl.get(key) == first for lbl in node_labels[1:]):
            return li
    return None


def level_ids(labels_per_node: Sequence[Mapping[str, str]], keys: Sequence[str]) -> np.ndarray:
    """int32 array (nodes, levels): each level's label values coded 0.. in order of first use.

    A missing label is -1 (MISSING); callers must treat -1 as "shares with nobody", never as a
    domain of its own (`NetworkLevels` does).
    """
    out = np.full((len(labels_per_node), len(keys)), MISSING, dtype=np.int32)
    for li, key in enumerate(keys):
        codes: dict[str, int] = {}
        for ni, labels in enumerate(labels_per_node):
            v = labels.get(key)
            if v is not None:
                out[ni, li] = codes.setdefault(v, len(codes))
    return out


@dataclass(frozen=True, slots=True, eq=False)
class NetworkLevels:
    """Integer-coded network domains of a list of nodes, for vectorized gang placement.

    `ids[i, l]` is node i's domain at level l (keys narrowest first), -1 when unlabelled.
    """

    keys: tuple[str, ...]
    ids: np.ndarray

    @classmethod
    def from_labels(
        cls, labels_per_node: Sequence[Mapping[str, str]], keys: Sequence[str]
    ) -> NetworkLevels:
        """Code the labels of each node (same order as the nodes)."""
        ids = level_ids(labels_per_node, keys)
        ids.setflags(write=False)
        return cls(tuple(keys), ids)

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return int(self.ids.shape[0])

    def common_level(self, nodes: Sequence[int] | np.ndarray) -> int | None:
        """Narrowest level that all the given nodes (indices) share; None if none."""
        idx = np.asarray(nodes, dtype=np.int64)
        if idx.size == 0:
            return None
        sub = self.ids[idx]
        same = np.all(sub == sub[0], axis=0) & (sub[0] != MISSING)
        hit = np.flatnonzero(same)
        return int(hit[0]) if hit.size else None

    def domains(self, level: int) -> list[np.ndarray]:
        """The node index groups at a level; each unlabelled node is a group of its own."""
        col = self.ids[:, level]
        groups: list[np.ndarray] = []
        labelled = col != MISSING
        if labelled.any():
            order = np.argsort(col, kind="stable")
            order = order[labelled[order]]
            vals = col[order]
            cuts = np.flatnonzero(np.diff(vals)) + 1
            groups.extend(np.split(order, cuts))
        groups.extend(np.array([i]) for i in np.flatnonzero(~labelled))
        return groups


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
