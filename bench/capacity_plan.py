"""The search behind `gts plan` (bench.plan says what it answers): replay a policy on candidate
clusters (`evaluate`), find the smallest that meets the target on every seed (`plan_policy`,
with bench.plan_search), for several policies in worker processes (`plan_all`), or compare the
current cluster with one changed pool (`what_if`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import numpy as np

from bench.baselines.typical_pods import TypicalPods
from bench.dynamic_replay import replay_dynamic
from bench.fill_replay import replay_fill
from bench.plan_cluster import PlanCluster
from bench.plan_search import (
    CachedPredicate,
    Counts,
    one_step_below,
    pool_order,
    smallest_counts,
    smallest_on_grid,
)
from bench.speed import SpeedModel
from bench.workloads import Workload
from scheduler.contract.units import MILLI_PER_GPU

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Target:
    """What a cluster must achieve: fill (placed share) or dynamic (wait times)."""

    mode: str = "fill"
    placed_pct: float = 99.0
    p95_wait_s: float = 600.0
    max_wait_s: float | None = None

    def describe(self) -> str:
        """One line for the table's caption."""
        if self.mode == "fill":
            return (f"at least {self.placed_pct:g} % of the workload's GPU request placed "
                    f"(fill: every pod once, shuffled per seed, no departures)")
        s = f"p95 wait at most {self.p95_wait_s / 60:g} min"
        if self.max_wait_s is not None:
            s += f" and no job waiting more than {self.max_wait_s / 60:g} min"
        return s + " (dynamic replay), every job started"

    def unit(self) -> str:
        """What `StepOutcome.value` measures."""
        return "GPU request placed %" if self.mode == "fill" else "p95 wait s"


@dataclass(slots=True)
class StepOutcome:
    """One replay of one policy, seed and cluster."""

    seed: int
    counts: Counts
    gpus: int
    passed: bool
    value: float  # fill: placed %, an upper bound when stopped early; dynamic: p95 wait s
    max_wait_s: float = float("nan")
    unstarted: int = 0
    stopped_early: bool = False
    skipped: str = ""  # why no replay was needed
    wall_s: float = 0.0


@dataclass(slots=True)
class PolicyPlan:
    """The answer for one policy."""

    policy: str
    counts: Counts | None
    gpus: int | None
    nodes: int | None
    cost_per_month: float | None
    seed_answers: dict[int, Counts | None]  # one scaling pool: each seed's own smallest counts
    at_answer: list[StepOutcome]
    below: list[StepOutcome]  # one step smaller (the seeds replayed there)
    best_at_max: list[StepOutcome]  # when nothing meets the target: the largest cluster
    replays: int = 0
    wall_s: float = 0.0


@dataclass(slots=True)
class PlanInputs:
    """Everything a worker needs (picklable)."""

    cluster: PlanCluster
    workload: Workload
    target: Target
    seeds: list[int]
    demand_milli: int = 0
    typical: TypicalPods | None = None


def _factory(name: str, seed: int) -> Any:
    from bench.baselines import make_policy

    return make_policy(name, seed)


