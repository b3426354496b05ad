"""How much slower a job runs when its GPUs are worse linked: the dynamic replay's model.

A data-parallel training step is compute plus gradient all-reduce. With a fraction `f` of the
step spent communicating on the best links this hardware offers, and the job's links reaching
`quality` of that bandwidth (the ring all-reduce bandwidth ratio of topology/tables.py, 1.0 =
as good as this hardware can do), the step takes

    runtime = base * ((1 - f) + f / quality)

so a 1-GPU job never slows down and a perfectly placed job runs at its trace duration.

Numbers assumed (all parameters of SpeedModel, shown in the report):
- comm_fraction by job GPUs: 1 -> 0, 2 -> 0.15, 4 -> 0.2, 8 -> 0.25, more than 8 -> 0.35.
  Data-parallel jobs overlap much of the all-reduce with the backward pass; what remains
  exposed grows with the ring size. These are assumptions of the order that consolidation
  studies report (Gandiva, OSDI'18; Tiresias, NSDI'19: some models are barely affected by
  placement, others slow down by tens of percent to ~2x), not measurements of this project.
- Across nodes, the network part of quality falls by `level_factor` for every network level
  the job spans above the narrowest one its nodes share (0.75: a 4:3 effective
  oversubscription per switch level, between a non-blocking rail-optimised fabric and the 2:1
  of a typical enterprise leaf-spine). The job's quality is the worst member's intra-node set
  quality times that network factor.
- quality is floored at `min_quality` (0.05) so a pathological placement cannot stall a job.

Documented range (SPEED_RANGE; the report's sensitivity band reruns the dynamic replay at both
ends): comm_fraction from half the values above (2 -> 0.075, 4 -> 0.1, 8 -> 0.125, more ->
0.175: jobs that overlap almost all communication, "barely affected" in Gandiva's terms) to
1.6 times them (2 -> 0.24, 4 -> 0.32, 8 -> 0.4, more -> 0.56: a job on links at half the best
bandwidth then runs up to ~1.6x longer, the "~2x" end of Tiresias' measurements), and
level_factor from 0.9 (near non-blocking fabric) to 0.5 (2:1 oversubscription per level).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from scheduler.contract.assignment import Assignment
from scheduler.policy.snapshot import Snapshot
from topology.network import MISSING, common_level

DEFAULT_COMM_FRACTION: tuple[tuple[int, float], ...] = ((1, 0.0), (2, 0.15), (4, 0.2), (8, 0.25))
DEFAULT_COMM_FRACTION_LARGE = 0.35


@dataclass(frozen=True, slots=True)
class SpeedModel:
    """runtime = base * ((1 - f) + f / quality); see the module docstring for the numbers."""

    comm_fraction: tuple[tuple[int, float], ...] = field(default=DEFAULT_COMM_FRACTION)
    comm_fraction_large: float = DEFAULT_COMM_FRACTION_LARGE
    level_factor: float = 0.75
    min_quality: float = 0.05

    def __post_init__(self) -> None:
        for gpus, f in self.comm_fraction:
            if gpus < 1 or not 0.0 <= f < 1.0:
                raise ValueError(f"SpeedModel.comm_fraction: ({gpus}, {f}) needs gpus >= 1 "
                                 f"and 0 <= f < 1")
        if not 0.0 <= self.comm_fraction_large < 1.0:
            raise ValueError(f"SpeedModel.comm_fraction_large={self.comm_fraction_large}: "
                             f"must be in [0, 1)")
        if not 0.0 < self.level_factor <= 1.0:
            raise ValueError(f"SpeedModel.level_factor={self.level_factor}: must be in (0, 1]")
        if not 0.0 < self.min_quality <= 1.0:
            raise ValueError(f"SpeedModel.min_quality={self.min_quality}: must be in (0, 1]")

    def fraction(self, gpus: int) -> float:
        """Communication fraction of a job on `gpus` GPUs (the entry at or above it)."""
        for g, f in sorted(self.comm_fraction):
            if gpus <= g:
                return f
        return self.comm_fraction_large

    def slowdown(self, gpus: int, quality: float) -> float:
        """Runtime multiplier (>= 1) of a job on `gpus` GPUs whose links reach `quality`."""
        f = self.fraction(gpus)
        q = min(1.0, max(self.min_quality, quality))
        return (1.0 - f) + f / q

    def describe(self) -> dict[str, object]:
        """The parameters, for the report."""
        return {
            "formula": "runtime = base * ((1 - f) + f / quality)",
            "comm_fraction": {str(g): f for g, f in self.comm_fraction},
            "comm_fraction_large": self.comm_fraction_large,
            "level_factor": self.level_factor,
            "min_quality": self.min_quality,
        }


def _scaled(k: float, level_factor: float) -> SpeedModel:
    return SpeedModel(
        comm_fraction=tuple((g, round(min(0.95, f * k), 4)) for g, f in DEFAULT_COMM_FRACTION),
        comm_fraction_large=round(min(0.95, DEFAULT_COMM_FRACTION_LARGE * k), 4),
        level_factor=level_factor)


# The ends of the documented range (module docstring) and the assumed model in between.
SPEED_RANGE: dict[str, SpeedModel] = {
    "low": _scaled(0.5, 0.9),
    "assumed": SpeedModel(),
    "high": _scaled(1.6, 0.5),
}


def set_quality(snap: Snapshot, a: Assignment) -> float:
    """Quality of one assignment's GPU set on its node (1.0 for 0 or 1 GPU)."""
    if len(a.gpus) < 2:
        return 1.0
    i = snap.index[a.node]
    tables = snap.tables_of(i)
    if tables is None:
        return 1.0
    mask = 0
    for g in a.gpus:
        mask |= 1 << g
    distinct = len(set(a.gpus))
    # Time-sliced replicas may repeat a GPU: k replicas on one card share its compute, so the
    # set counts as its distinct GPUs' quality times distinct / requested.
    q = float(tables.set_quality[mask]) if distinct >= 2 else 1.0
    return q * distinct / len(a.gpus)


def network_factor(snap: Snapshot, nodes: Sequence[int], level_factor: float) -> float:
    """level_factor ** (levels spanned above the narrowest level the nodes share)."""
    uniq = sorted(set(nodes))
    if len(uniq) < 2 or snap.level_ids.shape[1] == 0:
        return 1.0
    known = np.flatnonzero((snap.level_ids[np.asarray(uniq)] != MISSING).any(axis=0))
    if known.size == 0:
        # No network labels: all we know is that the job spans machines.
        return level_factor
    first = int(known[0])
    shared = common_level(snap.level_ids, uniq)
    if shared is not None:
        return float(level_factor ** (shared - first))
    return float(level_factor ** (int(known[-1]) - first + 1))


def job_quality(snap: Snapshot, assignments: Sequence[Assignment], level_factor: float) -> float:
    """Worst member's set quality times the network factor of the nodes the job spans."""
    if not assignments:
        return 1.0
    q = min(set_quality(snap, a) for a in assignments)
    nodes = [snap.index[a.node] for a in assignments]
    return q * network_factor(snap, nodes, level_factor)
