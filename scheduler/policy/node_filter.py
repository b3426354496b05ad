"""The filter: which candidate nodes can take a pod now, and a failure code for the others."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scheduler.contract.request import PodRequest
from scheduler.policy.config import DEFAULT_CONFIG, PolicyConfig
from scheduler.policy.failure import UNRESOLVABLE, Failure
from scheduler.policy.feasibility import candidate_indices
from scheduler.policy.flat_tables import flat_tables
from scheduler.policy.reasons import reason_texts
from scheduler.policy.shape_cache import cached_codes
from scheduler.policy.snapshot import Snapshot

_OK = int(Failure.OK)
# The unresolvable codes are one range, so membership is two comparisons (not np.isin).
_UNRESOLVABLE_LOW, _UNRESOLVABLE_HIGH = min(UNRESOLVABLE), max(UNRESOLVABLE)
assert len(UNRESOLVABLE) == _UNRESOLVABLE_HIGH - _UNRESOLVABLE_LOW + 1


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
        self.feasible = self.candidates[self.codes == _OK]

    @property
    def reasons(self) -> dict[int, str]:
        """A reason a person can act on, per infeasible node index."""
        if self._reasons is None:
            bad = self.codes != _OK
            self._reasons = reason_texts(self.req, self.snap, self.candidates[bad],
                                         self.codes[bad], self.config)
        return self._reasons

    @property
    def unresolvable(self) -> frozenset[int]:
        """Nodes that can never take this pod (wrong model, too small), whatever is released."""
        mask = (self.codes >= _UNRESOLVABLE_LOW) & (self.codes <= _UNRESOLVABLE_HIGH)
        return frozenset(int(i) for i in self.candidates[mask])


def filter_nodes(
    req: PodRequest,
    snap: Snapshot,
    candidates: np.ndarray | None = None,
    config: PolicyConfig = DEFAULT_CONFIG,
) -> FilterResult:
    """Which candidate nodes (default: all) can take the pod now; codes for the others."""
    idx = candidate_indices(snap, candidates)
    codes = cached_codes(req, snap, None if candidates is None else idx, config,
                         flat_tables(snap))
    return FilterResult(req, snap, config, idx, codes)
