"""The scheduling core: where a GPU pod goes and which GPUs it gets (pure functions).

The extender and the simulator call these; nothing else decides placement. The types they
take and return (PodRequest, Assignment, NodeSpec) live in scheduler.contract.
"""

from scheduler.policy.config import DEFAULT_CONFIG, PolicyConfig
from scheduler.policy.failure import Failure
from scheduler.policy.fragmentation import (
    node_fragmentation,
    snapshot_fragmentation,
)
from scheduler.policy.gang import GangPlan, plan_gang, release_gang, reserve_gang
from scheduler.policy.gpu_models import check_models
from scheduler.policy.node_filter import FilterResult, filter_nodes
from scheduler.policy.place import place
from scheduler.policy.score_and_assign import assign, score_nodes
from scheduler.policy.snapshot import AllocationError, Snapshot, TopologyIndex, build_snapshot
from scheduler.policy.topology_policy import TopologyPolicy
from scheduler.policy.typical_workload import ALIBABA_PRIOR, TypicalWorkload, WorkloadClasses

__all__ = [
    "ALIBABA_PRIOR",
    "DEFAULT_CONFIG",
    "AllocationError",
    "Failure",
    "FilterResult",
    "GangPlan",
    "PolicyConfig",
    "Snapshot",
    "TopologyIndex",
    "TopologyPolicy",
    "TypicalWorkload",
    "WorkloadClasses",
    "assign",
    "build_snapshot",
    "check_models",
    "filter_nodes",
    "node_fragmentation",
    "place",
    "plan_gang",
    "release_gang",
    "reserve_gang",
    "score_nodes",
    "snapshot_fragmentation",
]
