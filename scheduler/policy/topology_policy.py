"""Our placement policy behind the PlacementPolicy interface: what the simulator replays."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.policy.admission import share_refusal
from scheduler.policy.config import DEFAULT_CONFIG, PolicyConfig
from scheduler.policy.gang import plan_gang
from scheduler.policy.node_filter import filter_nodes
from scheduler.policy.place import place
from scheduler.policy.snapshot import Snapshot
from scheduler.policy.typical_workload import TypicalWorkload


class TopologyPolicy:
    """Topology first for multi-GPU pods, FGD fragmentation for the rest (see PolicyConfig)."""

    name = "topology"

    def __init__(
        self, config: PolicyConfig = DEFAULT_CONFIG, workload: TypicalWorkload | None = None
    ) -> None:
        self.config = config
        self.workload = workload if workload is not None else TypicalWorkload()
        # Shares refused by admission (config.admission_reserve), and the last reason given.
        self.events: dict[str, int] = {}
        self.last_refusal = ""

    def place(self, req: PodRequest, snap: Snapshot) -> Assignment | None:
        """filter + score + assign on the best node (None if none fits or admission refuses
        the share); the snapshot is not changed."""
        if self.config.admission_reserve and req.is_share:
            feasible = filter_nodes(req, snap, None, self.config).feasible
            why = share_refusal(req, snap, feasible, self.workload.classes(),
                                self.config.admission_reserve)
            if why is not None:
                self.events["share_admission_refused"] = (
                    self.events.get("share_admission_refused", 0) + 1)
                self.last_refusal = why
                return None
        return place(req, snap, self.workload, self.config)

    def place_gang(self, members: Sequence[PodRequest], snap: Snapshot) -> list[Assignment] | None:
        """Every member at once (plan_gang), or None."""
        plan = plan_gang(members, snap, self.workload, self.config)
        return None if isinstance(plan, str) else list(plan.assignments)

    def observe(self, req: PodRequest) -> None:
        """Learn the typical workload from an arrived request."""
        self.workload.observe(req)
