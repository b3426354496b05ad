"""Absolute interconnect bandwidth (GB/s) of the GPU sets the score assumed, on all nodes at once.

Topology quality (topology/tables.py) is normalised per topology: a PCIe box's best 8-set and
an NVSwitch box's both score 1.0. That is the right measure for choosing GPUs inside one node,
and a wrong one between nodes of different hardware, where what the job gets is the ring's
bottleneck in GB/s (12.6 GB/s across the sockets of a PCIe L4 box, 450 GB/s on a DGX H100).
This module gives the score those absolute figures:

- `log_bandwidth_ratio`: log2 of the chosen set's ring bandwidth over the best ring of that size
  on any empty node of the snapshot (0 on the best hardware, -1 per halving). One constant
  reference per (snapshot, size), so identical nodes get identical values and gang domains
  compare on one scale.
- `link_premium`: how much better linked than plain PCIe a node's GPUs are, log2 of its best
  GPU pair's GB/s over a PCIe 4.0 x16 link (0 for PCIe boxes, ~3.8 for NVSwitch H100). The
  score charges it to 1-GPU and fractional pods that take a wholly free GPU, so those pods
  fill PCIe nodes before they break up NVLink/NVSwitch domains.

Nodes of more than 16 GPUs have no exact tables; their sets are rated at the topology's weakest
GPU pair (a lower bound for any ring on it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.policy.snapshot import Snapshot
from topology.links import PCIE_X16_GBPS

# The plain-PCIe baseline of link_premium: a PCIe 4.0 x16 link (31.5 GB/s), the slot of every
# current PCIe inference card (L4, L40S, A10).
PCIE_BASELINE_GBPS = PCIE_X16_GBPS[4]


@dataclass(frozen=True, slots=True, eq=False)
class LinkTables:
    """Per topology id t (the last entry is a sentinel for CPU nodes, topo_id -1):
    ring[ring_base[t] + mask] is the ring GB/s of a GPU set (exact topologies only),
    `floor[t]` the weakest pair's GB/s, `best[t, k]` the best k-set's ring on an empty node
    (0 where k exceeds its GPUs), `premium[t]` the link premium (module docstring);
    `ref[k]` the best k-set ring over the topologies the snapshot's nodes have."""

    ring_base: np.ndarray
    ring: np.ndarray
    exact: np.ndarray
    floor: np.ndarray
    best: np.ndarray
    premium: np.ndarray
    ref: np.ndarray
    n_topologies: int


def link_tables(snap: Snapshot) -> LinkTables:
    """The snapshot's link tables, built once per set of topologies and cached in its memo."""
    tix = snap.topo_index
    cached = snap.memo.get("link_tables")
    if isinstance(cached, LinkTables) and cached.n_topologies == len(tix.topologies):
        return cached
    n_top = len(tix.topologies)
    kmax = max((t.n for t in tix.topologies), default=0)
    ring_base = np.zeros(n_top + 1, np.int64)
    exact = np.zeros(n_top + 1, bool)
    floor = np.zeros(n_top + 1)
    best = np.zeros((n_top + 1, kmax + 1))
    premium = np.zeros(n_top + 1)
    rings: list[np.ndarray] = [np.zeros(1)]  # entry 0: what no-table topologies point at
    pos = 1
    for t, (topo, tables) in enumerate(zip(tix.topologies, tix.tables, strict=True)):
        bw = np.asarray(topo.bandwidth(), dtype=np.float64)
        off = bw[~np.eye(topo.n, dtype=bool)] if topo.n > 1 else np.zeros(0)
        floor[t] = float(off.min()) if off.size else 0.0
        top_pair = float(off.max()) if off.size else 0.0
        premium[t] = max(0.0, float(np.log2(top_pair / PCIE_BASELINE_GBPS))) if top_pair else 0.0
        if tables is None:
            best[t, 2:topo.n + 1] = floor[t]
            continue
        exact[t] = True
        ring_base[t] = pos
        ring = np.where(np.isfinite(tables.ring), tables.ring, 0.0)
        rings.append(ring)
        pos += ring.size
        full = (1 << topo.n) - 1
        for k in range(2, topo.n + 1):
            best[t, k] = ring[int(tables.best_set[full, k])]
    # The topologies present in this snapshot (a shared TopologyIndex may hold others).
    present = np.unique(snap.topo_id)
    ref = best[present].max(axis=0) if present.size else np.zeros(kmax + 1)
    lt = LinkTables(ring_base, np.concatenate(rings), exact, floor, best, premium, ref, n_top)
    snap.memo["link_tables"] = lt
    return lt


def set_bandwidth(snap: Snapshot, idx: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """Ring GB/s of GPU set `sets[j]` (a bitmask of 2+ GPUs) on node idx[j]."""
    lt = link_tables(snap)
    topo = snap.topo_id[idx]
    pos = np.where(lt.exact[topo], lt.ring_base[topo] + sets, 0)
    out: np.ndarray = np.where(lt.exact[topo], lt.ring[pos], lt.floor[topo])
    return out


def log_bandwidth_ratio(snap: Snapshot, idx: np.ndarray, sets: np.ndarray, k: int) -> np.ndarray:
    """log2(ring GB/s of each chosen k-set / best k-set ring on any empty node); <= 0.

    0 where no set is chosen (mask 0) or k < 2, so the term never decides for those.
    """
    if k < 2:
        return np.zeros(len(idx))
    lt = link_tables(snap)
    ref = float(lt.ref[k]) if lt.ref.size > k else 0.0
    if ref <= 0:
        return np.zeros(len(idx))
    bw = set_bandwidth(snap, idx, sets)
    out: np.ndarray = np.where((sets != 0) & (bw > 0),
                               np.log2(np.maximum(bw, 1e-9) / ref), 0.0)
    clipped: np.ndarray = np.minimum(out, 0.0)
    return clipped


def link_premium(snap: Snapshot, idx: np.ndarray, free_mask: np.ndarray) -> np.ndarray:
    """Link premium (log2 of the best pair's GB/s over PCIe 4.0 x16, >= 0) of each node whose
    GPUs are all free (`free_mask`, aligned with idx), else 0: taking a GPU breaks an intact
    NVLink domain only once; a node already broken up is where small pods should go."""
    lt = link_tables(snap)
    whole = free_mask == (np.left_shift(np.int64(1), snap.gpu_count[idx]) - 1)
    out: np.ndarray = np.where(whole, lt.premium[snap.topo_id[idx]], 0.0)
    return out
