"""Which GPU of a node a fractional request takes.

The GPU where the share leaves the least unusable remainder for the typical workload: putting m
on a GPU with f free turns f into f - m, and a GPU with x free is a fragment (for FGD) for
every class needing more than x, so its expected waste is phi(x) = x * P(class needs > x).
The GPU minimising phi(f - m) - phi(f) wins; ties go to already-shared GPUs, then to the
tightest fit. A wholly free GPU is represented by the one the topology tables would give a
1-GPU pod (the one whose loss hurts the node's remaining sets least). Never over 1000
thousandths nor over the GPU's free memory.
"""

from __future__ import annotations

import numpy as np

from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.flat_tables import FlatTables
from scheduler.policy.snapshot import Snapshot
from scheduler.policy.typical_workload import WorkloadClasses

# Tie-breaks ride on the cost at a scale far below any real difference of expected waste.
TIE_SCALE = 1e-7


def waste_curve(classes: WorkloadClasses) -> np.ndarray:
    """phi[x] for x = 0..1000: x times the weight of classes needing more than x per GPU."""
    x = np.arange(MILLI_PER_GPU + 1)
    order = np.argsort(classes.milli)
    m = classes.milli[order]
    cum = np.concatenate([[0.0], np.cumsum(classes.weight[order])])
    # weight of classes with milli > x = total - weight of classes with milli <= x
    above = cum[-1] - cum[np.searchsorted(m, x, side="right")]
    out: np.ndarray = x * above
    return out


def share_costs(classes: WorkloadClasses, milli: int) -> tuple[np.ndarray, float]:
    """(cost[x] of putting `milli` on a shared GPU with x free, inf where it does not fit or
    the GPU is wholly free; cost on a wholly free GPU), cached on the classes object.

    The cost is the extra expected waste plus a tie-break toward the tightest fit."""
    cached = classes.memo.get(milli)
    if cached is not None:
        return cached
    phi = waste_curve(classes)
    x = np.arange(MILLI_PER_GPU + 1)
    table = np.full(MILLI_PER_GPU + 1, np.inf)
    ok = (x >= milli) & (x < MILLI_PER_GPU)
    table[ok] = phi[x[ok] - milli] - phi[x[ok]] + TIE_SCALE * x[ok]
    free = float(phi[MILLI_PER_GPU - milli] - phi[MILLI_PER_GPU]
                 + TIE_SCALE * (MILLI_PER_GPU + 1))
    classes.memo[milli] = (table, free)
    return table, free


def choose_share_gpu(
    snap: Snapshot,
    idx: np.ndarray,
    milli: int,
    gpu_memory_mib: int,
    classes: WorkloadClasses,
    flat: FlatTables,
) -> tuple[np.ndarray, np.ndarray]:
    """(GPU index per node of idx, -1 where none fits; thousandths free on it before)."""
    n = len(idx)
    mf = snap.milli_free[idx]
    table, free_cost = share_costs(classes, milli)
    cost = table[mf]
    if gpu_memory_mib:
        cost[snap.gpu_mem_free[idx] < gpu_memory_mib] = np.inf
    rows = np.arange(n)
    if mf.shape[1]:
        best_shared = cost.argmin(axis=1)
        best_cost = cost.min(axis=1)
    else:
        best_shared = np.zeros(n, np.int64)
        best_cost = np.full(n, np.inf)
    # The wholly free candidate: the table's best single GPU of the free mask.
    topo = snap.topo_id[idx]
    fm = snap.free_mask[idx]
    one = flat.best_set[flat.positions(topo, fm, 1)]
    if not flat.all_exact:
        one = np.where(flat.exact[topo], one, fm & -fm)  # no tables: lowest free GPU
    has = one > 0
    # `one` is a single bit where set: its index is the count of the bits below it.
    free_gpu = (np.bitwise_count(one - 1) * has).astype(np.int64)
    free_ok = has
    if gpu_memory_mib and n:
        free_ok = has & (snap.gpu_mem_total[idx, free_gpu] >= gpu_memory_mib)
    use_free = free_ok & (free_cost < best_cost)
    gpu = np.where(use_free, free_gpu, np.where(np.isfinite(best_cost), best_shared, -1))
    free_before = np.where(use_free, MILLI_PER_GPU,
                           mf[rows, best_shared] if mf.shape[1] else 0)
    free_before = np.where(gpu >= 0, free_before, 0)
    return gpu, free_before.astype(np.int64)
