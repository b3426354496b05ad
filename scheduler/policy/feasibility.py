"""Which nodes can take a pod: a failure code per node, every condition one array operation."""

from __future__ import annotations

import numpy as np

from scheduler.contract.request import PodRequest
from scheduler.policy.config import PolicyConfig
from scheduler.policy.failure import Failure
from scheduler.policy.flat_tables import FlatTables
from scheduler.policy.gpu_models import matching_model_ids
from scheduler.policy.snapshot import Snapshot
from scheduler.policy.whole_sets import whole_set_lookup


def candidate_indices(snap: Snapshot, candidates: np.ndarray | None) -> np.ndarray:
    """The candidate node indices as int64 (default: every node); raises on one out of range."""
    if candidates is None:
        return np.arange(snap.n_nodes, dtype=np.int64)
    idx = np.asarray(candidates, dtype=np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= snap.n_nodes):
        raise ValueError(f"candidates: node indices must be in 0..{snap.n_nodes - 1}")
    return idx


def failure_codes(
    req: PodRequest, snap: Snapshot, idx: np.ndarray, config: PolicyConfig, flat: FlatTables
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Failure code per node of idx (0 = fits) and, for whole GPUs, the (set, quality) lookup
    that scoring reuses. The code is the first reason (lowest Failure) that applies: a
    static one (static_failure_codes) before any that depends on what is free."""
    static = static_failure_codes(req, snap, idx)
    codes, lookup = free_failure_codes(req, snap, idx, config, flat)
    return np.where(static, static, codes), lookup


def static_failure_codes(req: PodRequest, snap: Snapshot, idx: np.ndarray) -> np.ndarray:
    """The codes no allocation or release changes (model, GPU count, totals), per node of idx.

    A function of the request and the node's spec only, so the shape cache computes it once
    per snapshot. Conditions are applied from the last reason to the first, so the code left
    is the first that fails.
    """
    checks: list[tuple[np.ndarray, Failure]] = []
    if req.is_share and req.gpu_memory_mib and snap.max_gpus:
        checks.append((snap.gpu_mem_total[idx].max(axis=1) < req.gpu_memory_mib,
                       Failure.GPU_MEMORY_TOTAL))
    if req.memory_mib:
        checks.append((snap.mem_total[idx] < req.memory_mib, Failure.MEMORY_TOTAL))
    if req.cpu_milli:
        checks.append((snap.cpu_total[idx] < req.cpu_milli, Failure.CPU_TOTAL))
    if req.wants_gpu:
        checks.append((snap.gpu_count[idx] < max(req.gpus, 1), Failure.TOO_FEW_GPUS))
        if req.allowed_models:
            allowed = matching_model_ids(req.allowed_models, snap.models)
            checks.append((~np.isin(snap.model_id[idx], allowed), Failure.MODEL))
    return _apply(checks, len(idx))


def free_failure_codes(
    req: PodRequest, snap: Snapshot, idx: np.ndarray, config: PolicyConfig, flat: FlatTables
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """The codes that depend on what is free (GPUs, shares, CPU, memory) per node of idx, and
    the whole-set lookup; the first that fails, as static_failure_codes does."""
    checks: list[tuple[np.ndarray, Failure]] = []
    lookup = None
    if req.gpus:
        lookup = whole_set_lookup(snap, idx, req.gpus, flat)
        q = lookup[1]
        if config.min_quality > 0:
            checks.append((q < config.min_quality, Failure.QUALITY))
        checks.append((q < 0, Failure.FREE_GPUS))
    elif req.is_share:
        fits = snap.milli_free[idx] >= req.gpu_milli
        if req.gpu_memory_mib:
            checks.append((~(fits & (snap.gpu_mem_free[idx] >= req.gpu_memory_mib)).any(axis=1),
                           Failure.SHARE_MEMORY))
        checks.append((~fits.any(axis=1), Failure.SHARE))
    if req.memory_mib:
        checks.append((snap.mem_free[idx] < req.memory_mib, Failure.MEMORY))
    if req.cpu_milli:
        checks.append((snap.cpu_free[idx] < req.cpu_milli, Failure.CPU))
    return _apply(checks, len(idx)), lookup


def _apply(checks: list[tuple[np.ndarray, Failure]], n: int) -> np.ndarray:
    codes = np.zeros(n, dtype=np.uint8)
    for cond, failure in checks:
        codes[cond] = failure
    return codes