def evaluate(inp: PlanInputs, policy: str, seed: int, counts: Counts,
             full: bool = False) -> StepOutcome:
    """Replay `policy` with `seed` on the cluster at `counts` and judge it against the target
    (a fill replay stops once the target is missed, unless `full`)."""
    t0 = time.perf_counter()
    nodes = inp.cluster.build_nodes(counts)
    gpus = sum(n.topology.n for n in nodes)
    tgt = inp.target
    if tgt.mode == "fill":
        need = inp.demand_milli * tgt.placed_pct / 100.0
        if gpus * MILLI_PER_GPU < need:
            return StepOutcome(seed, counts, gpus, False, 100.0 * gpus * MILLI_PER_GPU /
                               max(inp.demand_milli, 1), skipped="fewer GPUs than the target "
                               "share of the request")
        allowance = math.floor(inp.demand_milli - need)
        r = replay_fill(_factory(policy, seed), nodes, inp.workload.pods(), seed=seed,
                        target_ratio=0.0, record_every=1e9, typical=inp.typical,
                        stop_failed_milli=None if full else allowance)
        arrived = r.arrived_pct[-1] * r.capacity_milli / 100.0 if r.n_pods else 0.0
        placed = r.placed_request_pct[-1] * r.capacity_milli / 100.0 if r.n_pods else 0.0
        failed = arrived - placed
        value = float(100.0 * (inp.demand_milli - failed) / max(inp.demand_milli, 1))
        return StepOutcome(seed, counts, gpus, bool(not r.stopped_early and
                                                    value >= tgt.placed_pct),
                           value, stopped_early=r.stopped_early,
                           wall_s=time.perf_counter() - t0)
    if gpus == 0:
        return StepOutcome(seed, counts, 0, False, float("inf"), skipped="no GPUs")
    d = replay_dynamic(_factory(policy, seed), nodes, inp.workload.jobs, seed=seed,
                       speed_model=SpeedModel())
    unstarted = d.queued_at_end + d.unschedulable
    p95 = float(np.percentile(d.wait_s, 95)) if d.wait_s.size else 0.0
    mx = float(d.wait_s.max()) if d.wait_s.size else 0.0
    ok = bool(unstarted == 0) and p95 <= tgt.p95_wait_s and (tgt.max_wait_s is None or
                                                       mx <= tgt.max_wait_s)
    return StepOutcome(seed, counts, gpus, ok, p95 if unstarted == 0 else float("inf"),
                       max_wait_s=mx, unstarted=unstarted, wall_s=time.perf_counter() - t0)


def plan_policy(inp: PlanInputs, policy: str, progress: Progress | None = None) -> PolicyPlan:
    """The smallest cluster where every seed meets the target, for one policy."""
    t0 = time.perf_counter()
    cl = inp.cluster
    grids = [p.grid() for p in cl.pools]
    order = pool_order([p.cost_per_gpu_hour + (p.cost_per_node_hour / p.gpus_per_node
                                               if p.gpus_per_node else 0.0) for p in cl.pools],
                       [p.gpus_per_node for p in cl.pools])
    runs: dict[tuple[int, Counts], StepOutcome] = {}
    step = [0]

    def run(seed: int, counts: Counts) -> StepOutcome:
        key = (seed, tuple(counts))
        if key not in runs:
            step[0] += 1
            if progress is not None:
                progress(f"{policy} step {step[0]} ({counts_str(cl, counts)}) seed {seed}")
            runs[key] = evaluate(inp, policy, seed, tuple(counts))
        return runs[key]

    scaling = [i for i, g in enumerate(grids) if len(g) > 1]
    seed_answers: dict[int, Counts | None] = {}
    answer: Counts | None
    top = tuple(int(g[-1]) for g in grids)
    if len(scaling) <= 1:
        hint = capacity_hint(inp, grids, scaling)
        for s in inp.seeds:
            # The largest cluster first, for the first seed only: when it misses there is no
            # answer, found in one replay (kept whole: it is also the "largest cluster" line).
            # Later seeds start from the previous answer and reach the largest cluster only
            # if their search climbs there.
            if s == inp.seeds[0]:
                runs[(s, top)] = evaluate(inp, policy, s, top, full=True)
                step[0] += 1
                if progress is not None:
                    progress(f"{policy} step {step[0]} ({counts_str(cl, top)}) seed {s}")
                if not runs[(s, top)].passed:
                    seed_answers[s] = None
                    break

            def seed_passes(c: Counts, s: int = s) -> bool:
                return run(s, c).passed

            a = smallest_counts(CachedPredicate(seed_passes), grids, order, hint)
            seed_answers[s] = a
            if a is None:  # this seed misses even at the largest cluster: no answer
                break
            hint = a
        found = [a for a in seed_answers.values() if a is not None]
        answer = None if len(found) < len(inp.seeds) else max(found)
        # Heuristics are not exactly monotone: re-check every seed at the answer, step up.
        while answer is not None and not all(run(s, answer).passed for s in inp.seeds):
            p = scaling[0] if scaling else 0
            bigger = [v for v in grids[p] if v > answer[p]]
            answer = (*answer[:p], bigger[0], *answer[p + 1:]) if bigger else None
    else:
        pred = CachedPredicate(lambda c: all(run(s, c).passed for s in inp.seeds))
        answer = smallest_counts(pred, grids, order)
    if answer is None:
        # What the largest allowed cluster reaches, replayed to the end.
        # The first seed's is already whole (replayed up front); the count includes these.
        best: list[StepOutcome] = []
        extra = 0
        for s in inp.seeds:
            r = runs.get((s, top))
            if r is None or r.stopped_early:
                r = evaluate(inp, policy, s, top, full=True)
                extra += not r.skipped
            best.append(r)
        return PolicyPlan(policy, None, None, None, None, seed_answers, [], [], best,
                          replays=_replays(runs) + extra, wall_s=time.perf_counter() - t0)
    at = [run(s, answer) for s in inp.seeds]
    below: list[StepOutcome] = []
    for b in one_step_below(answer, grids)[:1]:
        below = [runs[(s, b)] for s in inp.seeds if (s, b) in runs] or [run(inp.seeds[0], b)]
    nodes = cl.build_nodes(answer)
    return PolicyPlan(
        policy, answer, sum(n.topology.n for n in nodes), len(nodes),
        cl.cost_per_month(answer) if cl.priced() else None, seed_answers, at, below, [],
        replays=_replays(runs), wall_s=time.perf_counter() - t0)


