"""`gts plan`: how large a cluster this workload needs under each policy, and what that saves.

For every policy, the smallest pool counts (bench/plan_search.py: bisection for one scaling
pool, coordinate descent for several) at which EVERY seed meets the target:

- fill: the workload's pods, each once, submitted one by one in the seed's shuffled order (the
  fill protocol's order, bench.fill_replay.fill_order with no copies), no departures; the target is
  the share of the workload's GPU request that gets placed (default 99 %). Unlike the FGD
  protocol the workload does not grow with the cluster, so every step of the search and every
  policy replays exactly the same pods in the same order for a given seed.
- dynamic: the dynamic replay (arrivals, durations, retry queue, gangs); the target is a p95
  wait (and optionally a maximum wait) over the jobs, and every job must start.

Honest statistics: every answer states the seeds, the per-seed answers (one scaling pool) or
the per-seed values at the answer, and the margin: the worst seed's value at the answer and at
one step smaller. Reuse between steps: each (seed, counts) runs once; a seed's search starts
from the previous seed's answer; only the first seed replays the largest cluster up front (to
say "not within bounds" in one replay; that replay runs whole and is reused for the report); a
fill step stops as soon as the pods that failed exceed the target's allowance (the step has
missed); clusters with fewer GPUs than the target's share of the request are rejected
without a replay.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from bench.baselines.typical_pods import TypicalPods, typical_pods_of
from bench.clusters import ClusterError, load_preset_map
from bench.dynamic_replay import replay_dynamic
from bench.fill_replay import replay_fill
from bench.out_path import OutPathError, check_out_dir
from bench.plan_cluster import PlanCluster, load_plan_cluster
from bench.plan_search import (
    CachedPredicate,
    Counts,
    one_step_below,
    pool_order,
    smallest_counts,
    smallest_on_grid,
)
from bench.policy_answer import ReplayError
from bench.report_plots import plot_plan
from bench.speed import SpeedModel
from bench.workloads import Workload, WorkloadError, load_workload
from scheduler.contract.units import MILLI_PER_GPU

DEFAULT_PLAN_POLICIES = ("topology", "fgd", "default", "default-timeslice", "binpack")
DEFAULT_PLAN_SEEDS = 3
README_BEGIN = "<!-- gts plan: begin -->"
README_END = "<!-- gts plan: end -->"
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
                progress(f"{policy} step {step[0]} ({_counts_str(cl, counts)}) seed {seed}")
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
                    progress(f"{policy} step {step[0]} ({_counts_str(cl, top)}) seed {s}")
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


def _counts_str(cl: PlanCluster, counts: Counts) -> str:
    return ", ".join(f"{p.name} {c}" for p, c in zip(cl.pools, counts, strict=True))


# ---- worker processes ------------------------------------------------------------------------

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
                    progress(f"{p} what-if ({_counts_str(inp.cluster, counts)}) seed {s}")
                row.append(evaluate(inp, p, s, counts))
            rows.append(row)
        out[p] = rows
    return out


# ---- output ----------------------------------------------------------------------------------


def _value_str(target: Target, o: StepOutcome) -> str:
    if target.mode == "fill":
        return f"<{o.value:.2f}" if o.stopped_early or o.skipped else f"{o.value:.2f}"
    if o.unstarted:
        return f"{o.unstarted} jobs never started"
    return f"{o.value / 60:.1f} min"


def _spread(target: Target, outs: Sequence[StepOutcome]) -> str:
    if not outs:
        return "-"
    vals = sorted(outs, key=lambda o: o.value)
    if len(vals) == 1:
        return _value_str(target, vals[0])
    return f"{_value_str(target, vals[0])} .. {_value_str(target, vals[-1])}"


def _worst(target: Target, outs: Sequence[StepOutcome]) -> StepOutcome:
    return min(outs, key=lambda o: o.value) if target.mode == "fill" else \
        max(outs, key=lambda o: o.value)


def plan_table(inp: PlanInputs, plans: dict[str, PolicyPlan], baseline: str) -> str:
    """The markdown table of GPUs needed per policy, with spread and margin."""
    cl, tgt = inp.cluster, inp.target
    scaling = [p for p in cl.pools if p.scales]
    priced = cl.priced()
    head = ["policy", "GPUs needed", "nodes"]
    if len(cl.pools) > 1:
        head.append("nodes per pool")
    if len(scaling) == 1:
        head.append("per-seed answers (GPUs)")
    head += [f"worst seed at answer ({tgt.unit()})", "one step smaller (worst seed)"]
    if priced:
        head.append("cost / month")
    head.append(f"vs {baseline}")
    rows = []
    base = plans.get(baseline)
    for name, pl in plans.items():
        if pl.counts is None:
            worst = _worst(tgt, pl.best_at_max) if pl.best_at_max else None
            cells = [name, "not within bounds", "-"]
            if len(cl.pools) > 1:
                cells.append("-")
            if len(scaling) == 1:
                cells.append("-")
            cells += [f"largest cluster: {_value_str(tgt, worst)}" if worst else "-", "-"]
            if priced:
                cells.append("-")
            cells.append("-")
            rows.append(cells)
            continue
        worst_at = _worst(tgt, pl.at_answer)
        cells = [name, f"{pl.gpus:,}", f"{pl.nodes:,}"]
        if len(cl.pools) > 1:
            cells.append(_counts_str(cl, pl.counts))
        if len(scaling) == 1:
            gp = sorted(cl.gpus(a) for a in pl.seed_answers.values() if a is not None)
            cells.append(", ".join(f"{g:,}" for g in gp))
        cells.append(_value_str(tgt, worst_at))
        cells.append(_value_str(tgt, _worst(tgt, pl.below)) + " (misses)" if pl.below
                     and not all(o.passed for o in pl.below) else
                     (_value_str(tgt, _worst(tgt, pl.below)) if pl.below else "at the minimum"))
        if priced:
            cells.append(f"{pl.cost_per_month:,.0f}" if pl.cost_per_month is not None else "-")
        cells.append(_diff(pl, base, priced) if name != baseline else "-")
        rows.append(cells)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _diff(pl: PolicyPlan, base: PolicyPlan | None, priced: bool) -> str:
    if base is None or pl.gpus is None:
        return "-"
    if base.gpus is None:
        top = max((o.gpus for o in base.best_at_max), default=0)
        return f"> {top - pl.gpus:,} fewer ({base.policy} misses at {top:,})" if top else "-"
    d = base.gpus - pl.gpus
    s = f"{d:+,} GPUs" if d else "same"
    if priced and pl.cost_per_month is not None and base.cost_per_month is not None:
        s += f", {base.cost_per_month - pl.cost_per_month:+,.0f} / month"
    return s


def verdict(inp: PlanInputs, plans: dict[str, PolicyPlan], ours: str, baseline: str) -> str:
    """One sentence: ours against the baseline at the target."""
    a, b = plans.get(ours), plans.get(baseline)
    if a is None or b is None:
        return ""
    if a.gpus is None:
        return f"With {ours} no cluster within the bounds meets the target."
    if b.gpus is None:
        top = max((o.gpus for o in b.best_at_max), default=0)
        return (f"With {ours} this workload needs {a.gpus:,} GPUs; with {baseline} even the "
                f"largest cluster allowed ({top:,} GPUs) misses the target, so ours needs more "
                f"than {top - a.gpus:,} fewer GPUs.")
    d = b.gpus - a.gpus
    s = f"With {ours} this workload needs {a.gpus:,} GPUs instead of {b.gpus:,} with {baseline}"
    s += f": {d:,} fewer" if d > 0 else (f": {-d:,} more" if d < 0 else ": the same")
    if a.cost_per_month is not None and b.cost_per_month is not None:
        s += f", {b.cost_per_month - a.cost_per_month:,.0f} per month"
    return s + "."


def plan_markdown(inp: PlanInputs, plans: dict[str, PolicyPlan], baseline: str,
                  command: str, wall_s: float, jobs: int = 1) -> str:
    """Caption, verdict and table as printed by `gts plan`."""
    cl = inp.cluster
    bounds = "; ".join(f"{p.name}: {p.min}..{p.max} step {p.step}" + (
        f" (now {p.count})" if p.scales else "") for p in cl.pools)
    ours = "topology" if "topology" in plans else next(iter(plans))
    out = [f"`{command}`", "",
           f"Target: {inp.target.describe()}. Seeds {', '.join(map(str, inp.seeds))}: a cluster "
           f"meets the target when every seed does; per-seed answers show the spread. "
           f"Workload: {inp.workload.source} ({len(inp.workload.jobs):,} jobs, "
           f"{inp.demand_milli / MILLI_PER_GPU:,.0f} GPUs requested). Cluster: {cl.source}, "
           f"pools {bounds}.", ""]
    v = verdict(inp, plans, ours, baseline)
    if v:
        out += [v, ""]
    out.append(plan_table(inp, plans, baseline))
    by_gpus: dict[int, list[str]] = {}
    for name, pl in plans.items():
        if pl.gpus is not None:
            by_gpus.setdefault(pl.gpus, []).append(name)
    for g, names in by_gpus.items():
        if len(names) > 1:
            out += ["", f"{', '.join(names)} tie: each needs {g:,} GPUs."]
    reps = sum(p.replays for p in plans.values())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    out += ["", f"{reps} replays in {wall_s:.0f} s with {jobs} worker process"
                f"{'es' if jobs != 1 else ''} (load average {load:.1f} when it ended; the "
                f"answers do not depend on the load)."]
    return "\n".join(out)


def plan_json(inp: PlanInputs, plans: dict[str, PolicyPlan], baseline: str) -> dict[str, Any]:
    """plan.json: the inputs and every replay's outcome at the answer and one step below."""
    def clean(x: Any) -> Any:
        if isinstance(x, np.generic):
            x = x.item()
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    pols: dict[str, Any] = {}
    for k, v in plans.items():
        pols[k] = asdict(v)
        pols[k]["seed_answer_gpus"] = [inp.cluster.gpus(a) if a is not None else None
                                       for a in v.seed_answers.values()]
    doc: dict[str, Any] = clean({
        "target": asdict(inp.target),
        "target_text": inp.target.describe(),
        "seeds": inp.seeds,
        "baseline": baseline,
        "cluster": {"source": inp.cluster.source, "pools": [asdict(p) for p in inp.cluster.pools]},
        "workload": {"source": inp.workload.source, "jobs": len(inp.workload.jobs),
                     "gpu_request": inp.demand_milli / MILLI_PER_GPU},
        "policies": pols,
    })
    return doc


