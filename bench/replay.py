"""The simulator's two replay loops; every policy (ours and the baselines) runs through them.

The loops never decide placement: they hand each request to `policy.place` / `place_gang`,
check that the answer is what was asked for, and apply it with `Snapshot.allocate` (which
refuses any over-commit). Per pod they do O(1) work beyond the policy call, so a replay costs
what the policy costs.

Fill (FGD paper, ATC'23, and its artifact hkust-adsl/kubernetes-scheduler-simulator):
  sort the pods by name and shuffle them with the seed (SortClusterPods); then, as
  TunePodsByNodeTotalResource, draw random copies of the original pods (with replacement)
  and append them after the shuffled pods while the total GPU request stays within
  target_ratio (1.3) x capacity — the artifact's stop test adds the copy's per-GPU request,
  not its total, and so do we — or drop random pods when the trace alone exceeds the target.
  Submit one at a time; no departures; a pod that does not fit fails and is not retried, but
  its request still counts as arrived (SchedulePods adds it before scheduling). CPU-only pods
  are submitted like any other and add 0 to the arrived GPU request.
Dynamic: arrivals in time order, durations stretched by the link-quality model
  (bench/speed.py), a pending queue retried whenever the cluster changed (each waiting job in
  arrival order; once a job of some shape fails, later jobs of the same shape are skipped in
  that pass, since nothing was freed in between), gangs placed whole via place_gang; a policy
  that cannot plan gangs places members one by one and they hold their GPUs while waiting.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from bench.baselines.typical_pods import TypicalPods
from bench.job_bandwidth import job_bandwidth
from bench.metrics import cluster_fragmentation
from bench.speed import SpeedModel, job_quality, set_quality
from bench.workloads import Job
from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MAX_GANG, MILLI_PER_GPU
from scheduler.policy.gang import gang_admission, max_members
from scheduler.policy.gpu_models import accepts, matching_model_ids
from scheduler.policy.interface import PlacementPolicy
from scheduler.policy.request import MAX_GANG, MILLI_PER_GPU, PodRequest
from scheduler.policy.snapshot import (
    AllocationError,
    Assignment,
    NodeSpec,
    Snapshot,
    build_snapshot,
)

Clock = Callable[[], float]
Progress = Callable[[float], None]


class ReplayError(RuntimeError):
    """A policy answered with an assignment that does not match the request or over-commits."""


# ---- shared checks --------------------------------------------------------------------------


def gpu_replicas(policy: PlacementPolicy) -> int:
    """R for a policy over time-sliced GPUs (each GPU advertised as R replicas), else 1."""
    return int(getattr(policy, "gpu_replicas", 1))


def check_assignment(req: PodRequest, a: Assignment, snap: Snapshot, policy: str,
                     replicas: int = 1) -> None:
    """Raise ReplayError unless `a` gives `req` exactly what it asked for on an allowed model.

    With `replicas` > 1 (time-sliced GPUs) `a.gpus` lists the physical GPU of each replica
    (repeats allowed) and `a.gpu_milli` is one replica, 1000 / replicas.
    """
    problems: list[str] = []
    if a.pod != req.key:
        problems.append(f"pod {a.pod!r} instead of {req.key!r}")
    if a.cpu_milli != req.cpu_milli or a.memory_mib != req.memory_mib:
        problems.append(f"cpu/memory {a.cpu_milli}/{a.memory_mib} instead of "
                        f"{req.cpu_milli}/{req.memory_mib}")
    if replicas > 1:
        want = req.gpus if req.gpus else (1 if req.gpu_milli else 0)
        if len(a.gpus) != want or (want and a.gpu_milli != MILLI_PER_GPU // replicas):
            problems.append(f"replicas on GPUs {a.gpus} x {a.gpu_milli} instead of {want} "
                            f"replicas of {MILLI_PER_GPU // replicas}")
    elif req.is_share:
        # A scheduler without GPU sharing (kube-scheduler's nvidia.com/gpu) gives a share a
        # whole GPU; it then holds, and is counted as holding, all of it.
        if len(a.gpus) != 1 or a.gpu_milli not in (req.gpu_milli, MILLI_PER_GPU):
            problems.append(f"{a.gpu_milli} thousandths on GPUs {a.gpus} instead of "
                            f"{req.gpu_milli} on one GPU")
        if a.gpu_milli != MILLI_PER_GPU and a.gpu_memory_mib != req.gpu_memory_mib:
            problems.append(f"gpu_memory_mib {a.gpu_memory_mib} instead of {req.gpu_memory_mib}")
    elif len(a.gpus) != req.gpus or (req.gpus and a.gpu_milli != MILLI_PER_GPU):
        problems.append(f"GPUs {a.gpus} x {a.gpu_milli} instead of {req.gpus} whole GPUs")
    node = snap.index.get(a.node)
    if node is None:
        problems.append(f"unknown node {a.node!r}")
    elif req.wants_gpu and req.allowed_models:
        model = snap.specs[node].gpu_model
        if not accepts(req.allowed_models, model):
            problems.append(f"node {a.node!r} has {model!r}, allowed: "
                            f"{'|'.join(sorted(req.allowed_models))}")
    if problems:
        raise ReplayError(f"policy {policy!r} answered pod {req.key!r} wrongly: "
                          + "; ".join(problems))


def replica_parts(a: Assignment) -> list[Assignment]:
    """A time-sliced assignment as Snapshot holdings: one share per physical GPU holding its
    replicas (the first, keyed by the pod, carries CPU and memory; the others `<pod>#<gpu>`)."""
    parts: list[Assignment] = []
    for k, g in enumerate(sorted(set(a.gpus))):
        parts.append(Assignment(pod=a.pod if k == 0 else f"{a.pod}#{g}", node=a.node, gpus=(g,),
                                gpu_milli=a.gpu_milli * a.gpus.count(g), gpu_memory_mib=0,
                                cpu_milli=a.cpu_milli if k == 0 else 0,
                                memory_mib=a.memory_mib if k == 0 else 0))
    return parts or [a]


def _allocate(snap: Snapshot, a: Assignment, policy: str, replicas: int = 1) -> None:
    parts = replica_parts(a) if replicas > 1 else [a]
    done: list[Assignment] = []
    try:
        for part in parts:
            snap.allocate(part)
            done.append(part)
    except AllocationError as e:
        for part in done:
            snap.release(part.pod)
        raise ReplayError(f"policy {policy!r}: assignment of pod {a.pod!r} over-commits: {e}") \
            from None


def _release(snap: Snapshot, a: Assignment, replicas: int = 1) -> None:
    for part in (replica_parts(a) if replicas > 1 else [a]):
        snap.release(part.pod)


def _held_milli(a: Assignment) -> int:
    return len(a.gpus) * a.gpu_milli


class _ModelMasks:
    """Boolean node masks for allowed-model sets, built once per distinct set."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.cache: dict[frozenset[str], np.ndarray] = {}

    def of(self, models: frozenset[str]) -> np.ndarray | None:
        if not models:
            return None
        m = self.cache.get(models)
        if m is None:
            ids = matching_model_ids(models, self.snap.models)
            m = np.isin(self.snap.model_id, ids.astype(self.snap.model_id.dtype))
            self.cache[models] = m
        return m


