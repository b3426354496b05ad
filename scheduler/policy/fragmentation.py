"""GPU fragmentation as the FGD paper defines it (Weng et al., USENIX ATC'23).

For a node and a pod class p of the typical mix (p needs `gpus` GPUs with `milli` free each
and `cpu` CPU): if the node can host p, the free thousandths on GPUs with less than `milli`
free are fragments for p; if it cannot (too few such GPUs, or too little CPU), all its free
GPU capacity is. The node's fragmentation is the mix-weighted mean of that amount, in
thousandths of a GPU (hkust-adsl/kubernetes-scheduler-simulator, pkg/utils/frag.go,
NodeGpuShareFragAmountScore). FGD places a pod where this increases least.

Per-node statistics over a fixed grid of thresholds (how many GPUs have at least t free, how
much is free on GPUs below t) are cached on the snapshot and refreshed only for nodes whose
free GPU capacity changed, so a decision costs O(nodes x classes), not O(nodes x GPUs x classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.policy.mix import MixClasses
from scheduler.policy.request import MILLI_PER_GPU
from scheduler.policy.snapshot import Snapshot


def node_fragmentation(
    milli_free: np.ndarray, cpu_free: np.ndarray, classes: MixClasses
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
    snap: Snapshot, classes: MixClasses, nodes: np.ndarray | None = None, grid: int = 10
) -> np.ndarray:
    """node_fragmentation of the snapshot's nodes (all, or `nodes`), from the cached statistics."""
    idx = np.arange(snap.n_nodes) if nodes is None else np.asarray(nodes, dtype=np.int64)
    st = threshold_stats(snap, grid)
    cnt, below = st.gather(idx, classes)
    return frag_of(cnt, below, st.total[idx], snap.cpu_free[idx], classes)


@dataclass(eq=False)
class ThresholdStats:
    """Per node and grid threshold t = grid, 2*grid, ..., 1000: GPUs with >= t thousandths free
    (`cnt`) and thousandths free on GPUs with less than t (`below`); `total` free per node."""

    grid: int
    seen: np.ndarray
    cnt: np.ndarray
    below: np.ndarray
    total: np.ndarray

    @property
    def n_thresholds(self) -> int:
        """Number of grid thresholds."""
        return MILLI_PER_GPU // self.grid

    def refresh(self, milli_free: np.ndarray) -> None:
        """Recompute the rows whose free GPU capacity differs from what was last seen."""
        dirty = np.flatnonzero((milli_free != self.seen).any(axis=1))
        if dirty.size:
            rows = milli_free[dirty]
            self.cnt[dirty], self.below[dirty] = _row_stats(rows, self.grid)
            self.total[dirty] = rows.sum(axis=1)
            self.seen[dirty] = rows

    def tix(self, classes: MixClasses) -> np.ndarray:
        """Column of each class's threshold; class shares must lie on this grid."""
        t = classes.milli // self.grid - 1
        if (classes.milli % self.grid).any():
            raise ValueError(
                f"class shares {classes.milli.tolist()} are not multiples of grid {self.grid}"
            )
        return t

    def gather(self, idx: np.ndarray, classes: MixClasses) -> tuple[np.ndarray, np.ndarray]:
        """(cnt, below) for nodes idx and each class's threshold: two len(idx) x C arrays."""
        t = self.tix(classes)
        return self.cnt[idx[:, None], t[None, :]], self.below[idx[:, None], t[None, :]]


