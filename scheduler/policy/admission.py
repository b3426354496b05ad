"""Bid-price admission for shares: refuse a share that would open a fresh GPU while whole GPUs
are scarce and a GPU opened for its size is worth less than one given to a whole-GPU pod.

Revenue management's bid-price control, with allocated thousandths as the revenue. A GPU opened
for a share of size s ends up holding the pattern the share cutting-stock LP packs s into
(share_patterns.lp_solution); v(s), the LP-usage-weighted fill of the patterns holding s, is
what that GPU is worth (810 alone: 810; 470+470: 940), while a whole-GPU pod is worth 1000.
The bid price of a free whole GPU rises linearly from 0 while plenty are free to 1000 when none
is: with R = PolicyConfig.admission_reserve, w the whole-GPU share of the GPU demand and N the
cluster's GPUs, a share that must open a fresh GPU is refused exactly when

    free whole GPUs < R * w * N * (1 - v(s) / 1000)

so the lower a size's fill, the earlier it is protected against; a cluster with more free GPUs
than R * w * N never refuses, a share that fits on a GPU already in use is never refused, and a
mix without whole-GPU pods (w = 0) or sizes the mix does not know are always admitted.
Pure; per share pod one comparison over the feasible nodes' GPUs and one count of free GPUs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.share_patterns import lp_solution, share_demand
from scheduler.policy.snapshot import Snapshot
from scheduler.policy.typical_workload import CPU_ONLY_GPUS, WorkloadClasses

REASON_PREFIX = "share admission"


@lru_cache(maxsize=16)
def _fills(sizes: tuple[int, ...], demand: tuple[float, ...]) -> tuple[float, ...]:
    if not sizes:
        return ()
    pats, x, _ = lp_solution(sizes, demand)
    s = np.asarray(sizes, np.float64)
    fill = s @ pats  # thousandths each pattern fills
    use = pats * x  # shares of each size the LP packs by each pattern
    held = use.sum(axis=1)
    # A size the LP covers by no pattern (cannot happen for positive demand) fills itself.
    out = np.where(held > 0, (use * fill).sum(axis=1) / np.maximum(held, 1e-300), s)
    return tuple(float(v) for v in out)


def opened_fill(classes: WorkloadClasses) -> dict[int, float]:
    """v(s) per share size of the mix: thousandths a GPU opened for it holds under the LP."""
    sizes, demand = share_demand(classes)
    return dict(zip(sizes, _fills(sizes, demand), strict=True))


def whole_share(classes: WorkloadClasses) -> float:
    """w: the whole-GPU pods' part of the GPU demand in thousandths (0 without any)."""
    gpu = classes.gpus < CPU_ONLY_GPUS
    demand = classes.gpus * classes.milli * classes.weight * gpu
    total = float(demand.sum())
    whole = float(demand[classes.milli >= MILLI_PER_GPU].sum())
    return whole / total if total > 0 else 0.0


def protected_gpus(classes: WorkloadClasses, milli: int, reserve: float, n_gpus: int) -> float:
    """Free whole GPUs below which a share of `milli` may not open one: R * w * N * (1 - v/1000)
    (0 for a size the mix does not hold)."""
    v = opened_fill(classes).get(milli)
    if v is None or reserve <= 0:
        return 0.0
    return reserve * whole_share(classes) * n_gpus * max(0.0, 1.0 - v / MILLI_PER_GPU)


def fits_opened_gpu(req: PodRequest, snap: Snapshot, idx: np.ndarray) -> bool:
    """True if some GPU already in use on nodes idx has room (thousandths and memory) for the
    share."""
    mf = snap.milli_free[idx]
    ok = (mf >= req.gpu_milli) & (mf < MILLI_PER_GPU)
    if req.gpu_memory_mib:
        ok &= snap.gpu_mem_free[idx] >= req.gpu_memory_mib
    return bool(ok.any())


def share_refusal(
    req: PodRequest, snap: Snapshot, feasible: np.ndarray, classes: WorkloadClasses,
    reserve: float,
) -> str | None:
    """Why the share may not be placed now (the rule in the module docstring), or None."""
    if reserve <= 0 or not req.is_share or not feasible.size:
        return None
    if fits_opened_gpu(req, snap, feasible):
        return None
    n_gpus = int(snap.gpu_count.sum())
    protect = protected_gpus(classes, req.gpu_milli, reserve, n_gpus)
    if protect <= 0:
        return None
    # Padded GPU slots hold 0 free, so they never count as wholly free.
    free = int(np.count_nonzero(snap.milli_free == MILLI_PER_GPU))
    if free >= protect:
        return None
    v = opened_fill(classes)[req.gpu_milli]
    return (f"{REASON_PREFIX}: {req.gpu_milli} thousandths would open a free GPU (no GPU in use "
            f"has room), a GPU opened for this size holds {v:.0f} of 1000 under the share LP, "
            f"and {free} whole GPUs are free, below the {protect:.0f} kept for whole-GPU pods "
            f"(admission_reserve {reserve:g}); waiting until a GPU in use has room or more "
            f"GPUs are free")
