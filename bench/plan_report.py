"""What `gts plan` writes: the table per policy (also the README's), the verdict, plan.md,
plan.json and the what-if table."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bench.capacity_plan import PlanInputs, PolicyPlan, StepOutcome, Target, counts_str
from bench.json_safe import json_safe
from bench.plan_search import Counts
from scheduler.contract.units import MILLI_PER_GPU


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
            cells.append(counts_str(cl, pl.counts))
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
    pols: dict[str, Any] = {}
    for k, v in plans.items():
        pols[k] = asdict(v)
        pols[k]["seed_answer_gpus"] = [inp.cluster.gpus(a) if a is not None else None
                                       for a in v.seed_answers.values()]
    doc: dict[str, Any] = json_safe({
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


def what_if_markdown(inp: PlanInputs, res: dict[str, list[list[StepOutcome]]], changed: Counts,
                     command: str) -> str:
    """The what-if table: each policy on the current cluster and on the changed one."""
    cl, tgt = inp.cluster, inp.target
    cur = cl.current()
    head = ["policy", f"now ({counts_str(cl, cur)}, {cl.gpus(cur):,} GPUs)", "meets",
            f"what-if ({counts_str(cl, changed)}, {cl.gpus(changed):,} GPUs)", "meets"]
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
