"""kube-scheduler's default profile as it treats these pods, plus the device plugin's GPU choice.

What decides the node for a plain GPU pod (no affinities, taints, spread constraints or image
data, so the other default score plugins give every node the same score):

- Filter, NodeResourcesFit (kubernetes pkg/scheduler/framework/plugins/noderesources/fit.go,
  Fit.Filter -> fitsRequest): requested CPU, memory and `nvidia.com/gpu` must fit in
  allocatable minus what is already requested. `nvidia.com/gpu` is an integer extended
  resource: a share (gpu_milli) has no meaning to it and takes a whole GPU. A pod that names GPU
  models is modelled as a node affinity on the GPU product label (NodeAffinity filter).
- How many nodes are searched (pkg/scheduler/schedule_one.go, numFeasibleNodesToFind and
  findNodesThatPassFilters): with percentageOfNodesToScore unset, 50 - nodes/125 percent (at
  least 5%), at least 100 nodes, all of them below 100 nodes; the search starts at
  nextStartNodeIndex, wraps, stops once that many feasible nodes are found, and the index then
  advances by the number of nodes processed. The real search runs 16 goroutines and may look at
  a few more nodes before it stops; this model examines nodes one after the other. Nodes are
  taken in snapshot order (one zone; node_tree.go interleaves zones round-robin).
- Score, weight 1 each (pkg/scheduler/apis/config/v1/default_plugins.go):
  NodeResourcesFit with the LeastAllocated strategy over cpu and memory, weight 1 each
  (least_allocated.go leastResourceScorer/leastRequestedScore:
  (allocatable - requested) * 100 / allocatable per resource, integer weighted mean; the pod's
  missing requests count as 100m CPU / 200 MiB, schedutil.DefaultMilliCPURequest /
  DefaultMemoryRequest), and NodeResourcesBalancedAllocation over cpu and memory
  (balanced_allocation.go balancedResourceScorer, the formula of v1.35 and earlier:
  f = min(requested / allocatable, 1), std = |f_cpu - f_mem| / 2, score int((1 - std) * 100),
  on actual requests; skipped for a pod that requests neither). Kubernetes v1.36 replaced it by a
  "change in balance" score; this model keeps the earlier one. Node requests are the snapshot's
  (cpu_total - cpu_free): equal to kube-scheduler's NonZeroRequested when every placed pod
  requests CPU and memory, as every pod of the traces does.
- Ties: uniform among the nodes with the highest total (schedule_one.go selectHost), seeded.
- GPUs on the chosen node: the NVIDIA device plugin's preferred allocation (allocator.py).
- No gangs: kube-scheduler binds each pod alone; `place_gang` returns None and
  `supports_gangs` is False, so the simulator places the members one at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.baselines.allocator import DevicePluginAllocator
from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.gpu_models import matching_model_ids
from scheduler.policy.snapshot import Snapshot

MAX_NODE_SCORE = 100
# pkg/scheduler/schedule_one.go
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
BASE_PERCENTAGE_OF_NODES_TO_SCORE = 50
# pkg/scheduler/util/pod_resources.go: what a container without requests counts as when scoring.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST_MIB = 200


@dataclass(frozen=True, slots=True)
class ScoringStrategy:
    """NodeResourcesFitArgs.scoringStrategy: type and resource weights.

    `gpu` is the weight of `nvidia.com/gpu` (0: not in the resource list). As in
    resource_allocation.go calculateResourceAllocatableRequest, an extended resource counts only
    for pods that request it, and a resource the node lacks is left out of the mean.
    """

    type: str = "LeastAllocated"
    cpu: int = 1
    memory: int = 1
    gpu: int = 0

    def __post_init__(self) -> None:
        if self.type not in ("LeastAllocated", "MostAllocated"):
            raise ValueError(f"ScoringStrategy.type={self.type!r}: LeastAllocated or MostAllocated")
        for name in ("cpu", "memory", "gpu"):
            w = getattr(self, name)
            if not isinstance(w, int) or w < 0:
                raise ValueError(f"ScoringStrategy.{name}={w!r}: weight must be an integer >= 0")


LEAST_ALLOCATED = ScoringStrategy()


def num_feasible_nodes_to_find(num_all_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes kube-scheduler looks for before it stops searching."""
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND or percentage >= 100:
        return num_all_nodes
    p = percentage
    if p <= 0:
        p = max(BASE_PERCENTAGE_OF_NODES_TO_SCORE - num_all_nodes // 125,
                MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    return max(num_all_nodes * p // 100, MIN_FEASIBLE_NODES_TO_FIND)


def search_feasible(feasible: np.ndarray, start: int, to_find: int) -> tuple[np.ndarray, int]:
    """Feasible nodes found scanning from `start` (wrapping) until `to_find` are found.

    Returns their indices in scan order and how many nodes were processed.
    """
    n = len(feasible)
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    rotated = np.concatenate((feasible[start:], feasible[:start]))
    pos = np.flatnonzero(rotated)
    if len(pos) >= to_find > 0:
        pos = pos[:to_find]
        processed = int(pos[-1]) + 1
    else:
        processed = n
    return (pos + start) % n, processed


def least_requested_score(requested: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """leastRequestedScore per element: (capacity - requested) * 100 // capacity, 0 if over."""
    req = np.asarray(requested, dtype=np.int64)
    cap = np.asarray(capacity, dtype=np.int64)
    safe = np.where(cap > 0, cap, 1)
    out = (cap - req) * MAX_NODE_SCORE // safe
    return np.where((cap == 0) | (req > cap), 0, out)


def most_requested_score(requested: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """mostRequestedScore per element: min(requested, capacity) * 100 // capacity."""
    req = np.asarray(requested, dtype=np.int64)
    cap = np.asarray(capacity, dtype=np.int64)
    safe = np.where(cap > 0, cap, 1)
    out = np.minimum(req, cap) * MAX_NODE_SCORE // safe
    return np.where(cap == 0, 0, out)


def weighted_mean_score(
    scores: Sequence[np.ndarray], weights: Sequence[int], present: Sequence[np.ndarray]
) -> np.ndarray:
    """Integer weighted mean of per-resource scores over the resources present on each node."""
    num = np.zeros(len(scores[0]), dtype=np.int64)
    den = np.zeros(len(scores[0]), dtype=np.int64)
    for s, w, p in zip(scores, weights, present, strict=True):
        num += np.where(p, s * w, 0)
        den += np.where(p, w, 0)
    return np.where(den > 0, num // np.where(den > 0, den, 1), 0)


def balanced_allocation_score(
    cpu_requested: np.ndarray, cpu_alloc: np.ndarray, mem_requested: np.ndarray,
    mem_alloc: np.ndarray,
) -> np.ndarray:
    """balancedResourceScorer (v1.35 and earlier) over cpu and memory: int((1 - std) * 100)."""
    cpu_alloc = np.asarray(cpu_alloc, dtype=np.int64)
    mem_alloc = np.asarray(mem_alloc, dtype=np.int64)
    fc = np.minimum(np.asarray(cpu_requested, np.float64) / np.where(cpu_alloc > 0, cpu_alloc, 1),
                    1.0)
    fm = np.minimum(np.asarray(mem_requested, np.float64) / np.where(mem_alloc > 0, mem_alloc, 1),
                    1.0)
    # With one resource missing there is a single fraction and the std is 0.
    std = np.where((cpu_alloc > 0) & (mem_alloc > 0), np.abs((fc - fm) / 2), 0.0)
    return ((1 - std) * float(MAX_NODE_SCORE)).astype(np.int64)


def gpus_needed(req: PodRequest) -> int:
    """`nvidia.com/gpu` the pod asks for: a share has to take a whole GPU."""
    return req.gpus if req.gpus else (1 if req.gpu_milli else 0)


def free_gpu_counts(snap: Snapshot) -> np.ndarray:
    """Wholly free GPUs per node."""
    out: np.ndarray = np.bitwise_count(snap.free_mask).astype(np.int64)
    return out


def model_ok(req: PodRequest, snap: Snapshot) -> np.ndarray:
    """Nodes whose GPU model the pod accepts (all nodes when it names none)."""
    if not req.allowed_models:
        return np.ones(snap.n_nodes, dtype=bool)
    ok_ids = matching_model_ids(req.allowed_models, snap.models)
    return np.isin(snap.model_id, ok_ids)


def resource_fit(req: PodRequest, snap: Snapshot, free_gpus: np.ndarray) -> np.ndarray:
    """NodeResourcesFit's filter: CPU, memory and whole GPUs fit in what is left."""
    ok = (snap.cpu_free >= req.cpu_milli) & (snap.mem_free >= req.memory_mib)
    need = gpus_needed(req)
    if need:
        ok &= (free_gpus >= need) & model_ok(req, snap)
    return ok


def free_gpu_list(snap: Snapshot, node: int) -> list[int]:
    """Indices of the node's wholly free GPUs, ascending."""
    mask = int(snap.free_mask[node])
    return [g for g in range(int(snap.gpu_count[node])) if mask >> g & 1]


class KubeDefaultPolicy:
    """kube-scheduler's default profile for GPU pods (see the module docstring)."""

    supports_gangs = False

    def __init__(
        self,
        seed: int = 0,
        *,
        strategy: ScoringStrategy = LEAST_ALLOCATED,
        percentage_of_nodes_to_score: int = 0,
        name: str = "default",
    ) -> None:
        if not 0 <= percentage_of_nodes_to_score <= 100:
            raise ValueError(f"percentage_of_nodes_to_score={percentage_of_nodes_to_score!r}: "
                             f"must be 0..100")
        self.name = name
        self.strategy = strategy
        self.percentage = percentage_of_nodes_to_score
        self.rng = np.random.default_rng(seed)
        self.allocator = DevicePluginAllocator()
        self.next_start_node_index = 0

    def node_scores(self, req: PodRequest, snap: Snapshot, idx: np.ndarray,
                    free_gpus: np.ndarray) -> np.ndarray:
        """Sum of the NodeResourcesFit and BalancedAllocation scores of nodes `idx`."""
        st = self.strategy
        cpu_alloc = snap.cpu_total[idx]
        mem_alloc = snap.mem_total[idx]
        cpu_used = cpu_alloc - snap.cpu_free[idx]
        mem_used = mem_alloc - snap.mem_free[idx]
        cpu_nz = req.cpu_milli or DEFAULT_MILLI_CPU_REQUEST
        mem_nz = req.memory_mib or DEFAULT_MEMORY_REQUEST_MIB
        per = least_requested_score if st.type == "LeastAllocated" else most_requested_score
        scores = [per(cpu_used + cpu_nz, cpu_alloc), per(mem_used + mem_nz, mem_alloc)]
        weights = [st.cpu, st.memory]
        present = [cpu_alloc > 0, mem_alloc > 0]
        need = gpus_needed(req)
        if st.gpu and need:
            gpu_alloc = snap.gpu_count[idx]
            gpu_used = gpu_alloc - free_gpus[idx]
            scores.append(per(gpu_used + need, gpu_alloc))
            weights.append(st.gpu)
            present.append(gpu_alloc > 0)
        total = weighted_mean_score(scores, weights, present)
        if req.cpu_milli or req.memory_mib:
            total = total + balanced_allocation_score(
                cpu_used + req.cpu_milli, cpu_alloc, mem_used + req.memory_mib, mem_alloc)
        return total

    def pick_node(self, req: PodRequest, snap: Snapshot, feasible: np.ndarray,
                  free_gpus: np.ndarray) -> int | None:
        """Sample feasible nodes from where the last search stopped (percentageOfNodesToScore),
        score them, and take one of the top nodes at random; None when none is feasible."""
        n = snap.n_nodes
        to_find = num_feasible_nodes_to_find(n, self.percentage)
        start = self.next_start_node_index % n if n else 0
        found, processed = search_feasible(feasible, start, to_find)
        self.next_start_node_index = (start + processed) % n if n else 0
        if len(found) == 0:
            return None
        scores = self.node_scores(req, snap, found, free_gpus)
        top = found[scores == scores.max()]
        return int(top[self.rng.integers(len(top))]) if len(top) > 1 else int(top[0])

    def place(self, req: PodRequest, snap: Snapshot) -> Assignment | None:
        """Filter, sample, score, take a top node at random; the device plugin picks GPUs."""
        free_gpus = free_gpu_counts(snap)
        node = self.pick_node(req, snap, resource_fit(req, snap, free_gpus), free_gpus)
        if node is None:
            return None
        need = gpus_needed(req)
        gpus: tuple[int, ...] = ()
        if need:
            gpus = self.allocator.choose(snap.topology_of(node), free_gpu_list(snap, node), need,
                                         self.rng)
            if len(gpus) != need:
                return None
        return Assignment(pod=req.key, node=snap.names[node], gpus=gpus,
                          gpu_milli=MILLI_PER_GPU, gpu_memory_mib=0,
                          cpu_milli=req.cpu_milli, memory_mib=req.memory_mib)

    def place_gang(self, members: Sequence[PodRequest], snap: Snapshot) -> list[Assignment] | None:
        """kube-scheduler has no gangs: never places one whole (see supports_gangs)."""
        return None

    def observe(self, req: PodRequest) -> None:
        """The default scheduler learns nothing from arrivals."""
