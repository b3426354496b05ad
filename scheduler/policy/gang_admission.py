"""When a gang may be planned at all, for the extender and the simulator alike: enough
members exist, the cluster could ever hold them, and it is not backing off after a timeout."""

from __future__ import annotations

import numpy as np

from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.gpu_models import accepts
from scheduler.policy.snapshot import Snapshot


def max_members(req: PodRequest, snap: Snapshot) -> int:
    """How many pods like `req` the cluster could hold if it were empty (every node's total
    capacity, each resource counted on its own and the allowed GPU models respected): an
    upper bound no gang can exceed whatever else finishes."""
    n = snap.n_nodes
    if n == 0:
        return 0
    big = np.int64(1 << 40)
    c = snap.cpu_total // req.cpu_milli if req.cpu_milli else np.full(n, big)
    m = snap.mem_total // req.memory_mib if req.memory_mib else np.full(n, big)
    room: np.ndarray = np.minimum(c, m).astype(np.int64)
    if req.is_share:
        valid = np.arange(snap.max_gpus)[None, :] < snap.gpu_count[:, None]
        per_gpu = np.full(snap.gpu_mem_total.shape, MILLI_PER_GPU // req.gpu_milli,
                          dtype=np.int64)
        if req.gpu_memory_mib:
            per_gpu = np.minimum(per_gpu, snap.gpu_mem_total // req.gpu_memory_mib)
        room = np.minimum(room, np.where(valid, per_gpu, 0).sum(axis=1))
    elif req.gpus:
        room = np.minimum(room, snap.gpu_count.astype(np.int64) // req.gpus)
    if req.wants_gpu and req.allowed_models:
        ok = np.array([accepts(req.allowed_models, name) for name in snap.models] + [False])
        room = np.where(ok[snap.model_id], room, 0)  # model_id -1 (no GPU) -> False
    return int(room.sum())


def gang_backoff_s(failures: int, initial_s: float, max_s: float) -> float:
    """How long a gang that timed out `failures` times in a row waits before it may reserve
    again: doubling from `initial_s`, capped at `max_s` (0 before the first failure)."""
    if failures <= 0:
        return 0.0
    return float(min(max_s, initial_s * 2.0 ** min(failures - 1, 60)))


def gang_admission(
    min_member: int, existing: int, capacity: int, *, cap: int, backoff_left_s: float = 0.0
) -> str | None:
    """Why a gang may not be planned now, or None when it may.

    `existing` counts its pods that exist, `capacity` is max_members of its pods on the
    cluster, `cap` the absolute limit on minMember, `backoff_left_s` the rest of its backoff.
    Order matters for the reason a person sees: an impossible size first (waiting would never
    help), then missing members, then the backoff.
    """
    if min_member > cap:
        return (f"minMember {min_member} is above the limit of {cap} members per gang; "
                f"nothing is reserved")
    if min_member > capacity:
        return (f"minMember {min_member} is more than the cluster could ever hold: at most "
                f"{capacity} such pods fit even with every node empty; nothing is reserved")
    if existing < min_member:
        missing = min_member - existing
        return (f"waiting for {missing} more member{'s' * (missing > 1)} ({existing} of "
                f"{min_member} pods exist); nothing is reserved until all exist")
    if backoff_left_s > 0:
        return (f"backing off after a timeout: may reserve again in {backoff_left_s:.0f}s; "
                f"nothing is reserved meanwhile")
    return None
