"""The one interface every placement policy implements, ours and the simulator's baselines.

The simulator drives any policy through the same loop; the extender drives ours through the
finer-grained filter/score/assign functions, which `TopologyPolicy.place` is built from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.policy.snapshot import Snapshot


class PlacementPolicy(Protocol):
    """Chooses where pods go; never mutates the snapshot (the caller allocates)."""

    name: str

    def place(self, req: PodRequest, snap: Snapshot) -> Assignment | None:
        """Node and GPUs for one pod, or None when it fits nowhere."""
        ...

    def place_gang(self, members: Sequence[PodRequest], snap: Snapshot) -> list[Assignment] | None:
        """Assignments for every member at once, or None; all-or-nothing."""
        ...

    def observe(self, req: PodRequest) -> None:
        """Learn from a request that arrived (e.g. the typical workload); may do nothing."""
        ...
