"""GPU fragmentation as the FGD paper defines it (Weng et al., USENIX ATC'23).

For a node and a pod class p of the typical workload (p needs `gpus` GPUs with `milli` free each
and `cpu` CPU): if the node can host p, the free thousandths on GPUs with less than `milli`
free are fragments for p; if it cannot (too few such GPUs, or too little CPU), all its free
GPU capacity is. The node's fragmentation is the workload-weighted mean of that amount, in
thousandths of a GPU (hkust-adsl/kubernetes-scheduler-simulator, pkg/utils/frag.go,
NodeGpuShareFragAmountScore). FGD places a pod where this increases least.

Per node and class statistics (how many GPUs have the class's share free, how much is free
on the others, the node's fragmentation) are cached on the snapshot for one WorkloadClasses object
and refreshed only for nodes whose free GPUs or CPU changed, so a decision costs one pass over
nodes x classes, not nodes x GPUs x classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.snapshot import Snapshot, row_selector
from scheduler.policy.typical_workload import WorkloadClasses


def node_fragmentation(
    milli_free: np.ndarray, cpu_free: np.ndarray, classes: WorkloadClasses
) -> np.ndarray:
    """FGD fragmentation (thousandths of a GPU) of each node, float64 over the rows.

    `milli_free` is nodes x GPUs (padding GPUs hold 0), `cpu_free` per node.
    """
    mf = np.asarray(milli_free, dtype=np.int64)
    if mf.ndim != 2:
        raise ValueError(f"milli_free: expected nodes x GPUs, got shape {mf.shape}")
    total = mf.sum(axis=1)
    ge = mf[:, :, None] >= classes.milli[None, None, :]
    cnt = ge.sum(axis=1)
    below = np.where(ge, 0, mf[:, :, None]).sum(axis=1)
    fits = (cnt >= classes.gpus[None, :]) & (np.asarray(cpu_free)[:, None] >= classes.cpu[None, :])
    frag = np.where(fits, below, total[:, None]).astype(np.float64)
    out: np.ndarray = frag @ classes.weight
    return out


def snapshot_fragmentation(
    snap: Snapshot, classes: WorkloadClasses, nodes: np.ndarray | None = None
) -> np.ndarray:
    """node_fragmentation of the snapshot's nodes (all, or `nodes`), from the cached statistics
    (float32 arithmetic: equal to node_fragmentation within about 1e-6 relative)."""
    st = class_stats(snap, classes)
    if nodes is None:
        return st.before.copy()
    out: np.ndarray = st.before[np.asarray(nodes, dtype=np.int64)]
    return out


def _class_rows(
    milli_free: np.ndarray, cpu_free: np.ndarray, classes: WorkloadClasses
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(gslack, cslack, below, total, fragmentation) of some nodes; see ClassStats
    (class-major: classes x nodes)."""
    ge = milli_free[None, :, :] >= classes.milli[:, None, None]
    gslack = (ge.sum(axis=2) - classes.gpus[:, None]).astype(np.int16)
    cslack = (cpu_free[None, :] - classes.cpu[:, None]).astype(np.int32)
    below = np.where(ge, 0, milli_free[None, :, :]).sum(axis=2).astype(np.float32)
    total = milli_free.sum(axis=1).astype(np.float32)
    return gslack, cslack, below, total, _frag(gslack >= 0, cslack >= 0, below, total, classes)


def _frag(
    gfit: np.ndarray, cfit: np.ndarray, below: np.ndarray, total: np.ndarray,
    classes: WorkloadClasses,
) -> np.ndarray:
    # sum_p w_p * (fits_p ? below_p : total) = total * sum(w) - sum_p w_p * fits_p * (total -
    # below_p): one product and one vector-matrix product over classes x nodes.
    w = classes.weight32
    fits = gfit & cfit
    out: np.ndarray = (total * classes.weight32_sum
                       - w @ (fits * (total[None, :] - below))).astype(np.float64)
    return out


