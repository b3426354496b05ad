"""Score, then assign (the extender's prioritize-then-bind path): `assign` gives the pod the
GPUs its score assumed, reusing the last `score_nodes` answer when nothing changed since."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.policy.choice import Choice, assignment_for
from scheduler.policy.config import DEFAULT_CONFIG, PolicyConfig
from scheduler.policy.failure import Failure
from scheduler.policy.flat_tables import flat_tables
from scheduler.policy.reasons import reason_text
from scheduler.policy.scoring import evaluate
from scheduler.policy.shape_cache import cached_codes, cached_scores
from scheduler.policy.snapshot import AllocationError, Snapshot
from scheduler.policy.typical_workload import TypicalWorkload

LAST_SCORED = "last_scored"  # Snapshot.memo key


@dataclass(frozen=True, slots=True, eq=False)
class _Scored:
    req: PodRequest
    workload: TypicalWorkload | None
    config: PolicyConfig
    generation: int
    workload_version: int
    idx: np.ndarray
    choice: Choice

    def matches(self, req: PodRequest, snap: Snapshot, workload: TypicalWorkload | None,
                config: PolicyConfig) -> bool:
        return (self.generation == snap.generation and self.workload is workload
                and self.workload_version == (workload.version if workload is not None else -1)
                and (self.config is config or self.config == config)
                and (self.req is req or self.req == req))


def score_nodes(
    req: PodRequest,
    snap: Snapshot,
    feasible: np.ndarray,
    workload: TypicalWorkload | None = None,
    config: PolicyConfig = DEFAULT_CONFIG,
) -> np.ndarray:
    """Score (float64, higher is better) of each feasible node, aligned with `feasible`."""
    idx = np.asarray(feasible, dtype=np.int64).ravel()
    score, choice = cached_scores(req, snap, idx, workload, config)
    # assign() right after (the extender's prioritize-then-bind path) reuses these choices
    # instead of re-evaluating, as long as nothing changed in between.
    snap.memo[LAST_SCORED] = _Scored(req, workload, config, snap.generation,
                                     workload.version if workload is not None else -1, idx,
                                     choice)
    return score


def assign(
    req: PodRequest,
    snap: Snapshot,
    node: int,
    config: PolicyConfig = DEFAULT_CONFIG,
    workload: TypicalWorkload | None = None,
) -> Assignment:
    """The GPUs (and share) the pod gets on `node`: the ones its score assumed.

    Pass the same `workload` as to score_nodes (it decides which GPU a share takes; without
    one the prior is used). Raises AllocationError, with the reason, if the pod does not fit.
    """
    if not 0 <= node < snap.n_nodes:
        raise AllocationError(f"node index {node} outside 0..{snap.n_nodes - 1}")
    code = int(cached_codes(req, snap, np.array([node]), config, flat_tables(snap))[0])
    if code:
        raise AllocationError(f"node {snap.names[node]!r}: "
                              f"{reason_text(req, snap, node, Failure(code), config)}")
    last = snap.memo.get(LAST_SCORED)
    if isinstance(last, _Scored) and last.matches(req, snap, workload, config):
        j = int(np.argmax(last.idx == node))  # the first match, if any
        if last.idx.size and last.idx[j] == node:
            return assignment_for(req, snap, node, last.choice, j)
    idx = np.array([node], dtype=np.int64)
    _, choice = evaluate(req, snap, idx, workload, config)
    return assignment_for(req, snap, node, choice, 0)
