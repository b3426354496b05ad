"""The simulator's path: filter, score and assign one pod in a single pass over the nodes."""

from __future__ import annotations

import numpy as np

from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.policy.choice import assignment_for
from scheduler.policy.config import DEFAULT_CONFIG, PolicyConfig
from scheduler.policy.feasibility import candidate_indices
from scheduler.policy.flat_tables import flat_tables
from scheduler.policy.scoring import evaluate
from scheduler.policy.shape_cache import cached_codes, cached_scores
from scheduler.policy.snapshot import Snapshot
from scheduler.policy.typical_workload import TypicalWorkload


def place(
    req: PodRequest,
    snap: Snapshot,
    workload: TypicalWorkload | None = None,
    config: PolicyConfig = DEFAULT_CONFIG,
    candidates: np.ndarray | None = None,
    prefer: np.ndarray | None = None,
) -> Assignment | None:
    """filter + score + assign in one pass: the best node's assignment, or None.

    The same decision as filter_nodes, score_nodes, then assign on the highest score (lowest
    index among equals), with the table lookup done once.
    """
    idx = candidate_indices(snap, candidates)
    codes, lookup = cached_codes(req, snap, idx, config, flat_tables(snap))
    ok = codes == 0
    if not ok.any():
        return None
    feasible = idx[ok]
    if prefer is None:
        score, choice = cached_scores(req, snap, feasible, workload, config)
    else:
        sub = (lookup[0][ok], lookup[1][ok]) if lookup is not None else None
        score, choice = evaluate(req, snap, feasible, workload, config, prefer, sub)
    j = int(np.argmax(score))
    return assignment_for(req, snap, int(feasible[j]), choice, j)