@dataclass(eq=False)
class ClassStats:
    """Per workload class and node (classes x nodes, so that per-node vectors broadcast along the
    contiguous axis): `gslack` = GPUs with the class's share free minus the GPUs it needs,
    `cslack` = free CPU minus its CPU (the class fits iff both are >= 0), `below` the
    thousandths free on GPUs with less than its share; per node `total` free thousandths and
    the fragmentation `before` any change. Valid for one WorkloadClasses object; columns are
    refreshed for the nodes whose version moved (Snapshot.allocate/release count changes)."""

    classes: WorkloadClasses
    generation: int
    versions: np.ndarray
    gslack: np.ndarray
    cslack: np.ndarray
    below: np.ndarray
    total: np.ndarray
    before: np.ndarray

    def refresh(self, snap: Snapshot) -> None:
        """Recompute the columns of nodes that changed since the last refresh."""
        if snap.generation == self.generation:
            return
        rows = snap.changed_rows(self.generation, self.versions)
        if rows.size:
            sel = row_selector(rows)
            (self.gslack[:, sel], self.cslack[:, sel], self.below[:, sel], self.total[sel],
             self.before[sel]) = _class_rows(snap.milli_free[sel], snap.cpu_free[sel],
                                             self.classes)
            self.versions[sel] = snap.node_version[sel]
        self.generation = snap.generation

    def copy(self) -> ClassStats:
        """An independent copy (for a snapshot copy, whose node versions start equal)."""
        return ClassStats(self.classes, self.generation, self.versions.copy(),
                          self.gslack.copy(), self.cslack.copy(), self.below.copy(),
                          self.total.copy(), self.before.copy())

    def cols(self, idx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                     np.ndarray]:
        """(gslack, cslack, below, total) of nodes idx (None: all nodes, no copy; read them
        only)."""
        if idx is None:
            return self.gslack, self.cslack, self.below, self.total
        sel = row_selector(idx)  # read-only views for one node
        return self.gslack[:, sel], self.cslack[:, sel], self.below[:, sel], self.total[sel]


def class_stats(snap: Snapshot, classes: WorkloadClasses) -> ClassStats:
    """The snapshot's cached statistics for `classes`, brought up to date."""
    st = snap.memo.get("frag_class_stats")
    if isinstance(st, ClassStats) and st.classes is classes:
        st.refresh(snap)
        return st
    gslack, cslack, below, total, before = _class_rows(snap.milli_free, snap.cpu_free, classes)
    st = ClassStats(classes, snap.generation, snap.node_version.copy(), gslack, cslack, below,
                    total, before)
    snap.memo["frag_class_stats"] = st
    return st


def _subset(snap: Snapshot, idx: np.ndarray) -> np.ndarray | None:
    # Gathering classes x nodes costs about as much as computing on them: above a third of
    # the nodes, compute on all and pick the answers afterwards.
    return None if 3 * len(idx) > snap.n_nodes else idx


def frag_delta_whole(
    snap: Snapshot, idx: np.ndarray, gpus: int, cpu: int, classes: WorkloadClasses
) -> np.ndarray:
    """Fragmentation increase on nodes idx from taking `gpus` wholly free GPUs and `cpu`.

    Which free GPUs does not matter to this measure: each had 1000 free, at least every
    class's share, so only the counts and the total move.
    """
    st = class_stats(snap, classes)
    sub = _subset(snap, idx)
    gs, cs, below, total = st.cols(sub)
    after = _frag(gs >= gpus, cs >= cpu, below, total - np.float32(gpus * MILLI_PER_GPU),
                  classes)
    if sub is None:
        after = after[idx]
    out: np.ndarray = after - st.before[idx]
    return out


def frag_delta_share(
    snap: Snapshot,
    idx: np.ndarray,
    free_on_gpu: np.ndarray,
    milli: int,
    cpu: int,
    classes: WorkloadClasses,
) -> np.ndarray:
    """Fragmentation increase on nodes idx from taking `milli` of a GPU that has
    `free_on_gpu[i]` thousandths free (one chosen GPU per node) and `cpu`."""
    st = class_stats(snap, classes)
    sub = _subset(snap, idx)
    gs, cs, below, total = st.cols(sub)
    if sub is None:
        f0 = np.zeros(snap.n_nodes, np.int16)
        f0[idx] = free_on_gpu
    else:
        f0 = np.asarray(free_on_gpu).astype(np.int16)
    f1 = f0 - np.int16(milli)
    m = classes.milli16[:, None]
    # The GPU goes from f0 to f1 free: classes with f1 < share <= f0 lose it (one GPU fewer,
    # and its f1 left becomes a fragment for them); for classes with share > f0 it was a
    # fragment already and shrinks by `milli`. What stays usable is (total - milli) - below.
    lost = (f1[None, :] < m) & (m <= f0[None, :])
    shrunk = m > f0[None, :]
    t1 = total - np.float32(milli)
    usable = t1[None, :] - below
    usable -= lost * f1.astype(np.float32)[None, :]
    usable += shrunk * np.float32(milli)
    fits = (gs >= lost) & (cs >= cpu)
    w = classes.weight32
    after = (t1 * classes.weight32_sum - w @ (fits * usable)).astype(np.float64)
    if sub is None:
        after = after[idx]
    out: np.ndarray = after - st.before[idx]
    return out
