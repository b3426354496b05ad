"""How good each feasible node is for a pod: one vectorised pass over the nodes, adding the
terms PolicyConfig weighs (topology quality, fragmentation, stranding, tie-break, ...)."""

from __future__ import annotations

from functools import cache

import numpy as np

from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.choice import Choice
from scheduler.policy.config import PolicyConfig
from scheduler.policy.flat_tables import flat_tables
from scheduler.policy.fragmentation import class_stats, frag_delta_share, frag_delta_whole
from scheduler.policy.link_bandwidth import link_premium, log_bandwidth_ratio
from scheduler.policy.node_order import node_ranks
from scheduler.policy.share_fit import share_fill
from scheduler.policy.share_patterns import pattern_gains
from scheduler.policy.shares import choose_share_gpu
from scheduler.policy.snapshot import Snapshot
from scheduler.policy.stranding import stranded_delta
from scheduler.policy.typical_workload import TypicalWorkload, WorkloadClasses
from scheduler.policy.whole_sets import whole_set_lookup


@cache
def prior_classes() -> WorkloadClasses:
    """The classes of the prior typical workload (used when the caller passes none)."""
    return TypicalWorkload().classes()


def evaluate(
    req: PodRequest,
    snap: Snapshot,
    idx: np.ndarray,
    workload: TypicalWorkload | None,
    config: PolicyConfig,
    prefer: np.ndarray | None = None,
    lookup: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, Choice]:
    """Scores of nodes idx (all assumed feasible) and the GPUs each score assumed.

    `prefer` marks nodes that earn the gang-affinity bonus; `lookup` is whole_set_lookup's
    answer for idx when the caller has it already.
    """
    classes = workload.classes() if workload is not None else prior_classes()
    flat = flat_tables(snap)
    topo = snap.topo_id[idx]
    fm = snap.free_mask[idx]
    n_gpu = snap.gpu_count[idx]
    empty = np.zeros(len(idx), np.int64)
    score = np.zeros(len(idx), np.float64)
    if req.gpus:
        sets, q = lookup if lookup is not None else whole_set_lookup(snap, idx, req.gpus, flat)
        dfrag = frag_delta_whole(snap, idx, req.gpus, req.cpu_milli, classes)
        # Terms at weight 0 are skipped: each costs table lookups over every node.
        loss = flat.value_of(topo, fm) - flat.value_of(topo, fm & ~sets) \
            if config.value_weight else empty
        score += config.topology_weight_for(req.gpus) * np.maximum(q, 0.0)
        # Absolute GB/s between nodes of different hardware (quality is per topology).
        if req.gpus >= 2 and config.bandwidth_weight:
            score += config.bandwidth_weight * log_bandwidth_ratio(snap, idx, sets, req.gpus)
        if req.gpus == 1 and config.premium_weight:
            score -= config.premium_weight * link_premium(snap, idx, fm)
        choice = Choice(sets, empty)
    elif req.is_share:
        gpu, free_before = choose_share_gpu(
            snap, idx, req.gpu_milli, req.gpu_memory_mib, classes, flat)
        dfrag = frag_delta_share(snap, idx, free_before, req.gpu_milli, req.cpu_milli, classes)
        loss = empty
        if config.value_weight or config.premium_weight:
            bit = np.left_shift(np.int64(1), np.maximum(gpu, 0))
            took_free = (gpu >= 0) & ((fm & bit) != 0)
            if config.value_weight:
                loss = np.where(took_free, flat.value_of(topo, fm)
                                - flat.value_of(topo, fm & ~bit), 0.0)
            if config.premium_weight:
                score -= config.premium_weight * link_premium(snap, idx, fm) * took_free
        choice = Choice(empty, gpu)
        if config.share_fit_weight:
            score += config.share_fit_weight * share_fill(free_before, req.gpu_milli)
        if config.pattern_weight:
            score += config.pattern_weight * pattern_gains(classes, free_before, req.gpu_milli)
    else:
        dfrag = frag_delta_whole(snap, idx, 0, req.cpu_milli, classes)
        loss = np.zeros(len(idx))
        choice = Choice(empty, empty)
    if config.strand_weight > 0:
        taken = req.gpus * MILLI_PER_GPU if req.gpus else (req.gpu_milli if req.is_share else 0)
        dfrag = dfrag + config.strand_weight * stranded_delta(
            class_stats(snap, classes).total[idx], snap.cpu_free[idx], taken, req.cpu_milli,
            classes.cpu_per_milli)
    if config.frag_step > 0:
        # Changes within one step are equal (FGD's own score resolution); the small tolerance
        # keeps float32 noise around an exact multiple (0 above all) in its bin.
        dfrag = np.ceil(dfrag / config.frag_step - 1e-3) * config.frag_step
    score -= config.frag_weight * dfrag / MILLI_PER_GPU
    if config.value_weight:
        score -= config.value_weight * loss
    score -= config.order_weight * node_ranks(snap)[idx]
    if req.wants_gpu and config.pack_weight:
        cap = np.maximum(n_gpu, 1) * MILLI_PER_GPU
        used = 1.0 - class_stats(snap, classes).total[idx] / cap
        score += config.pack_weight * used
    elif not req.wants_gpu and config.cpu_node_weight:
        # CPU pods: CPU nodes first, keeping GPU nodes' CPU for GPU pods.
        score -= config.cpu_node_weight * (n_gpu > 0)
    if prefer is not None:
        score += config.gang_affinity_weight * prefer[idx]
    return score, choice