def best_free_quality(snap: Snapshot, req: PodRequest, masks: _ModelMasks) -> float:
    """Best topology quality of a free `req.gpus`-set on any node that has the CPU, memory and
    model for `req` (-1 when none has such a set). Measured, never used to place."""
    k = req.gpus
    ok = (snap.cpu_free >= req.cpu_milli) & (snap.mem_free >= req.memory_mib) & \
         (snap.gpu_count >= k)
    mm = masks.of(req.allowed_models)
    if mm is not None:
        ok &= mm
    best = -1.0
    for t, tables in enumerate(snap.topo_index.tables):
        if tables is None or tables.n < k:
            continue
        sel = ok & (snap.topo_id == t)
        if sel.any():
            best = max(best, float(tables.best_quality[snap.free_mask[sel], k].max()))
    return best


# ---- fill -----------------------------------------------------------------------------------


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
    warm_mix: bool = True,
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
    `warm_mix` the policy observes every original pod before the replay, as FGD's simulator
    gives its policy the workload's typical pods up front; arriving pods are observed too.
    """
    t_start = clock()
    snap = build_snapshot(nodes)
    capacity = int(snap.gpu_count.sum()) * MILLI_PER_GPU
    if capacity <= 0:
        raise ValueError("the cluster has no GPUs; the fill protocol measures GPU allocation")
    pods = [replace(p, gang=None) if p.gang else p for p in pods]
    order, n_orig = fill_order(pods, capacity, seed, target_ratio)
    if warm_mix:
        for p in sorted(pods, key=lambda p: p.key):
            policy.observe(p)
    n = len(order)
    arrived = np.zeros(n, dtype=np.int64)
    allocated = np.zeros(n, dtype=np.int64)
    requested = np.zeros(n, dtype=np.int64)
    placed = np.zeros(n, dtype=bool)
    cps: list[tuple[float, float, float, float, int]] = []
    qual: list[tuple[int, float, float]] = []
    masks = _ModelMasks(snap)
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
            _allocate(snap, a, name, reps)
            alloc += _held_milli(a)
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


# ---- dynamic --------------------------------------------------------------------------------


def supports_gangs(policy: PlacementPolicy) -> bool:
    """False for policies that declare `supports_gangs = False` (kube-scheduler's default)."""
    return bool(getattr(policy, "supports_gangs", True))


def _shape(p: PodRequest) -> tuple[object, ...]:
    return (p.cpu_milli, p.memory_mib, p.gpus, p.gpu_milli, p.gpu_memory_mib, p.allowed_models)


def _room(snap: Snapshot, p: PodRequest, replicas: int = 1) -> np.ndarray:
    """How many pods like p each node could still take, counting each resource on its own
    (an upper bound: a necessary condition, never a placement)."""
    big = np.int64(1 << 40)
    c = snap.cpu_free // p.cpu_milli if p.cpu_milli else np.full(snap.n_nodes, big)
    m = snap.mem_free // p.memory_mib if p.memory_mib else np.full(snap.n_nodes, big)
    r: np.ndarray = np.minimum(c, m)
    if replicas > 1 and p.wants_gpu:
        free = (snap.milli_free // (MILLI_PER_GPU // replicas)).sum(axis=1)
        r = np.minimum(r, free // max(p.gpus, 1))
    elif p.is_share:
        fits = (snap.milli_free >= p.gpu_milli) & (snap.gpu_mem_free >= p.gpu_memory_mib)
        per = np.where(fits, (snap.milli_free // p.gpu_milli), 0).sum(axis=1)
        r = np.minimum(r, per)
    elif p.gpus:
        r = np.minimum(r, np.bitwise_count(snap.free_mask).astype(np.int64) // p.gpus)
    return r


def may_fit(snap: Snapshot, pods: Sequence[PodRequest], replicas: int = 1) -> bool:
    """A necessary condition for placing all `pods` at once: for every distinct pod shape,
    the nodes have room for as many such pods as there are."""
    need: dict[tuple[object, ...], tuple[PodRequest, int]] = {}
    for p in pods:
        k = _shape(p)
        need[k] = (p, need.get(k, (p, 0))[1] + 1)
    return all(int(_room(snap, p, replicas).sum()) >= cnt for p, cnt in need.values())


def never_fits(snap: Snapshot, job: Job, masks: _ModelMasks) -> str | None:
    """Why `job` cannot fit even in the empty cluster, or None (necessary conditions only)."""
    total_gpus = int(snap.gpu_count.sum())
    if sum(p.gpus for p in job.pods) > total_gpus:
        return f"needs {sum(p.gpus for p in job.pods)} GPUs, the cluster has {total_gpus}"
    if job.is_gang:
        # The extender's gang admission, per member shape: a job's members all exist at
        # arrival here, so only its size bounds (the cap, the empty cluster) can refuse it.
        shapes: dict[tuple[object, ...], tuple[PodRequest, int]] = {}
        for p in job.pods:
            k = _shape(p)
            shapes[k] = (p, shapes.get(k, (p, 0))[1] + 1)
        for p, count in shapes.values():
            why = gang_admission(count, count, max_members(p, snap), cap=MAX_GANG)
            if why is not None:
                return f"gang of {len(job.pods)} pods: {why}"
    for p in job.pods:
        ok = (snap.cpu_total >= p.cpu_milli) & (snap.mem_total >= p.memory_mib)
        if p.wants_gpu:
            ok &= snap.gpu_count >= max(p.gpus, 1)
            mm = masks.of(p.allowed_models)
            if mm is not None:
                ok &= mm
        if not ok.any():
            return (f"pod {p.key!r} ({p.gpus or p.gpu_milli / MILLI_PER_GPU:g} GPU, "
                    f"{p.cpu_milli} mCPU, {p.memory_mib} MiB) fits no node")
    return None


def pending_arrivals(events: Sequence[tuple[float, int, int, int]]) -> set[int]:
    """Jobs whose arrival event is still in the heap (beyond the horizon)."""
    return {e[3] for e in events if e[1] == 1}


@dataclass(slots=True)
class DynamicResult:
    """One dynamic replay: per-job times, time series, placement quality, throughput."""

    policy: str
    seed: int
    gang_mode: str  # "whole" (place_gang) or "one-by-one"
    capacity_milli: int
    n_jobs: int
    completed: int
    queued_at_end: int
    running_at_end: int
    unschedulable: int
    not_arrived: int  # jobs after the horizon
    unschedulable_examples: list[str]
    wait_s: np.ndarray  # per started job
    jct_s: np.ndarray  # per completed job
    job_gpus: np.ndarray  # per started job
    slowdown: np.ndarray  # per started job
    quality: np.ndarray  # per started job of 2+ GPUs: its placement quality
    quality_gpus: np.ndarray
    q_best: np.ndarray  # per started single-pod job of 2+ GPUs: best quality free then
    q_chosen: np.ndarray
    t: np.ndarray  # event times
    alloc_milli: np.ndarray  # GPU thousandths allocated after the events at t
    held_incomplete_milli: np.ndarray  # ... held by gangs that are not complete yet
    queue_len: np.ndarray  # jobs waiting
    decisions: int = 0
    policy_s: float = 0.0
    wall_s: float = 0.0
    makespan_s: float = 0.0
    last_arrival_s: float = 0.0
    speed: dict[str, object] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)  # policy-specific counts (risks)
    # Per started job of 2+ GPUs (aligned with `quality`): all-reduce GB/s (bench.job_bandwidth).
    bandwidth_gbps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    start_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per job; nan: never

    def utilization_pct(self) -> float:
        """Time-weighted mean GPU allocation (%) while jobs keep arriving (first to last
        arrival): the drain after the last arrival would dilute it."""
        if self.t.size < 2 or self.last_arrival_s <= self.t[0]:
            return float("nan")
        t = np.minimum(self.t, self.last_arrival_s)
        dt = np.diff(t, append=self.last_arrival_s)
        span = self.last_arrival_s - float(self.t[0])
        return float((self.alloc_milli * dt).sum() / span / self.capacity_milli * 100.0)

    @property
    def max_held_incomplete_gpus(self) -> float:
        """Most GPUs ever held by incomplete gangs."""
        return float(self.held_incomplete_milli.max() / MILLI_PER_GPU) if self.t.size else 0.0


def replay_dynamic(
    policy: PlacementPolicy,
    nodes: Sequence[NodeSpec],
    jobs: Sequence[Job],
    *,
    seed: int,
    speed_model: SpeedModel | None = None,
    horizon_s: float | None = None,
    progress: Progress | None = None,
    clock: Clock = time.perf_counter,
) -> DynamicResult:
    """Arrivals, durations, a retried queue and gangs (module docstring) for one policy."""
    t_start = clock()
    sm = speed_model or SpeedModel()
    snap = build_snapshot(nodes)
    masks = _ModelMasks(snap)
    capacity = int(snap.gpu_count.sum()) * MILLI_PER_GPU
    name = policy.name
    reps = gpu_replicas(policy)
    whole = supports_gangs(policy)
    n = len(jobs)
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    slow = np.full(n, np.nan)
    qual = np.full(n, np.nan)
    bw = np.full(n, np.nan)
    qbest: list[tuple[float, float]] = []
    holding: dict[int, list[Assignment]] = {}
    unsched: list[str] = []
    # Events: (time, kind, seq, job); completions (kind 0) before arrivals at the same time.
    events: list[tuple[float, int, int, int]] = [
        (float(j.arrival_s), 1, i, i) for i, j in enumerate(jobs)
    ]
    heapq.heapify(events)
    # Waiting entries by shape: (job, member) with member -1 for a whole job.
    queues: dict[tuple[object, ...], deque[tuple[int, int]]] = {}
    waiting = 0
    incomplete_milli = 0
    alloc = 0
    decisions = 0
    policy_s = 0.0
    series: list[tuple[float, int, int, int]] = []
    done = 0
    prog_every = max(1, n // 100)

    def enqueue(i: int) -> None:
        job = jobs[i]
        if whole or not job.is_gang:
            queues.setdefault(tuple(_shape(p) for p in job.pods), deque()).append((i, -1))
        else:
            for k, p in enumerate(job.pods):
                queues.setdefault((_shape(p),), deque()).append((i, k))

    def begin(i: int, now: float) -> None:
        nonlocal waiting
        job = jobs[i]
        held = holding[i]
        # Whole GPUs, or time-sliced replicas (a repeated GPU lowers the set's quality).
        gpus = sum(len(a.gpus) for a in held if a.gpu_milli == MILLI_PER_GPU or reps > 1)
        q = job_quality(snap, held, sm.level_factor) if gpus >= 2 else 1.0
        s = sm.slowdown(gpus, q)
        start[i], slow[i] = now, s
        if gpus >= 2:
            qual[i] = q
            bw[i] = job_bandwidth(snap, held, sm.level_factor)
        waiting -= 1
        heapq.heappush(events, (now + job.duration_s * s, 0, i, i))

    def try_entry(i: int, k: int, now: float) -> bool:
        nonlocal decisions, policy_s, alloc, incomplete_milli
        job = jobs[i]
        members = list(job.pods) if k < 0 else [job.pods[k]]
        if not may_fit(snap, members, reps):
            return False
        single_multi = k < 0 and not job.is_gang and job.pods[0].gpus >= 2
        best = best_free_quality(snap, job.pods[0], masks) if single_multi else 0.0
        t0 = clock()
        if k < 0 and job.is_gang:
            got = policy.place_gang(members, snap)
        else:
            one = policy.place(members[0], snap)
            got = None if one is None else [one]
        policy_s += clock() - t0
        decisions += 1
        if got is None:
            return False
        if len(got) != len(members):
            raise ReplayError(f"policy {name!r} planned {len(got)} assignments for the "
                              f"{len(members)} pods of job {job.id!r}")
        for req, a in zip(members, got, strict=True):
            check_assignment(req, a, snap, name, reps)
        done_allocs: list[Assignment] = []
        try:
            for a in got:
                _allocate(snap, a, name, reps)
                done_allocs.append(a)
        except ReplayError:
            for a in done_allocs:
                _release(snap, a, reps)
            raise
        milli = sum(_held_milli(a) for a in got)
        alloc += milli
        if single_multi:
            qbest.append((best, set_quality(snap, got[0])))
        holding.setdefault(i, []).extend(got)
        if len(holding[i]) == len(job.pods):
            if k >= 0 and job.is_gang:
                incomplete_milli -= sum(_held_milli(a) for a in holding[i][:-1])
            begin(i, now)
        else:
            incomplete_milli += milli
        return True

    def schedule(now: float) -> None:
        heads = [(q[0], key) for key, q in queues.items() if q]
        heapq.heapify(heads)
        while heads:
            (i, k), key = heapq.heappop(heads)
            q = queues[key]
            if try_entry(i, k, now):
                q.popleft()
                if q:
                    heapq.heappush(heads, (q[0], key))
                else:
                    del queues[key]

    while events:
        now = events[0][0]
        if horizon_s is not None and now > horizon_s:
            break
        while events and events[0][0] == now:
            _, kind, _, i = heapq.heappop(events)
            if kind == 0:
                for a in holding.pop(i):
                    _release(snap, a, reps)
                    alloc -= _held_milli(a)
                end[i] = now
                done += 1
                if progress is not None and done % prog_every == 0:
                    progress(done / n)
            else:
                job = jobs[i]
                for p in job.pods:
                    policy.observe(p)
                why = never_fits(snap, job, masks)
                if why is not None:
                    if len(unsched) < 5:
                        unsched.append(f"{job.id}: {why}")
                    end[i] = -1.0  # marks unschedulable
                    continue
                waiting += 1
                enqueue(i)
        schedule(now)
        series.append((now, alloc, incomplete_milli, waiting))
    if progress is not None:
        progress(1.0)
    arrival = np.array([j.arrival_s for j in jobs], dtype=np.float64)
    gpus = np.array([sum(p.gpus for p in j.pods) for j in jobs], dtype=np.int64)
    started = np.isfinite(start)
    completed = started & np.isfinite(end) & (end >= 0)
    arrived = np.ones(n, dtype=bool)
    arrived[sorted(pending_arrivals(events))] = False
    multi = started & (gpus >= 2)
    ts = np.array(series, dtype=np.float64).reshape(-1, 4)
    qb = np.array(qbest, dtype=np.float64).reshape(-1, 2)
    n_unsched = int((end == -1.0).sum())
    return DynamicResult(
        policy=name, seed=seed, gang_mode="whole" if whole else "one-by-one",
        capacity_milli=capacity, n_jobs=n, completed=int(completed.sum()),
        queued_at_end=int((~started & arrived).sum()) - n_unsched,
        running_at_end=int((started & ~completed).sum()), unschedulable=n_unsched,
        not_arrived=int((~arrived).sum()), unschedulable_examples=unsched,
        wait_s=(start - arrival)[started], jct_s=(end - arrival)[completed],
        job_gpus=gpus[started], slowdown=slow[started],
        quality=qual[multi], quality_gpus=gpus[multi], q_best=qb[:, 0], q_chosen=qb[:, 1],
        t=ts[:, 0], alloc_milli=ts[:, 1].astype(np.int64),
        held_incomplete_milli=ts[:, 2].astype(np.int64), queue_len=ts[:, 3].astype(np.int64),
        decisions=decisions, policy_s=policy_s, wall_s=clock() - t_start,
        makespan_s=float(ts[-1, 0]) if ts.size else 0.0,
        last_arrival_s=float(arrival.max()) if n else 0.0, speed=sm.describe(),
        events=dict(getattr(policy, "events", {})),
        bandwidth_gbps=bw[multi], start_s=start,
    )
