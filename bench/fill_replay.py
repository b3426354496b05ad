"""The fill replay: the FGD paper's protocol (ATC'23) and its artifact's
(hkust-adsl/kubernetes-scheduler-simulator), for any policy.

Sort the pods by name and shuffle them with the seed (SortClusterPods); then, as
TunePodsByNodeTotalResource, draw random copies of the original pods (with replacement) and
append them after the shuffled pods while the total GPU request stays within target_ratio (1.3)
x capacity — the artifact's stop test adds the copy's per-GPU request, not its total, and so do
we — or drop random pods when the trace alone exceeds the target. Submit one at a time; no
departures; a pod that does not fit fails and is not retried, but its request still counts as
arrived (SchedulePods adds it before scheduling). CPU-only pods are submitted like any other and
add 0 to the arrived GPU request.

The loop never decides placement: it hands each request to `policy.place`, checks the answer
and holds it on the snapshot (bench.policy_answer). Per pod it does O(1) work beyond the policy
call, so a replay costs what the policy costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from bench.baselines.typical_pods import TypicalPods
from bench.free_quality import ModelMasks, best_free_quality
from bench.metrics import cluster_fragmentation
from bench.policy_answer import check_assignment, gpu_replicas, held_milli, hold
from bench.speed import set_quality
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.interface import PlacementPolicy
from scheduler.policy.snapshot import build_snapshot

Clock = Callable[[], float]
Progress = Callable[[float], None]


def fill_order(
    pods: Sequence[PodRequest], capacity_milli: int, seed: int, target_ratio: float = 1.3
) -> tuple[list[PodRequest], int]:
    """The pods in submission order (shuffled originals, then copies) and how many originals."""
    rng = np.random.default_rng(seed)
    base = sorted(pods, key=lambda p: p.key)
    order = [base[i] for i in rng.permutation(len(base))]
    total = sum(p.gpu_demand_milli for p in order)
    target = target_ratio * capacity_milli
    if target_ratio <= 0:
        return order, len(order)
    if total > target:
        while total > target and order:
            total -= order.pop(int(rng.integers(len(order)))).gpu_demand_milli
        return order, len(order)
    if not any(p.wants_gpu for p in base):
        return order, len(order)
    n_orig = len(order)
    i = 0
    while True:
        p = base[int(rng.integers(len(base)))]
        per_gpu = p.gpu_milli if p.is_share else (MILLI_PER_GPU if p.gpus else 0)
        if total + per_gpu > target:
            break
        total += p.gpu_demand_milli
        order.append(replace(p, key=f"{p.key}-tuned-{i}", gang=None, uid=""))
        i += 1
    return order, n_orig


@dataclass(slots=True)
class FillResult:
    """One fill replay: per-pod curve, checkpoints every `record_every` %, placement quality."""

    policy: str
    seed: int
    capacity_milli: int
    n_original: int
    arrived_pct: np.ndarray  # after each submitted pod
    allocated_pct: np.ndarray
    placed_request_pct: np.ndarray  # GPU requested by the pods placed so far (a policy that
    # rounds shares up to whole GPUs allocates more than this)
    placed: np.ndarray  # bool per submitted pod
    cp_arrived_pct: np.ndarray  # checkpoints
    cp_allocated_pct: np.ndarray
    cp_frag_gpus: np.ndarray
    cp_frag_pct: np.ndarray
    cp_used_gpus: np.ndarray  # GPUs with anything allocated on them
    q_gpus: np.ndarray  # per placed multi-GPU pod: its GPUs,
    q_chosen: np.ndarray  # the quality of the set it got,
    q_best: np.ndarray  # and the best quality free anywhere it could go (-1: none)
    decisions: int = 0
    policy_s: float = 0.0
    wall_s: float = 0.0
    stopped_early: bool = False  # replay_fill(stop_failed_milli=...) ended it
    events: dict[str, int] = field(default_factory=dict)  # policy-specific counts (risks)

    @property
    def n_pods(self) -> int:
        """Pods submitted (originals plus copies)."""
        return int(self.arrived_pct.size)

    @property
    def failed(self) -> int:
        """Pods that did not fit when they arrived."""
        return int((~self.placed).sum())


def replay_fill(
    policy: PlacementPolicy,
    nodes: Sequence[NodeSpec],
    pods: Sequence[PodRequest],
    *,
    seed: int,
    target_ratio: float = 1.3,
    record_every: float = 1.0,
    typical: TypicalPods | None = None,
    warm_typical_workload: bool = True,
    stop_failed_milli: int | None = None,
    progress: Progress | None = None,
    clock: Clock = time.perf_counter,
) -> FillResult:
    """The FGD fill protocol (module docstring) for one policy and seed.

    With `stop_failed_milli` the replay ends as soon as the GPU request of the pods that failed
    exceeds it (capacity planning: the step has already missed its target); the result then
    covers the pods submitted so far and `stopped_early` is True.

    `record_every` is the checkpoint step in % of capacity arrived (fragmentation and used
    GPUs are measured there; the allocation curve is recorded after every pod). `typical`
    are the typical pods the fragmentation is measured against (bench.metrics). With
    `warm_typical_workload` the policy observes every original pod before the replay, as FGD's
    simulator gives its policy the workload's typical pods up front; arriving pods are observed too.
    """
    t_start = clock()
    snap = build_snapshot(nodes)
    capacity = int(snap.gpu_count.sum()) * MILLI_PER_GPU
    if capacity <= 0:
        raise ValueError("the cluster has no GPUs; the fill protocol measures GPU allocation")
    pods = [replace(p, gang=None) if p.gang else p for p in pods]
    order, n_orig = fill_order(pods, capacity, seed, target_ratio)
    if warm_typical_workload:
        for p in sorted(pods, key=lambda p: p.key):
            policy.observe(p)
    n = len(order)
    arrived = np.zeros(n, dtype=np.int64)
    allocated = np.zeros(n, dtype=np.int64)
    requested = np.zeros(n, dtype=np.int64)
    placed = np.zeros(n, dtype=bool)
    cps: list[tuple[float, float, float, float, int]] = []
    qual: list[tuple[int, float, float]] = []
    masks = ModelMasks(snap)
    step = max(record_every, 1e-9) / 100.0 * capacity
    next_cp = 0.0
    arr = alloc = req_placed = 0
    policy_s = 0.0
    name = policy.name
    reps = gpu_replicas(policy)
    prog_step = max(1, n // 100)

    padding = int(snap.milli_free.size - snap.gpu_count.sum())  # padded GPUs hold 0 free

    def checkpoint() -> None:
        fg, fp = cluster_fragmentation(snap, typical)
        used = int((snap.milli_free < MILLI_PER_GPU).sum()) - padding
        cps.append((100.0 * arr / capacity, 100.0 * alloc / capacity, fg, fp, used))

    checkpoint()
    failed_milli = 0
    stopped = False
    for i, req in enumerate(order):
        arr += req.gpu_demand_milli
        policy.observe(req)
        t0 = clock()
        a = policy.place(req, snap)
        policy_s += clock() - t0
        if a is not None:
            check_assignment(req, a, snap, name, reps)
            if req.gpus >= 2:
                qual.append((req.gpus, set_quality(snap, a), best_free_quality(snap, req, masks)))
            hold(snap, [a], name, reps)
            alloc += held_milli(a)
            req_placed += req.gpu_demand_milli
            placed[i] = True
        else:
            failed_milli += req.gpu_demand_milli
        arrived[i] = arr
        allocated[i] = alloc
        requested[i] = req_placed
        if arr >= next_cp:
            checkpoint()
            next_cp = (np.floor(arr / step) + 1) * step
        if progress is not None and i % prog_step == 0:
            progress(i / n)
        if stop_failed_milli is not None and failed_milli > stop_failed_milli:
            stopped = True
            n = i + 1
            arrived, allocated, requested, placed = (arrived[:n], allocated[:n],
                                                     requested[:n], placed[:n])
            break
    checkpoint()
    if progress is not None:
        progress(1.0)
    cp = np.array(cps, dtype=np.float64).reshape(-1, 5)
    q = np.array(qual, dtype=np.float64).reshape(-1, 3)
    return FillResult(
        policy=name, seed=seed, capacity_milli=capacity, n_original=n_orig,
        arrived_pct=100.0 * arrived / capacity, allocated_pct=100.0 * allocated / capacity,
        placed_request_pct=100.0 * requested / capacity, placed=placed,
        cp_arrived_pct=cp[:, 0], cp_allocated_pct=cp[:, 1], cp_frag_gpus=cp[:, 2],
        cp_frag_pct=cp[:, 3], cp_used_gpus=cp[:, 4].astype(np.int64),
        q_gpus=q[:, 0].astype(np.int64), q_chosen=q[:, 1], q_best=q[:, 2],
        decisions=n, policy_s=policy_s, wall_s=clock() - t_start, stopped_early=stopped,
        events=dict(getattr(policy, "events", {})),
    )