def _row_stats(rows: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    # Bucket j holds GPUs with j*grid <= free < (j+1)*grid; threshold i is (i+1)*grid, so
    # cnt[i] counts buckets j > i and below[i] sums free over buckets j <= i.
    r, _ = rows.shape
    nt = MILLI_PER_GPU // grid
    j = np.minimum(rows // grid, nt)
    flat = (np.arange(r)[:, None] * (nt + 1) + j).ravel()
    hist = np.bincount(flat, minlength=r * (nt + 1)).reshape(r, nt + 1)
    mass = np.bincount(flat, weights=rows.ravel().astype(np.float64),
                       minlength=r * (nt + 1)).reshape(r, nt + 1).astype(np.int64)
    ge = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # ge[:, j] = GPUs in buckets >= j
    cnt = ge[:, 1:]
    below = np.cumsum(mass, axis=1)[:, :nt]
    return cnt, below


def threshold_stats(snap: Snapshot, grid: int) -> ThresholdStats:
    """The snapshot's cached statistics for `grid`, brought up to date."""
    key = f"frag_stats/{grid}"
    st = snap.memo.get(key)
    if not isinstance(st, ThresholdStats) or st.seen.shape != snap.milli_free.shape:
        n = snap.n_nodes
        nt = MILLI_PER_GPU // grid
        cnt, below = _row_stats(snap.milli_free, grid) if n else (
            np.zeros((0, nt), np.int64), np.zeros((0, nt), np.int64))
        st = ThresholdStats(grid, snap.milli_free.copy(), cnt, below,
                            snap.milli_free.sum(axis=1))
        snap.memo[key] = st
    else:
        st.refresh(snap.milli_free)
    return st


def frag_of(
    cnt: np.ndarray, below: np.ndarray, total: np.ndarray, cpu: np.ndarray, classes: MixClasses
) -> np.ndarray:
    """Fragmentation from gathered statistics (rows x classes) and per-row total and CPU."""
    fits = (cnt >= classes.gpus) & (cpu[:, None] >= classes.cpu)
    out: np.ndarray = np.where(fits, below, total[:, None]) @ classes.weight
    return out


def frag_delta_whole(
    snap: Snapshot, idx: np.ndarray, gpus: int, cpu: int, classes: MixClasses, grid: int = 10
) -> np.ndarray:
    """Fragmentation increase on nodes idx from taking `gpus` wholly free GPUs and `cpu`.

    Which free GPUs does not matter to this measure: each had 1000 free, at or above every
    threshold, so only the counts and the total move.
    """
    st = threshold_stats(snap, grid)
    cnt, below = st.gather(idx, classes)
    total = st.total[idx]
    cpu_free = snap.cpu_free[idx]
    before = frag_of(cnt, below, total, cpu_free, classes)
    after = frag_of(cnt - gpus, below, total - gpus * MILLI_PER_GPU, cpu_free - cpu, classes)
    out: np.ndarray = after - before
    return out


def frag_delta_share(
    snap: Snapshot,
    idx: np.ndarray,
    free_on_gpu: np.ndarray,
    milli: int,
    cpu: int,
    classes: MixClasses,
    grid: int = 10,
) -> np.ndarray:
    """Fragmentation increase on nodes idx from taking `milli` of a GPU that has
    `free_on_gpu[i]` thousandths free (one chosen GPU per node) and `cpu`."""
    st = threshold_stats(snap, grid)
    cnt, below = st.gather(idx, classes)
    total = st.total[idx]
    cpu_free = snap.cpu_free[idx]
    before = frag_of(cnt, below, total, cpu_free, classes)
    f0 = np.asarray(free_on_gpu, dtype=np.int64)[:, None]
    f1 = f0 - milli
    m = classes.milli[None, :]
    cnt1 = cnt - (f0 >= m) + (f1 >= m)
    below1 = below - np.where(f0 < m, f0, 0) + np.where(f1 < m, f1, 0)
    after = frag_of(cnt1, below1, total - milli, cpu_free - cpu, classes)
    out: np.ndarray = after - before
    return out


def frag_delta_share_each_gpu(
    milli_free: np.ndarray, cpu_free: np.ndarray, milli: int, cpu: int, classes: MixClasses
) -> np.ndarray:
    """FGD's exhaustive form: increase for putting the share on each GPU (rows x GPUs; +inf
    where it does not fit). For baselines and tests; O(rows x GPUs x classes)."""
    mf = np.asarray(milli_free, dtype=np.int64)
    before = node_fragmentation(mf, cpu_free, classes)
    n, g = mf.shape
    out = np.full((n, g), np.inf)
    for j in range(g):
        ok = mf[:, j] >= milli
        if not ok.any():
            continue
        after_mf = mf[ok].copy()
        after_mf[:, j] -= milli
        after = node_fragmentation(after_mf, np.asarray(cpu_free)[ok] - cpu, classes)
        out[ok, j] = after - before[ok]
    return out
