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
from scheduler.policy.shape_cache import cached_codes, cached_lookup, cached_scores
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
    flat = flat_tables(snap)
    codes = cached_codes(req, snap, None if candidates is None else idx, config, flat)
    feasible = idx[codes == 0]
    if not feasible.size:
        return None
    if prefer is None:
        score, choice = cached_scores(req, snap, feasible, workload, config)
    else:
        sub = cached_lookup(req, snap, feasible, config, flat)
        score, choice = evaluate(req, snap, feasible, workload, config, prefer, sub)
    j = int(np.argmax(score))
    return assignment_for(req, snap, int(feasible[j]), choice, j)