# ---- command line ----------------------------------------------------------------------------


def _scale(text: str) -> tuple[int, int, int]:
    parts = text.split(":")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scale {text!r}: expected MIN:MAX[:STEP] (integers)"
                                         ) from None
    if len(vals) not in (2, 3) or vals[0] < 0 or vals[1] < vals[0] or (len(vals) == 3 and
                                                                       vals[2] < 1):
        raise argparse.ArgumentTypeError(f"--scale {text!r}: expected MIN:MAX[:STEP] with "
                                         f"0 <= MIN <= MAX and STEP >= 1")
    return vals[0], vals[1], vals[2] if len(vals) == 3 else 1


def parse_what_if(text: str, cl: PlanCluster) -> Counts:
    """`POOL+N` or `POOL-N`: the current counts with one pool grown or shrunk by N nodes."""
    for sign in ("+", "-"):
        if sign in text:
            name, _, n = text.rpartition(sign)
            break
    else:
        raise ValueError(f"--what-if {text!r}: expected POOL+N or POOL-N")
    names = [p.name for p in cl.pools]
    if name not in names:
        raise ValueError(f"--what-if {text!r}: no pool {name!r}; pools: {', '.join(names)}")
    try:
        k = int(n)
    except ValueError:
        raise ValueError(f"--what-if {text!r}: {n!r} is not a node count") from None
    i = names.index(name)
    cur = list(cl.current())
    cur[i] = cur[i] + k if sign == "+" else cur[i] - k
    if cur[i] < 0:
        raise ValueError(f"--what-if {text!r}: pool {name!r} has only {cl.pools[i].count} nodes")
    return tuple(cur)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `plan` on the `gts` command."""
    p = subparsers.add_parser(
        "plan", help="smallest cluster per policy that meets a target (capacity planning)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster", metavar="FILE", required=True,
                   help="Alibaba node CSV (one pool `all`, see --scale) or YAML spec whose "
                        "pools may carry scale: {min, max, step, cost_per_node_hour, "
                        "cost_per_gpu_hour}")
    p.add_argument("--workload", metavar="FILE", required=True,
                   help="workload: Alibaba pod CSV or Philly/Lingjun job CSV")
    p.add_argument("--scale", type=_scale, metavar="MIN:MAX[:STEP]",
                   help="node CSV only: how many nodes the one pool may have")
    p.add_argument("--cost-per-gpu-hour", type=float, default=0.0, metavar="X",
                   help="node CSV only: price of a GPU-hour (for the cost column)")
    p.add_argument("--cost-per-node-hour", type=float, default=0.0, metavar="X",
                   help="node CSV only: price of a node-hour")
    p.add_argument("--mode", choices=("fill", "dynamic"), default="fill")
    p.add_argument("--placed", type=float, default=99.0, metavar="PCT",
                   help="fill target: %% of the GPU request placed (default 99)")
    p.add_argument("--p95-wait-min", type=float, default=10.0, metavar="MIN",
                   help="dynamic target: p95 wait in minutes (default 10)")
    p.add_argument("--max-wait-min", type=float, default=None, metavar="MIN",
                   help="dynamic target: no job waits longer (default: no limit)")
    p.add_argument("--policies", default=",".join(DEFAULT_PLAN_POLICIES),
                   help=f"comma-separated (default {','.join(DEFAULT_PLAN_POLICIES)})")
    p.add_argument("--baseline", default="default",
                   help="policy the others are compared with (default: default)")
    p.add_argument("--seeds", type=int, default=DEFAULT_PLAN_SEEDS, metavar="N",
                   help=f"seeds 0..N-1 (default {DEFAULT_PLAN_SEEDS})")
    p.add_argument("--what-if", metavar="POOL+N|POOL-N",
                   help="no search: the current cluster against it with one pool changed")
    p.add_argument("--preset-map", metavar="FILE", help="topology preset rules for CSV nodes")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="worker processes, one policy each (default: CPU count)")
    p.add_argument("--out", metavar="DIR", help="also write plan.md, plan.json, plan.png here")
    p.add_argument("--readme", metavar="FILE",
                   help=f"also replace the text between {README_BEGIN!r} and {README_END!r} "
                        f"in FILE with the table (keeps a README's numbers rerunnable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main_args)


def main_args(args: argparse.Namespace) -> int:
    """Run `gts plan` from parsed arguments."""
    from bench.baselines import POLICIES
    from bench.progress_bar import ProgressBar

    def fail(msg: str) -> int:
        print(f"gts plan: {msg}", file=sys.stderr)
        return 2

    policies = [s.strip() for s in args.policies.split(",") if s.strip()]
    unknown = [p for p in policies if p not in POLICIES]
    if not policies or unknown:
        return fail(f"--policies: unknown {unknown[0]!r}; valid: {', '.join(POLICIES)}"
                    if unknown else "--policies is empty")
    if args.seeds < 1:
        return fail(f"--seeds {args.seeds}: must be at least 1")
    if args.jobs < 1:
        return fail(f"--jobs {args.jobs}: must be at least 1")
    if not 0 < args.placed <= 100:
        return fail(f"--placed {args.placed}: must be in (0, 100]")
    if args.p95_wait_min < 0 or (args.max_wait_min is not None and args.max_wait_min < 0):
        return fail("--p95-wait-min / --max-wait-min: must be >= 0")
    try:
        out = check_out_dir(args.out, files=("plan.md", "plan.json", "plan.png")) \
            if args.out else None
    except OutPathError as e:
        return fail(str(e))
    if args.readme:
        try:
            text = Path(args.readme).read_text(encoding="utf-8")
        except OSError as e:
            return fail(f"--readme {args.readme}: {e.strerror or e}")
        if README_BEGIN not in text or README_END not in text:
            return fail(f"--readme {args.readme}: needs the lines {README_BEGIN} and "
                        f"{README_END} around the table")
    try:
        pm = load_preset_map(args.preset_map) if args.preset_map else None
        cl = load_plan_cluster(args.cluster, preset_map=pm, scale=args.scale,
                               cost_per_node_hour=args.cost_per_node_hour,
                               cost_per_gpu_hour=args.cost_per_gpu_hour)
        wl = load_workload(args.workload)
        changed = parse_what_if(args.what_if, cl) if args.what_if else None
    except (ClusterError, WorkloadError, OSError, ValueError) as e:
        return fail(str(e))
    target = Target(mode=args.mode, placed_pct=args.placed, p95_wait_s=args.p95_wait_min * 60,
                    max_wait_s=None if args.max_wait_min is None else args.max_wait_min * 60)
    if target.mode == "dynamic" and not any(j.duration_s > 0 for j in wl.jobs):
        return fail(f"{wl.source} has no times (arrival/duration): use --mode fill")
    pods = wl.pods()
    inp = PlanInputs(cl, wl, target, list(range(args.seeds)),
                     demand_milli=sum(p.gpu_demand_milli for p in pods),
                     typical=typical_pods_of(pods))
    if inp.demand_milli == 0:
        return fail(f"{wl.source}: the workload requests no GPUs")
    argv = getattr(args, "argv", None)
    command = "gts plan " + shlex.join(argv) if argv is not None else \
        "gts " + shlex.join(sys.argv[1:])
    # Expected replays: a bisection of the grid for the first seed, ~3 per further seed.
    grid = max(len(p.grid()) for p in cl.pools)
    guess = len(policies) * (max(1, grid).bit_length() + 3 * len(inp.seeds))
    bar = ProgressBar(guess if changed is None else 2 * len(policies) * len(inp.seeds),
                      enabled=not args.quiet)
    t0 = time.perf_counter()

    def progress(label: str) -> None:
        bar.done += 1
        bar.total = max(bar.total, int(bar.done) + 1)
        bar.update(bar.done, label[:60], force=True)

    try:
        if changed is not None:
            res = what_if(inp, policies, changed, progress)
            bar.close()
            print(what_if_markdown(inp, res, changed, command))
            return 0
        plans = plan_all(inp, policies, args.jobs, progress)
    except (ReplayError, ClusterError) as e:
        bar.close()
        return fail(str(e))
    bar.close()
    wall = time.perf_counter() - t0
    baseline = args.baseline if args.baseline in plans else policies[-1]
    md = plan_markdown(inp, plans, baseline, command, wall, min(args.jobs, len(policies)))
    print(md)
    if args.readme:
        path = Path(args.readme)
        text = path.read_text(encoding="utf-8")
        head, _, rest = text.partition(README_BEGIN)
        _, _, tail = rest.partition(README_END)
        path.write_text(f"{head}{README_BEGIN}\n{md}\n{README_END}{tail}", encoding="utf-8")
    if out is not None:
        (out / "plan.md").write_text(md + "\n", encoding="utf-8")
        (out / "plan.json").write_text(json.dumps(plan_json(inp, plans, baseline), indent=1,
                                                  allow_nan=False) + "\n", encoding="utf-8")
        plot_plan(plan_json(inp, plans, baseline), out / "plan.png")
        print(f"plan: {out / 'plan.md'}")
    return 0


def what_if_markdown(inp: PlanInputs, res: dict[str, list[list[StepOutcome]]], changed: Counts,
                     command: str) -> str:
    """The what-if table: each policy on the current cluster and on the changed one."""
    cl, tgt = inp.cluster, inp.target
    cur = cl.current()
    head = ["policy", f"now ({_counts_str(cl, cur)}, {cl.gpus(cur):,} GPUs)", "meets",
            f"what-if ({_counts_str(cl, changed)}, {cl.gpus(changed):,} GPUs)", "meets"]
    lines = [f"`{command}`", "", f"Target: {tgt.describe()}; {tgt.unit()}, range over seeds "
             f"{', '.join(map(str, inp.seeds))}. A fill replay stops once the target is missed "
             f"(shown as <).", "",
             "| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for p, (now, then) in res.items():
        lines.append(f"| {p} | {_spread(tgt, now)} | {_meets(now)} | {_spread(tgt, then)} | "
                     f"{_meets(then)} |")
    return "\n".join(lines)


def _meets(outs: Sequence[StepOutcome]) -> str:
    k = sum(o.passed for o in outs)
    return "yes" if k == len(outs) else f"no ({k}/{len(outs)} seeds)"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.plan [args]`, the same as `gts plan [args]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="gts")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["plan", *argv])
    args.argv = argv
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