def capacity_hint(inp: PlanInputs, grids: Sequence[Sequence[int]],
                  scaling: Sequence[int]) -> Counts | None:
    """Where the search of one scaling pool starts: the smallest count with as many GPUs as
    the target's share of the request (fill), else None (plain bisection)."""
    if inp.target.mode != "fill" or len(scaling) != 1:
        return None
    p = scaling[0]
    top = [int(g[-1]) for g in grids]
    need = inp.demand_milli * inp.target.placed_pct / 100.0 / MILLI_PER_GPU

    def enough(v: int) -> bool:
        return inp.cluster.gpus(tuple([*top[:p], v, *top[p + 1:]])) >= need

    v = smallest_on_grid(enough, list(grids[p]))
    return None if v is None else tuple([*top[:p], v, *top[p + 1:]])


def _replays(runs: dict[tuple[int, Counts], StepOutcome]) -> int:
    return sum(1 for r in runs.values() if not r.skipped)


def counts_str(cl: PlanCluster, counts: Counts) -> str:
    return ", ".join(f"{p.name} {c}" for p, c in zip(cl.pools, counts, strict=True))


_WORKER: dict[str, Any] = {}


def _worker_init(inp: PlanInputs, queue: Any) -> None:
    _WORKER["inp"] = inp
    _WORKER["queue"] = queue


def _worker_plan(policy: str) -> PolicyPlan:
    q = _WORKER["queue"]
    return plan_policy(_WORKER["inp"], policy, progress=q.put if q is not None else None)


def plan_all(inp: PlanInputs, policies: Sequence[str], jobs: int,
             progress: Progress | None = None) -> dict[str, PolicyPlan]:
    """Plan every policy, in this process (jobs == 1) or one policy per worker process."""
    if jobs <= 1 or len(policies) <= 1:
        return {p: plan_policy(inp, p, progress) for p in policies}
    ctx = get_context("spawn")
    queue = ctx.Manager().Queue() if progress is not None else None
    out: dict[str, PolicyPlan] = {}
    with ProcessPoolExecutor(max_workers=min(jobs, len(policies)), mp_context=ctx,
                             initializer=_worker_init, initargs=(inp, queue)) as pool:
        futs: dict[Future[PolicyPlan], str] = {pool.submit(_worker_plan, p): p for p in policies}
        pending = set(futs)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for f in done:
                out[futs[f]] = f.result()
            while queue is not None and not queue.empty():
                msg = queue.get_nowait()
                if progress is not None:
                    progress(msg)
    return {p: out[p] for p in policies}


def what_if(inp: PlanInputs, policies: Sequence[str], changed: Counts,
            progress: Progress | None = None) -> dict[str, list[list[StepOutcome]]]:
    """Every seed of every policy on the current cluster and on `changed`."""
    out: dict[str, list[list[StepOutcome]]] = {}
    for p in policies:
        rows = []
        for counts in (inp.cluster.current(), changed):
            row = []
            for s in inp.seeds:
                if progress is not None:
                    progress(f"{p} what-if ({counts_str(inp.cluster, counts)}) seed {s}")
                row.append(evaluate(inp, p, s, counts))
            rows.append(row)
        out[p] = rows
    return out
