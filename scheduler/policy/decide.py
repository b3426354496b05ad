"""One pod: which nodes can take it (and why not), how good each is, and which GPUs it gets.

All three work on every candidate node at once with numpy; `score_nodes` and `assign` read
the same table entry (the best free set of the requested size, or the same share choice), so
the node that scores best gets exactly the GPUs its score assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import cache

import numpy as np

from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.config import DEFAULT_CONFIG, PolicyConfig
from scheduler.policy.flat_tables import FlatTables, flat_tables
from scheduler.policy.fragmentation import class_stats, frag_delta_share, frag_delta_whole
from scheduler.policy.gpu_models import matching_model_ids
from scheduler.policy.link_bandwidth import link_premium, log_bandwidth_ratio
from scheduler.policy.mix import MixClasses, PodMix
from scheduler.policy.shape_cache import shape_rows
from scheduler.policy.shares import choose_share_gpu
from scheduler.policy.snapshot import AllocationError, Snapshot
from scheduler.policy.stranding import stranded_delta
from topology.tables import greedy_best_set


class Why(IntEnum):
    """Why a node cannot take a pod; the first five can never change while the node exists."""

    OK = 0
    MODEL = 1
    TOO_FEW_GPUS = 2
    CPU_TOTAL = 3
    MEMORY_TOTAL = 4
    GPU_MEMORY_TOTAL = 5
    CPU = 6
    MEMORY = 7
    FREE_GPUS = 8
    QUALITY = 9
    SHARE = 10
    SHARE_MEMORY = 11


UNRESOLVABLE = frozenset(
    {Why.MODEL, Why.TOO_FEW_GPUS, Why.CPU_TOTAL, Why.MEMORY_TOTAL, Why.GPU_MEMORY_TOTAL}
)


@dataclass(eq=False)
class FilterResult:
    """Feasible node indices, and for the others a failure code; the sentences are built only
    when `reasons` is read, from the snapshot as it is then (read them before allocating)."""

    req: PodRequest
    snap: Snapshot
    config: PolicyConfig
    candidates: np.ndarray
    codes: np.ndarray
    feasible: np.ndarray = field(init=False)
    _reasons: dict[int, str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.feasible = self.candidates[self.codes == Why.OK]

    @property
    def reasons(self) -> dict[int, str]:
        """A reason a person can act on, per infeasible node index."""
        if self._reasons is None:
            bad = np.flatnonzero(self.codes != Why.OK)
            self._reasons = {
                int(self.candidates[j]): reason_text(
                    self.req, self.snap, int(self.candidates[j]), Why(int(self.codes[j])),
                    self.config,
                )
                for j in bad
            }
        return self._reasons

    @property
    def unresolvable(self) -> frozenset[int]:
        """Nodes that can never take this pod (wrong model, too small), whatever is released."""
        mask = np.isin(self.codes, np.array(sorted(UNRESOLVABLE), dtype=self.codes.dtype))
        return frozenset(int(i) for i in self.candidates[mask])

    def codes_by_node(self) -> dict[int, Why]:
        """The failure code per infeasible node (cheap; no sentences)."""
        bad = np.flatnonzero(self.codes != Why.OK)
        return {int(self.candidates[j]): Why(int(self.codes[j])) for j in bad}


def _candidates(snap: Snapshot, candidates: np.ndarray | None) -> np.ndarray:
    if candidates is None:
        return np.arange(snap.n_nodes, dtype=np.int64)
    idx = np.asarray(candidates, dtype=np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= snap.n_nodes):
        raise ValueError(f"candidates: node indices must be in 0..{snap.n_nodes - 1}")
    return idx


def _allowed_model_ids(req: PodRequest, snap: Snapshot) -> np.ndarray:
    return matching_model_ids(req.allowed_models, snap.models)


def whole_set_lookup(
    snap: Snapshot, idx: np.ndarray, k: int, flat: FlatTables
) -> tuple[np.ndarray, np.ndarray]:
    """(best free k-set mask, its quality) per node of idx; quality -1 where none is free.

    Nodes without exact tables (> 16 GPUs) get the lowest k free GPUs at quality 0 (unknown)
    here; `assign` gives them the greedy set instead.
    """
    topo = snap.topo_id[idx]
    fm = snap.free_mask[idx]
    pos = flat.positions(topo, fm, k)
    sets = flat.best_set[pos]
    q = flat.best_quality[pos]
    noex = ~flat.exact[topo] & (snap.gpu_count[idx] > 0)
    if noex.any():
        enough = np.bitwise_count(fm[noex]) >= k
        q = q.copy()
        q[noex] = np.where(enough, 0.0, -1.0)
    return sets, q


def _codes(
    req: PodRequest, snap: Snapshot, idx: np.ndarray, config: PolicyConfig, flat: FlatTables
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Failure code per node of idx (0 = fits) and, for whole GPUs, the (set, quality) lookup
    that scoring reuses. Conditions are applied from the last reason to the first, so the
    code left is the first that fails."""
    checks: list[tuple[np.ndarray, Why]] = []
    lookup = None
    if req.gpus:
        lookup = whole_set_lookup(snap, idx, req.gpus, flat)
        q = lookup[1]
        if config.min_quality > 0:
            checks.append((q < config.min_quality, Why.QUALITY))
        checks.append((q < 0, Why.FREE_GPUS))
    elif req.is_share:
        fits = snap.milli_free[idx] >= req.gpu_milli
        if req.gpu_memory_mib:
            checks.append((~(fits & (snap.gpu_mem_free[idx] >= req.gpu_memory_mib)).any(axis=1),
                           Why.SHARE_MEMORY))
        checks.append((~fits.any(axis=1), Why.SHARE))
    if req.memory_mib:
        checks.append((snap.mem_free[idx] < req.memory_mib, Why.MEMORY))
    if req.cpu_milli:
        checks.append((snap.cpu_free[idx] < req.cpu_milli, Why.CPU))
    if req.is_share and req.gpu_memory_mib and snap.max_gpus:
        checks.append((snap.gpu_mem_total[idx].max(axis=1) < req.gpu_memory_mib,
                       Why.GPU_MEMORY_TOTAL))
    if req.memory_mib:
        checks.append((snap.mem_total[idx] < req.memory_mib, Why.MEMORY_TOTAL))
    if req.cpu_milli:
        checks.append((snap.cpu_total[idx] < req.cpu_milli, Why.CPU_TOTAL))
    if req.wants_gpu:
        checks.append((snap.gpu_count[idx] < max(req.gpus, 1), Why.TOO_FEW_GPUS))
        if req.allowed_models:
            checks.append((~np.isin(snap.model_id[idx], _allowed_model_ids(req, snap)),
                           Why.MODEL))
    codes = np.zeros(len(idx), dtype=np.uint8)
    for cond, why in checks:
        codes[cond] = why
    return codes, lookup


