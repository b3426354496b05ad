"""The policy's float scores as kube-scheduler's 0..10 extender priorities.

kube-scheduler adds every extender's answer to its own plugins' scores
(pkg/scheduler/schedule_one.go, prioritizeNodes):

    total(node) = sum over score plugins of  plugin_score (0..100) * plugin_weight
                + sum over extenders of      extender_score (0..10) * extender_weight * 10

(the 10 is MaxNodeScore / MaxExtenderPriority), and takes a node with the highest total,
at random among ties. So one point of ours is worth `10 * weight` of kube-scheduler's points;
its default profile varies between GPU nodes mostly through NodeResourcesFit (LeastAllocated)
and NodeResourcesBalancedAllocation, 0..100 each at weight 1. The shipped weight comes from
a measurement (README, "Extender weight").

The mapping is made for that sum:
- Identical nodes get identical scores: the policy's hashed tie-break (policy.node_order,
  `order_weight`) is taken out first, and scores within `TIE_GPUS` of each other form one level.
- The points follow the size of a node's gap to the best node, not its rank: in units of one
  fragmentation step (config.frag_step thousandths of a GPU, the resolution at which the policy
  itself compares nodes), `points = 10 - log2(1 + gap / step)`, rounded. One step behind is 9,
  3 steps 8, 7 steps 7, ..., 1,023 steps or more 0. The log keeps fine grades near the best
  while a different link class (a topology gap of ~1e4) still lands at 0.
"""

from __future__ import annotations

import numpy as np

from scheduler.constants import MAX_EXTENDER_PRIORITY, MIN_EXTENDER_PRIORITY
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.config import DEFAULT_CONFIG, PolicyConfig
from scheduler.policy.node_order import node_order

# Scores closer than this (in the score's own unit, GPUs of fragmentation) are equal: far
# below any term's real resolution, far above float noise.
TIE_GPUS = 1e-6


def untied(scores: np.ndarray, idx: np.ndarray, config: PolicyConfig = DEFAULT_CONFIG
           ) -> np.ndarray:
    """The scores without the hashed node-order tie-break, so equal nodes score equal."""
    s = np.asarray(scores, dtype=np.float64)
    out: np.ndarray = s + config.order_weight * node_order(np.asarray(idx, dtype=np.int64))
    return out


def levels(scores: np.ndarray, tol: float = TIE_GPUS) -> np.ndarray:
    """Each score replaced by the highest of its level (sorted neighbours closer than tol
    chain into one level), so near-equal scores map to exactly the same value."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s.copy()
    order = np.argsort(-s, kind="stable")
    srt = s[order]
    new_level = np.r_[True, (srt[:-1] - srt[1:]) > tol]
    heads = srt[np.flatnonzero(new_level)]
    out = np.empty_like(s)
    out[order] = heads[np.cumsum(new_level) - 1]
    return out


def extender_scores(scores: np.ndarray, idx: np.ndarray | None = None,
                    config: PolicyConfig = DEFAULT_CONFIG) -> np.ndarray:
    """0..10 per node (int64), aligned with `scores`; `idx` are the nodes' snapshot indices
    (to take the tie-break out; None when the scores carry none). Module docstring: how."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return np.zeros(0, np.int64)
    if idx is not None:
        s = untied(s, idx, config)
    lv = levels(s)
    step = max(config.frag_step, 1.0) / MILLI_PER_GPU
    gap = (lv.max() - lv) / step
    points = MAX_EXTENDER_PRIORITY - np.log2(1.0 + gap)
    out: np.ndarray = np.clip(np.floor(points + 0.5), MIN_EXTENDER_PRIORITY,
                              MAX_EXTENDER_PRIORITY).astype(np.int64)
    return out
