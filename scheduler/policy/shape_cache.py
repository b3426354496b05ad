"""Per-node results for one request shape, kept on the snapshot and refreshed only where nodes
changed.

A burst of pods is mostly copies of one shape (a Job's replicas, a gang's members): the filter
codes and scores of every node for that shape stay valid until the node changes, and a
decision changes one node. So the first pod of a shape is computed on every node and the
next ones only on the nodes whose `Snapshot.node_version` moved since, which turns a decision
from O(nodes) vectorized work into a gather plus O(changed nodes). Every row is computed by
the same functions as before, so the values are the ones an uncached call would give.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

from scheduler.contract.request import PodRequest
from scheduler.policy.choice import Choice
from scheduler.policy.config import PolicyConfig
from scheduler.policy.feasibility import free_failure_codes, static_failure_codes
from scheduler.policy.flat_tables import FlatTables, flat_tables
from scheduler.policy.scoring import evaluate, prior_classes
from scheduler.policy.snapshot import Snapshot, row_selector
from scheduler.policy.typical_workload import TypicalWorkload

MEMO_KEY = "shape_rows"
STATIC_KEY = "static_codes"
MAX_SHAPES = 32  # shapes kept per snapshot, least recently used dropped first

Compute = Callable[[np.ndarray], tuple[np.ndarray, ...]]


@dataclass(eq=False)
class ShapeRows:
    """Arrays over all nodes for one key, valid for the nodes at `versions`."""

    owner: object  # an object the key names by identity (kept alive so the id stays unique)
    generation: int
    versions: np.ndarray
    arrays: tuple[np.ndarray, ...]


def shape_rows(snap: Snapshot, key: Hashable, owner: object, compute: Compute) -> ShapeRows:
    """The up-to-date rows of `key` on `snap`; `compute(rows)` gives the arrays for node
    indices `rows` (each array's first axis aligned with rows)."""
    memo = snap.memo.get(MEMO_KEY)
    if not isinstance(memo, OrderedDict):
        memo = OrderedDict()
        snap.memo[MEMO_KEY] = memo
    e = memo.get(key)
    if not isinstance(e, ShapeRows) or e.owner is not owner:
        rows = np.arange(snap.n_nodes, dtype=np.int64)
        e = ShapeRows(owner, snap.generation, snap.node_version.copy(),
                      tuple(np.array(a) for a in compute(rows)))
        _keep(memo, key, e)
        return e
    if e.generation != snap.generation:
        rows = snap.changed_rows(e.generation, e.versions)
        if rows.size:
            sel = row_selector(rows)
            for dst, src in zip(e.arrays, compute(rows), strict=True):
                dst[sel] = src
            e.versions[sel] = snap.node_version[sel]
            e.generation = snap.generation
            _keep(memo, key, e)
            return e
        e.generation = snap.generation
    memo.move_to_end(key)
    return e


def _keep(memo: OrderedDict[Hashable, ShapeRows], key: Hashable, e: ShapeRows) -> None:
    # (Re)inserted after compute, which may itself have added (and dropped) entries.
    try:
        memo.move_to_end(key)
    except KeyError:
        memo[key] = e
    while len(memo) > MAX_SHAPES:
        memo.popitem(last=False)


def shape_key(req: PodRequest) -> tuple[object, ...]:
    """Everything of a request that failure_codes and evaluate read."""
    return (req.gpus, req.gpu_milli, req.gpu_memory_mib, req.cpu_milli, req.memory_mib,
            req.allowed_models)


def _static_codes(req: PodRequest, snap: Snapshot) -> np.ndarray:
    """static_failure_codes of every node for this shape: computed once per snapshot, since
    no allocation changes them (a changed node's row then needs only the free checks)."""
    memo = snap.memo.get(STATIC_KEY)
    if not isinstance(memo, OrderedDict):
        memo = OrderedDict()
        snap.memo[STATIC_KEY] = memo
    key = shape_key(req)
    codes = memo.get(key)
    if codes is None:
        codes = static_failure_codes(req, snap, np.arange(snap.n_nodes, dtype=np.int64))
        memo[key] = codes
        while len(memo) > MAX_SHAPES:
            memo.popitem(last=False)
    return codes


def _codes_rows(
    req: PodRequest, snap: Snapshot, config: PolicyConfig, flat: FlatTables
) -> ShapeRows:
    """The per-shape rows of failure_codes: (codes,) or (codes, sets, quality)."""
    def compute(rows: np.ndarray) -> tuple[np.ndarray, ...]:
        # failure_codes, with the static codes taken from the snapshot's memo.
        st = _static_codes(req, snap)[rows]
        codes, lookup = free_failure_codes(req, snap, rows, config, flat)
        codes = np.where(st, st, codes)
        if lookup is None:
            return (codes,)
        return codes, lookup[0], lookup[1]

    return shape_rows(snap, ("codes", shape_key(req), config), flat, compute)


def cached_codes(
    req: PodRequest, snap: Snapshot, idx: np.ndarray | None, config: PolicyConfig,
    flat: FlatTables,
) -> np.ndarray:
    """failure_codes of nodes idx (None: every node) from the snapshot's per-shape rows."""
    codes = _codes_rows(req, snap, config, flat).arrays[0]
    return codes.copy() if idx is None else codes[idx]


def cached_lookup(
    req: PodRequest, snap: Snapshot, idx: np.ndarray, config: PolicyConfig, flat: FlatTables
) -> tuple[np.ndarray, np.ndarray] | None:
    """whole_set_lookup of nodes idx (None for requests without whole GPUs), as
    failure_codes found it, from the snapshot's per-shape rows."""
    e = _codes_rows(req, snap, config, flat)
    return (e.arrays[1][idx], e.arrays[2][idx]) if len(e.arrays) > 1 else None


def cached_scores(
    req: PodRequest, snap: Snapshot, idx: np.ndarray, workload: TypicalWorkload | None,
    config: PolicyConfig,
) -> tuple[np.ndarray, Choice]:
    """evaluate() of nodes idx (no gang preference) from the per-shape rows."""
    classes = workload.classes() if workload is not None else prior_classes()
    flat = flat_tables(snap)

    def compute(rows: np.ndarray) -> tuple[np.ndarray, ...]:
        # Only the rows where the shape fits: feasibility is a function of the node's state,
        # so a row left out here is recomputed when its node changes (its version moves).
        # The codes (and whole-set lookup) are the filter's rows, brought up to date.
        ce = _codes_rows(req, snap, config, flat)
        ok = ce.arrays[0][rows] == 0
        if ok.all():  # the usual case: the changed nodes still fit
            sub = (ce.arrays[1][rows], ce.arrays[2][rows]) if len(ce.arrays) > 1 else None
            s, choice = evaluate(req, snap, rows, workload, config, None, sub)
            return s, choice.sets, choice.share_gpu
        score = np.full(len(rows), np.nan)
        sets = np.zeros(len(rows), np.int64)
        share_gpu = np.full(len(rows), -1, np.int64)
        if ok.any():
            sub = (ce.arrays[1][rows[ok]], ce.arrays[2][rows[ok]]) if len(ce.arrays) > 1 \
                else None
            s, choice = evaluate(req, snap, rows[ok], workload, config, None, sub)
            score[ok], sets[ok], share_gpu[ok] = s, choice.sets, choice.share_gpu
        return score, sets, share_gpu

    e = shape_rows(snap, ("score", shape_key(req), config, id(classes)), classes, compute)
    score, sets, share_gpu = (a[idx] for a in e.arrays)
    missing = np.isnan(score)
    if missing.any():  # a caller scoring nodes the shape does not fit: as evaluate() does
        s, choice = evaluate(req, snap, idx[missing], workload, config)
        score[missing], sets[missing], share_gpu[missing] = s, choice.sets, choice.share_gpu
    return score, Choice(sets, share_gpu)