def _shape_key(req: PodRequest) -> tuple[object, ...]:
    # Everything of a request that _codes and evaluate read.
    return (req.gpus, req.gpu_milli, req.gpu_memory_mib, req.cpu_milli, req.memory_mib,
            req.allowed_models)


def _cached_codes(
    req: PodRequest, snap: Snapshot, idx: np.ndarray, config: PolicyConfig, flat: FlatTables
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """_codes of nodes idx from the snapshot's per-shape rows (see shape_cache)."""
    def compute(rows: np.ndarray) -> tuple[np.ndarray, ...]:
        codes, lookup = _codes(req, snap, rows, config, flat)
        if lookup is None:
            return (codes,)
        return codes, lookup[0], lookup[1]

    e = shape_rows(snap, ("codes", _shape_key(req), config), flat, compute)
    if len(e.arrays) == 1:
        return e.arrays[0][idx], None
    return e.arrays[0][idx], (e.arrays[1][idx], e.arrays[2][idx])


def _cached_scores(
    req: PodRequest, snap: Snapshot, idx: np.ndarray, mix: PodMix | None, config: PolicyConfig
) -> tuple[np.ndarray, Choice]:
    """evaluate() of nodes idx (no gang preference) from the per-shape rows."""
    classes = mix.classes() if mix is not None else _prior_classes()
    flat = flat_tables(snap)

    def compute(rows: np.ndarray) -> tuple[np.ndarray, ...]:
        # Only the rows where the shape fits: feasibility is a function of the node's state,
        # so a row left out here is recomputed when its node changes (its version moves).
        codes, lookup = _codes(req, snap, rows, config, flat)
        ok = codes == 0
        score = np.full(len(rows), np.nan)
        sets = np.zeros(len(rows), np.int64)
        share_gpu = np.full(len(rows), -1, np.int64)
        if ok.any():
            sub = (lookup[0][ok], lookup[1][ok]) if lookup is not None else None
            s, choice = evaluate(req, snap, rows[ok], mix, config, None, sub)
            score[ok], sets[ok], share_gpu[ok] = s, choice.sets, choice.share_gpu
        return score, sets, share_gpu

    e = shape_rows(snap, ("score", _shape_key(req), config, id(classes)), classes, compute)
    score, sets, share_gpu = (a[idx] for a in e.arrays)
    missing = np.isnan(score)
    if missing.any():  # a caller scoring nodes the shape does not fit: as evaluate() does
        s, choice = evaluate(req, snap, idx[missing], mix, config)
        score[missing], sets[missing], share_gpu[missing] = s, choice.sets, choice.share_gpu
    return score, Choice(sets, share_gpu)


def filter_nodes(
    req: PodRequest,
    snap: Snapshot,
    candidates: np.ndarray | None = None,
    config: PolicyConfig = DEFAULT_CONFIG,
) -> FilterResult:
    """Which candidate nodes (default: all) can take the pod now; codes for the others."""
    idx = _candidates(snap, candidates)
    codes, _ = _cached_codes(req, snap, idx, config, flat_tables(snap))
    return FilterResult(req, snap, config, idx, codes)


def reason_text(req: PodRequest, snap: Snapshot, node: int, why: Why, config: PolicyConfig) -> str:
    """The sentence for one node and failure code."""
    if why == Why.MODEL:
        want = "|".join(sorted(req.allowed_models))
        if not matching_model_ids(req.allowed_models, snap.models).size:
            return (f"GPU model {want} required, node has {snap.specs[node].gpu_model or 'no GPU'}"
                    f"; no node has {want} (known: {', '.join(snap.models) or 'none'})")
        return f"GPU model {want} required, node has {snap.specs[node].gpu_model or 'no GPU'}"
    if why == Why.TOO_FEW_GPUS:
        need = max(req.gpus, 1)
        return f"needs {need} GPU{'s' * (need > 1)}, node has {int(snap.gpu_count[node])} in total"
    if why == Why.CPU_TOTAL:
        return (f"needs {req.cpu_milli}m cpu, node has {int(snap.cpu_total[node])}m in total")
    if why == Why.MEMORY_TOTAL:
        return (f"needs {req.memory_mib} MiB memory, node has {int(snap.mem_total[node])} MiB "
                f"in total")
    if why == Why.GPU_MEMORY_TOTAL:
        return (f"needs {req.gpu_memory_mib} MiB of GPU memory, node's largest GPU has "
                f"{int(snap.gpu_mem_total[node].max())} MiB")
    if why == Why.CPU:
        return f"insufficient cpu: needs {req.cpu_milli}m, {int(snap.cpu_free[node])}m free"
    if why == Why.MEMORY:
        return (f"insufficient memory: needs {req.memory_mib} MiB, "
                f"{int(snap.mem_free[node])} MiB free")
    if why == Why.FREE_GPUS:
        free = int(snap.free_mask[node]).bit_count()
        return f"needs {req.gpus} free GPUs, {free} free"
    if why == Why.QUALITY:
        _, q = whole_set_lookup(snap, np.array([node]), req.gpus, flat_tables(snap))
        return (f"needs {req.gpus} GPUs linked at quality >= {config.min_quality:.2f}; the best "
                f"free set reaches {float(q[0]):.2f} ({int(snap.free_mask[node]).bit_count()} "
                f"free)")
    if why == Why.SHARE:
        n = int(snap.gpu_count[node])
        most = int(snap.milli_free[node, :n].max()) if n else 0
        return (f"needs {req.gpu_milli} thousandths of one GPU, at most {most} free on any GPU")
    if why == Why.SHARE_MEMORY:
        n = int(snap.gpu_count[node])
        ok = snap.milli_free[node, :n] >= req.gpu_milli
        mem = int(snap.gpu_mem_free[node, :n][ok].max()) if ok.any() else 0
        return (f"needs {req.gpu_milli} thousandths and {req.gpu_memory_mib} MiB on one GPU; "
                f"the GPUs with room have at most {mem} MiB free")
    return "fits"


@cache
def _prior_classes() -> MixClasses:
    return PodMix().classes()


def node_order(idx: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random rank in [0, 1) per node index (splitmix-style hash).

    Ties go to the lowest rank, so they always fall on the same nodes (packing) without
    following the snapshot's node order, which groups nodes of one kind together.
    """
    h = (idx.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(32)
    out: np.ndarray = (h >> np.uint64(11)).astype(np.float64) / 2.0**53
    return out


def _node_ranks(snap: Snapshot) -> np.ndarray:
    """node_order of every node of the snapshot, hashed once per snapshot."""
    ranks = snap.memo.get("node_order")
    if not isinstance(ranks, np.ndarray) or ranks.shape != (snap.n_nodes,):
        ranks = node_order(np.arange(snap.n_nodes, dtype=np.int64))
        snap.memo["node_order"] = ranks
    return ranks


@dataclass(frozen=True, slots=True, eq=False)
class Choice:
    """What the score assumed on each node: the GPU mask (whole GPUs) or GPU (share)."""

    sets: np.ndarray
    share_gpu: np.ndarray


def evaluate(
    req: PodRequest,
    snap: Snapshot,
    idx: np.ndarray,
    mix: PodMix | None,
    config: PolicyConfig,
    prefer: np.ndarray | None = None,
    lookup: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, Choice]:
    """Scores of nodes idx (all assumed feasible) and the GPUs each score assumed.

    `prefer` marks nodes that earn the gang-affinity bonus; `lookup` is whole_set_lookup's
    answer for idx when the caller has it already.
    """
    classes = mix.classes() if mix is not None else _prior_classes()
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
        bit = np.left_shift(np.int64(1), np.maximum(gpu, 0))
        took_free = (gpu >= 0) & ((fm & bit) != 0)
        loss = np.where(took_free, flat.value_of(topo, fm) - flat.value_of(topo, fm & ~bit),
                        0.0) if config.value_weight else empty
        if config.premium_weight:
            score -= config.premium_weight * link_premium(snap, idx, fm) * took_free
        choice = Choice(empty, gpu)
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
    score -= config.order_weight * _node_ranks(snap)[idx]
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


@dataclass(frozen=True, slots=True, eq=False)
class _Scored:
    req: PodRequest
    mix: PodMix | None
    config: PolicyConfig
    generation: int
    mix_version: int
    idx: np.ndarray
    choice: Choice

    def matches(self, req: PodRequest, snap: Snapshot, mix: PodMix | None,
                config: PolicyConfig) -> bool:
        return (self.generation == snap.generation and self.mix is mix
                and self.mix_version == (mix.version if mix is not None else -1)
                and self.config == config and self.req == req)


def score_nodes(
    req: PodRequest,
    snap: Snapshot,
    feasible: np.ndarray,
    mix: PodMix | None = None,
    config: PolicyConfig = DEFAULT_CONFIG,
) -> np.ndarray:
    """Score (float64, higher is better) of each feasible node, aligned with `feasible`."""
    idx = np.asarray(feasible, dtype=np.int64).ravel()
    score, choice = _cached_scores(req, snap, idx, mix, config)
    # assign() right after (the extender's prioritize-then-bind path) reuses these choices
    # instead of re-evaluating, as long as nothing changed in between.
    snap.memo["last_scored"] = _Scored(req, mix, config, snap.generation,
                                       mix.version if mix is not None else -1, idx, choice)
    return score


def _mask_gpus(mask: int) -> tuple[int, ...]:
    return tuple(i for i in range(mask.bit_length()) if mask >> i & 1)


def assignment_for(
    req: PodRequest, snap: Snapshot, node: int, choice: Choice, j: int
) -> Assignment:
    """The Assignment a choice (as evaluate made it, entry j) stands for on `node`."""
    name = snap.names[node]
    gpus: tuple[int, ...] = ()
    milli, gmem = MILLI_PER_GPU, 0
    if req.gpus:
        tables = snap.tables_of(node)
        if tables is None:
            free = [g for g in range(int(snap.gpu_count[node]))
                    if int(snap.free_mask[node]) >> g & 1]
            got = greedy_best_set(snap.topology_of(node).bandwidth(), free, req.gpus)
            if got is None:
                raise AllocationError(f"node {name!r}: needs {req.gpus} free GPUs")
            gpus = tuple(got)
        else:
            gpus = _mask_gpus(int(choice.sets[j]))
    elif req.is_share:
        g = int(choice.share_gpu[j])
        if g < 0:
            raise AllocationError(f"node {name!r}: no GPU has room for the share")
        gpus, milli, gmem = (g,), req.gpu_milli, req.gpu_memory_mib
    return Assignment(pod=req.key, node=name, gpus=gpus, gpu_milli=milli, gpu_memory_mib=gmem,
                      cpu_milli=req.cpu_milli, memory_mib=req.memory_mib)


def assign(
    req: PodRequest,
    snap: Snapshot,
    node: int,
    config: PolicyConfig = DEFAULT_CONFIG,
    mix: PodMix | None = None,
) -> Assignment:
    """The GPUs (and share) the pod gets on `node`: the ones its score assumed.

    Pass the same `mix` as to score_nodes (it decides which GPU a share takes; without one
    the prior mix is used). Raises AllocationError, with the reason, if the pod does not fit.
    """
    if not 0 <= node < snap.n_nodes:
        raise AllocationError(f"node index {node} outside 0..{snap.n_nodes - 1}")
    fr = filter_nodes(req, snap, np.array([node]), config)
    if not fr.feasible.size:
        raise AllocationError(f"node {snap.names[node]!r}: {fr.reasons[node]}")
    last = snap.memo.get("last_scored")
    if isinstance(last, _Scored) and last.matches(req, snap, mix, config):
        j = np.flatnonzero(last.idx == node)
        if j.size:
            return assignment_for(req, snap, node, last.choice, int(j[0]))
    idx = np.array([node], dtype=np.int64)
    _, choice = evaluate(req, snap, idx, mix, config)
    return assignment_for(req, snap, node, choice, 0)


def best_node(
    req: PodRequest,
    snap: Snapshot,
    candidates: np.ndarray | None = None,
    mix: PodMix | None = None,
    config: PolicyConfig = DEFAULT_CONFIG,
) -> int | None:
    """Index of the best feasible node (lowest index among equals), or None."""
    fr = filter_nodes(req, snap, candidates, config)
    if not fr.feasible.size:
        return None
    score, _ = evaluate(req, snap, fr.feasible, mix, config)
    return int(fr.feasible[int(np.argmax(score))])


def place(
    req: PodRequest,
    snap: Snapshot,
    mix: PodMix | None = None,
    config: PolicyConfig = DEFAULT_CONFIG,
    candidates: np.ndarray | None = None,
    prefer: np.ndarray | None = None,
) -> Assignment | None:
    """filter + score + assign in one pass (the simulator's path): the best node's assignment.

    The same decision as best_node followed by assign, with the table lookup done once.
    """
    idx = _candidates(snap, candidates)
    codes, lookup = _cached_codes(req, snap, idx, config, flat_tables(snap))
    ok = codes == 0
    if not ok.any():
        return None
    feasible = idx[ok]
    if prefer is None:
        score, choice = _cached_scores(req, snap, feasible, mix, config)
    else:
        sub = (lookup[0][ok], lookup[1][ok]) if lookup is not None else None
        score, choice = evaluate(req, snap, feasible, mix, config, prefer, sub)
    j = int(np.argmax(score))
    return assignment_for(req, snap, int(feasible[j]), choice, j)
