"""Gangs: every member placed at once, in the narrowest network domain that holds them all.

Levels are the snapshot's `level_ids` columns, narrowest first (-1 = unknown: such a node is
a domain of its own at that level); after the last level the whole cluster is one domain.
Inside a domain members go one by one, largest first, each on its best node and GPU set
(the single-pod policy), with a bonus for nodes already holding a member, so two 4-GPU
members share one NVSwitch node rather than two. Planning runs on a copy of the snapshot;
the plan becomes real only through reserve_gang, and release_gang undoes it exactly.

When a gang may be planned at all is gang_admission.py's question.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.choice import assignment_for
from scheduler.policy.config import DEFAULT_CONFIG, PolicyConfig
from scheduler.policy.memo_copy import copy_memo
from scheduler.policy.node_filter import filter_nodes
from scheduler.policy.scoring import evaluate
from scheduler.policy.snapshot import AllocationError, Snapshot
from scheduler.policy.typical_workload import TypicalWorkload
from topology.network import MISSING, domain_ids


@dataclass(frozen=True, slots=True)
class GangPlan:
    """Assignments aligned with the members; `level` is the level_ids column whose domain
    `domain` holds them all (None, None: no common domain, spread over the cluster)."""

    assignments: tuple[Assignment, ...]
    level: int | None
    domain: int | None
    score: float

    @property
    def nodes(self) -> tuple[str, ...]:
        """Distinct node names the gang uses, in member order."""
        return tuple(dict.fromkeys(a.node for a in self.assignments))


def _fits_capacity(
    snap: Snapshot, dom: np.ndarray, allowed: np.ndarray, members: Sequence[PodRequest]
) -> np.ndarray:
    """Domain ids whose summed free capacity on allowed nodes could hold the gang (a
    necessary condition)."""
    size = int(dom.max()) + 1 if dom.size else 0
    dom = np.where(allowed, dom, size)  # disallowed nodes count toward no real domain
    whole = sum(m.gpus for m in members)
    milli = sum(m.gpu_demand_milli for m in members)
    cpu = sum(m.cpu_milli for m in members)
    mem = sum(m.memory_mib for m in members)
    free_gpus = np.bincount(dom, weights=np.bitwise_count(snap.free_mask), minlength=size)
    free_milli = np.bincount(dom, weights=snap.milli_free.sum(axis=1), minlength=size)
    free_cpu = np.bincount(dom, weights=snap.cpu_free, minlength=size)
    free_mem = np.bincount(dom, weights=snap.mem_free, minlength=size)
    present = np.bincount(dom, minlength=size + 1)[:size] > 0
    free_gpus, free_milli = free_gpus[:size], free_milli[:size]
    free_cpu, free_mem = free_cpu[:size], free_mem[:size]
    ok = present & (free_gpus >= whole) & (free_milli >= milli) & (free_cpu >= cpu) & (
        free_mem >= mem)
    ids = np.flatnonzero(ok)
    # Tightest domains first: a gang that fits a small domain leaves big ones whole.
    order = np.lexsort((ids, free_milli[ids]))
    return ids[order]


def _try_domain(
    work: Snapshot,
    members: Sequence[PodRequest],
    order: list[int],
    nodes: np.ndarray,
    workload: TypicalWorkload | None,
    config: PolicyConfig,
) -> tuple[list[Assignment | None], float] | None:
    """Place members (in `order`) on `nodes` of `work`; undo everything before returning."""
    placed: list[Assignment] = []
    out: list[Assignment | None] = [None] * len(members)
    prefer = np.zeros(work.n_nodes, dtype=np.float64)
    total = 0.0
    try:
        for i in order:
            req = members[i]
            fr = filter_nodes(req, work, nodes, config)
            if not fr.feasible.size:
                return None
            score, choice = evaluate(req, work, fr.feasible, workload, config, prefer)
            j = int(np.argmax(score))
            node = int(fr.feasible[j])
            a = assignment_for(req, work, node, choice, j)
            work.allocate(a)
            placed.append(a)
            out[i] = a
            prefer[node] = 1.0
            total += float(score[j])
        return out, total
    finally:
        for a in reversed(placed):
            work.release(a.pod)


def _no_fit_reason(
    req: PodRequest, snap: Snapshot, cand: np.ndarray, config: PolicyConfig
) -> str:
    # Only the candidates are examined: nodes the caller excluded (kube-scheduler's own
    # filters) say nothing about why the gang does not fit where it may go.
    fr = filter_nodes(req, snap, cand, config)
    counts = Counter(fr.reasons.values())
    if not counts:
        return f"member {req.key!r} fits no node (no candidate nodes)"
    text, n = counts.most_common(1)[0]
    return f"member {req.key!r} fits no node ({n} of {len(cand)} candidate nodes: {text})"


def plan_gang(
    members: Sequence[PodRequest],
    snap: Snapshot,
    workload: TypicalWorkload | None = None,
    config: PolicyConfig = DEFAULT_CONFIG,
    candidates: np.ndarray | None = None,
) -> GangPlan | str:
    """A placement for every member in the narrowest domain that holds them, or the reason
    there is none; only `candidates` (node indices; default all) are used. The snapshot is
    not changed."""
    if not members:
        return "empty gang: no members to place"
    keys = [m.key for m in members]
    dup = sorted(k for k, c in Counter(keys).items() if c > 1)
    if dup:
        return f"gang members repeat: {', '.join(dup)}"
    held = sorted(k for k in keys if k in snap.holdings)
    if held:
        return f"gang members already hold resources: {', '.join(held)}"
    allowed = np.ones(snap.n_nodes, dtype=bool)
    if candidates is not None:
        allowed[:] = False
        allowed[np.asarray(candidates, dtype=np.int64)] = True
    cand = np.flatnonzero(allowed)
    for m in members:
        if not filter_nodes(m, snap, cand, config).feasible.size:
            return _no_fit_reason(m, snap, cand, config)
    order = sorted(range(len(members)),
                   key=lambda i: (-members[i].gpus, -members[i].gpu_demand_milli,
                                  -members[i].cpu_milli, i))
    work = snap.copy()
    copy_memo(snap, work)
    levels: list[int | None] = [*range(snap.level_ids.shape[1]), None]
    for level in levels:
        dom = domain_ids(work.level_ids, level)
        best: tuple[list[Assignment | None], float, int] | None = None
        for d in _fits_capacity(work, dom, allowed, members)[: config.gang_domains_per_level]:
            got = _try_domain(work, members, order, np.flatnonzero((dom == d) & allowed),
                              workload, config)
            if got is not None and (best is None or got[1] > best[1]):
                best = (got[0], got[1], int(d))
        if best is not None:
            assignments = tuple(a for a in best[0] if a is not None)
            named = level is not None and int(snap.level_ids[
                work.index[assignments[0].node], level]) != MISSING
            return GangPlan(assignments, level if named else None,
                            best[2] if named else None, best[1])
    total = sum(m.gpu_demand_milli for m in members) / MILLI_PER_GPU
    return (f"no room for the whole gang of {len(members)} pods ({total:g} GPUs) at once: "
            f"each member fits somewhere, but not all together")


def reserve_gang(snap: Snapshot, assignments: Sequence[Assignment]) -> None:
    """Allocate every assignment (a plan's, or a simulated policy's answer for a gang), all or
    none (AllocationError leaves snap as it was)."""
    done: list[str] = []
    try:
        for a in assignments:
            snap.allocate(a)
            done.append(a.pod)
    except AllocationError:
        for pod in reversed(done):
            snap.release(pod)
        raise


def release_gang(snap: Snapshot, assignments: Sequence[Assignment]) -> None:
    """Release every assignment reserve_gang reserved; its exact inverse."""
    missing = [a.pod for a in assignments if a.pod not in snap.holdings]
    for a in reversed(assignments):
        if a.pod in snap.holdings:
            snap.release(a.pod)
    if missing:
        raise AllocationError(f"gang members held nothing: {', '.join(missing)}")
