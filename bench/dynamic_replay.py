"""The dynamic replay: arrivals, durations, a retried queue and gangs, for any policy.

Arrivals in time order, durations stretched by the link-quality model (bench/speed.py), a
pending queue retried whenever the cluster changed (each waiting job in arrival order; once a
job of some shape fails, later jobs of the same shape are skipped in that pass, since nothing
was freed in between), gangs placed whole via place_gang; a policy that cannot plan gangs
places members one by one and they hold their GPUs while waiting.

The loop never decides placement: it hands each request to `policy.place` / `place_gang`,
checks the answer and holds it on the snapshot (bench.policy_answer). Per job it does O(1)
work beyond the policy call and the fit checks (bench.job_fit), so a replay costs what the
policy costs.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from bench.fill_replay import Clock, Progress
from bench.free_quality import ModelMasks, best_free_quality
from bench.job_bandwidth import job_bandwidth
from bench.job_fit import Shape, may_fit, never_fits, shape
from bench.policy_answer import (
    ReplayError,
    check_assignment,
    gpu_replicas,
    held_milli,
    hold,
    release,
)
from bench.speed import SpeedModel, job_quality, set_quality
from bench.workloads import Job
from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.interface import PlacementPolicy
from scheduler.policy.snapshot import build_snapshot


class EventKind(IntEnum):
    """What happens to a job at an event's time; completions sort before arrivals at the same
    time, so a job arriving when another ends finds its resources free."""

    COMPLETION = 0
    ARRIVAL = 1


# (time, kind, sequence, job index): heap order is time, then kind, then sequence.
Event = tuple[float, EventKind, int, int]
# A queue entry: (job index, member index), or WHOLE_JOB as the member for all of its pods.
WHOLE_JOB = -1
Entry = tuple[int, int]
UNSCHEDULABLE = -1.0  # the end time of a job that can never fit


def supports_gangs(policy: PlacementPolicy) -> bool:
    """False for policies that declare `supports_gangs = False` (kube-scheduler's default)."""
    return bool(getattr(policy, "supports_gangs", True))


def pending_arrivals(events: Sequence[Event]) -> set[int]:
    """Jobs whose arrival event is still in the heap (beyond the horizon)."""
    return {e[3] for e in events if e[1] == EventKind.ARRIVAL}


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




class _DynamicReplay:
    """The replay's state between events (the cluster, the queues, what each job holds, the
    running totals), with one method per thing that happens to a job."""

    def __init__(self, policy: PlacementPolicy, nodes: Sequence[NodeSpec], jobs: Sequence[Job],
                 sm: SpeedModel, clock: Clock) -> None:
        self.policy, self.jobs, self.sm, self.clock = policy, jobs, sm, clock
        self.snap = build_snapshot(nodes)
        self.masks = ModelMasks(self.snap)
        self.name = policy.name
        self.reps = gpu_replicas(policy)
        self.whole = supports_gangs(policy)
        n = len(jobs)
        self.start = np.full(n, np.nan)
        self.end = np.full(n, np.nan)  # UNSCHEDULABLE for jobs that can never fit
        self.slow = np.full(n, np.nan)
        self.qual = np.full(n, np.nan)
        self.bw = np.full(n, np.nan)
        self.qbest: list[tuple[float, float]] = []
        self.holding: dict[int, list[Assignment]] = {}
        self.unsched: list[str] = []
        self.events: list[Event] = [
            (float(j.arrival_s), EventKind.ARRIVAL, i, i) for i, j in enumerate(jobs)
        ]
        heapq.heapify(self.events)
        # Waiting entries by the shapes of what they place.
        self.queues: dict[tuple[Shape, ...], deque[Entry]] = {}
        self.waiting = 0  # jobs
        self.incomplete_milli = 0  # held by gangs placed one by one that are not complete
        self.alloc_milli = 0
        self.decisions = 0
        self.policy_s = 0.0
        self.completed = 0
        self.series: list[tuple[float, int, int, int]] = []

    def run(self, horizon_s: float | None, progress: Progress | None) -> None:
        """Process events in time order up to `horizon_s`, retrying the queue after each time."""
        n = len(self.jobs)
        prog_every = max(1, n // 100)
        while self.events:
            now = self.events[0][0]
            if horizon_s is not None and now > horizon_s:
                break
            while self.events and self.events[0][0] == now:
                _, kind, _, i = heapq.heappop(self.events)
                if kind == EventKind.COMPLETION:
                    self.complete(i, now)
                    if progress is not None and self.completed % prog_every == 0:
                        progress(self.completed / n)
                else:
                    self.arrive(i)
            self.schedule(now)
            self.series.append((now, self.alloc_milli, self.incomplete_milli, self.waiting))
        if progress is not None:
            progress(1.0)

    def arrive(self, i: int) -> None:
        """Job i arrives: the policy observes its pods; it waits unless it can never fit."""
        job = self.jobs[i]
        for p in job.pods:
            self.policy.observe(p)
        why = never_fits(self.snap, job)
        if why is not None:
            if len(self.unsched) < 5:
                self.unsched.append(f"{job.id}: {why}")
            self.end[i] = UNSCHEDULABLE
            return
        self.waiting += 1
        if self.whole or not job.is_gang:
            self._enqueue((i, WHOLE_JOB), tuple(shape(p) for p in job.pods))
        else:
            for k, p in enumerate(job.pods):
                self._enqueue((i, k), (shape(p),))

    def _enqueue(self, entry: Entry, key: tuple[Shape, ...]) -> None:
        self.queues.setdefault(key, deque()).append(entry)

    def complete(self, i: int, now: float) -> None:
        """Job i ends: everything it holds is released."""
        held = self.holding.pop(i)
        release(self.snap, held, self.reps)
        self.alloc_milli -= sum(held_milli(a) for a in held)
        self.end[i] = now
        self.completed += 1

    def schedule(self, now: float) -> None:
        """One pass over the queues, oldest entry first; a queue whose head does not fit is
        skipped for the rest of the pass (nothing was freed in between)."""
        heads = [(q[0], key) for key, q in self.queues.items() if q]
        heapq.heapify(heads)
        while heads:
            (i, k), key = heapq.heappop(heads)
            q = self.queues[key]
            if self.try_entry(i, k, now):
                q.popleft()
                if q:
                    heapq.heappush(heads, (q[0], key))
                else:
                    del self.queues[key]

    def try_entry(self, i: int, k: int, now: float) -> bool:
        """Ask the policy to place entry (i, k); True when it got its place."""
        job = self.jobs[i]
        members = list(job.pods) if k == WHOLE_JOB else [job.pods[k]]
        if not may_fit(self.snap, members, self.reps):
            return False
        # Single pods of 2+ GPUs: the best quality free before the placement, for the report.
        single_multi = k == WHOLE_JOB and not job.is_gang and job.pods[0].gpus >= 2
        best = best_free_quality(self.snap, job.pods[0], self.masks) if single_multi else None
        got = self._decide(job, members, gang=k == WHOLE_JOB and job.is_gang)
        if got is None:
            return False
        self._take(i, k, got, now, best)
        return True

    def _decide(self, job: Job, members: list[PodRequest], gang: bool
                ) -> list[Assignment] | None:
        t0 = self.clock()
        if gang:
            got = self.policy.place_gang(members, self.snap)
        else:
            one = self.policy.place(members[0], self.snap)
            got = None if one is None else [one]
        self.policy_s += self.clock() - t0
        self.decisions += 1
        if got is None:
            return None
        if len(got) != len(members):
            raise ReplayError(f"policy {self.name!r} planned {len(got)} assignments for the "
                              f"{len(members)} pods of job {job.id!r}")
        for req, a in zip(members, got, strict=True):
            check_assignment(req, a, self.snap, self.name, self.reps)
        return got

    def _take(self, i: int, k: int, got: list[Assignment], now: float,
              best: float | None) -> None:
        job = self.jobs[i]
        hold(self.snap, got, self.name, self.reps)
        milli = sum(held_milli(a) for a in got)
        self.alloc_milli += milli
        if best is not None:
            self.qbest.append((best, set_quality(self.snap, got[0])))
        held = self.holding.setdefault(i, [])
        held.extend(got)
        if len(held) < len(job.pods):
            self.incomplete_milli += milli
            return
        if k != WHOLE_JOB and job.is_gang:
            # The last member completes the gang: the others stop counting as incomplete.
            self.incomplete_milli -= sum(held_milli(a) for a in held[:-1])
        self._begin(i, now)

    def _begin(self, i: int, now: float) -> None:
        """Job i holds all it needs: it runs, slowed by the quality of its GPU set."""
        job = self.jobs[i]
        held = self.holding[i]
        # Whole GPUs, or time-sliced replicas (a repeated GPU lowers the set's quality).
        gpus = sum(len(a.gpus) for a in held if a.gpu_milli == MILLI_PER_GPU or self.reps > 1)
        q = job_quality(self.snap, held, self.sm.level_factor) if gpus >= 2 else 1.0
        s = self.sm.slowdown(gpus, q)
        self.start[i], self.slow[i] = now, s
        if gpus >= 2:
            self.qual[i] = q
            self.bw[i] = job_bandwidth(self.snap, held, self.sm.level_factor)
        self.waiting -= 1
        heapq.heappush(self.events, (now + job.duration_s * s, EventKind.COMPLETION, i, i))

    def result(self, seed: int, wall_s: float) -> DynamicResult:
        """The per-job times, time series and totals as a DynamicResult."""
        jobs, n = self.jobs, len(self.jobs)
        start, end = self.start, self.end
        arrival = np.array([j.arrival_s for j in jobs], dtype=np.float64)
        gpus = np.array([sum(p.gpus for p in j.pods) for j in jobs], dtype=np.int64)
        started = np.isfinite(start)
        completed = started & np.isfinite(end) & (end >= 0)
        arrived = np.ones(n, dtype=bool)
        arrived[sorted(pending_arrivals(self.events))] = False
        multi = started & (gpus >= 2)
        ts = np.array(self.series, dtype=np.float64).reshape(-1, 4)
        qb = np.array(self.qbest, dtype=np.float64).reshape(-1, 2)
        n_unsched = int((end == UNSCHEDULABLE).sum())
        return DynamicResult(
            policy=self.name, seed=seed, gang_mode="whole" if self.whole else "one-by-one",
            capacity_milli=int(self.snap.gpu_count.sum()) * MILLI_PER_GPU, n_jobs=n,
            completed=int(completed.sum()),
            queued_at_end=int((~started & arrived).sum()) - n_unsched,
            running_at_end=int((started & ~completed).sum()), unschedulable=n_unsched,
            not_arrived=int((~arrived).sum()), unschedulable_examples=self.unsched,
            wait_s=(start - arrival)[started], jct_s=(end - arrival)[completed],
            job_gpus=gpus[started], slowdown=self.slow[started],
            quality=self.qual[multi], quality_gpus=gpus[multi], q_best=qb[:, 0],
            q_chosen=qb[:, 1], t=ts[:, 0], alloc_milli=ts[:, 1].astype(np.int64),
            held_incomplete_milli=ts[:, 2].astype(np.int64), queue_len=ts[:, 3].astype(np.int64),
            decisions=self.decisions, policy_s=self.policy_s, wall_s=wall_s,
            makespan_s=float(ts[-1, 0]) if ts.size else 0.0,
            last_arrival_s=float(arrival.max()) if n else 0.0, speed=self.sm.describe(),
            events=dict(getattr(self.policy, "events", {})),
            bandwidth_gbps=self.bw[multi], start_s=start,
        )


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
    replay = _DynamicReplay(policy, nodes, jobs, speed_model or SpeedModel(), clock)
    replay.run(horizon_s, progress)
    return replay.result(seed, clock() - t_start)
