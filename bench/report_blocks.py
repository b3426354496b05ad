"""What report.md and report.html say, as a list of blocks (heading, paragraph, table, image)
built from results.json's document; bench.report_render turns them into either format."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from bench.bound_report import bound_rows
from bench.paper_check import paper_variant
from bench.report_render import Block
from bench.report_verdict import (
    DYNAMIC_COLUMNS,
    EVENT_WORDS,
    FILL_COLUMNS,
    columns_text,
    ties,
    utilization_note,
    verdict,
)
from bench.simulation_run import SimulationRun, in_policy_order


def _fmt(v: object, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.{digits}f}"
    return str(v)


def _range(s: dict[str, float], digits: int = 0) -> str:
    """Median [min, max] over seeds."""
    if not s or s.get("n", 0) == 0:
        return "-"
    if s["n"] == 1:
        return f"{s['median']:,.{digits}f}"
    return f"{s['median']:,.{digits}f} [{s['min']:,.{digits}f}, {s['max']:,.{digits}f}]"


def _risk_text(pol: dict[str, Any], mode: str) -> str | None:
    """Counts of the risks a baseline takes (time-slicing), median [min, max] over seeds."""
    parts = []
    for name, p in pol.items():
        m = p.get(mode) if isinstance(p, dict) else None
        for ev, s in ((m or {}).get("events") or {}).items():
            parts.append(f"`{name}`: {_range(s)} {EVENT_WORDS.get(ev, ev)}")
    if not parts:
        return None
    extra = (" The dynamic replay slows a job down for replicas of its own on one GPU, not for "
             "sharing a GPU with other pods, so time-sliced run times are optimistic."
             if mode == "dynamic" else "")
    return (f"Risks ({mode}): " + "; ".join(parts) + ". Time-sliced GPUs count replicas: "
            "'unallocated' (and 'GPU util.') for such a policy is about the replicas "
            "kube-scheduler hands out, not the silicon." + extra)


def _spread(s: dict[str, float]) -> str:
    if not s or s.get("n", 0) == 0:
        return "-"
    if s["n"] == 1:
        return f"{s['median']:.2f}"
    return f"{s['median']:.2f} [{s['p25']:.2f}, {s['p75']:.2f}]"


def _entries(pol: dict[str, Any], mode: str) -> dict[str, Any]:
    """results.json's entry of `mode` ("fill" or "dynamic") per policy."""
    return {name: p.get(mode) for name, p in pol.items() if isinstance(p, dict)}


def report_blocks(run: SimulationRun, doc: dict[str, object],
                  images: dict[str, str]) -> list[Block]:
    """The report's headings, paragraphs, tables and images, in order."""
    pol = doc["policies"]
    assert isinstance(pol, dict)
    b: list[Block] = [("h1", "gts simulate report")]
    vtext = verdict(doc, run.plan)
    if vtext:
        b.append(("p", vtext))
    if "plan" in images:
        b.append(("img", "plan"))
    b.append(("p", f"Command: `{run.command}`"))
    c, w = run.cluster, run.workload
    b.append(("p", f"Cluster: {c.get('source')} - {c.get('nodes')} nodes, {c.get('gpus')} GPUs; "
                   f"pools: " + ", ".join(f"{n} x {k}" for k, n in
                                         dict(c.get("pools", {}) or {}).items())))  # type: ignore[call-overload]
    b.append(("p", f"Workload: {w.get('source')} - {w.get('jobs')} jobs, {w.get('pods')} pods "
                   f"({w.get('share_pods')} fractional, {w.get('multi_gpu_pods')} multi-GPU, "
                   f"{w.get('cpu_only_pods')} CPU-only, {w.get('gangs')} gangs), "
                   f"{_fmt(w.get('gpu_demand'), 1)} GPUs requested in total; "
                   f"{w.get('skipped_rows', 0)} bad rows skipped."))
    b.append(("p", f"Seeds: {', '.join(map(str, run.seeds))}. Policies: "
                   f"{', '.join(run.policies)}. Total wall time {run.wall_s:.1f} s."))
    for note in run.notes:
        b.append(("p", f"Note: {note}"))
    if any(run.fill.values()):
        b.append(("h2", "Fill replay (FGD protocol)"))
        b.append(("p", "Pods are shuffled with the seed, random copies are appended until the "
                       "GPU request reaches 130 % of capacity, each pod is placed once (no "
                       "departures, failures not retried). Unallocated GPU % is read off as the "
                       "FGD artifact does: the mean over the pods whose arrived % rounds to 100 "
                       "(130), interpolated between pods where none does (small clusters); "
                       "medians over seeds with the interquartile range in brackets. "
                       "'Requests placed' is the GPU request of the pods that got a place, in % "
                       "of capacity: below the allocated GPUs when a policy without GPU sharing "
                       "gives a fractional pod a whole GPU."))
        b.append(("p", columns_text(FILL_COLUMNS)))
        rows: list[list[str]] = []
        for name, f in in_policy_order(run.policies, _entries(pol, "fill")):
            seeds = f["per_seed"]
            sp = f["unallocated_gpu_pct_spread"]
            rows.append([
                name, _spread(sp["100"]), _spread(sp["130"]),
                _spread(f["placed_request_pct_spread"]["100"]),
                _fmt(f["fragmentation_pct_of_idle"]["100"]),
                _fmt(f["pods_failed_pct"]["median"], 1),
                _fmt(f["quality_1_pct"], 1), _fmt(f["quality_1_when_free_pct"], 1),
                _fmt(f["wall_s"]), _fmt(f["decisions_per_s"], 0),
            ])
        b.append(("table", (["policy", "unalloc. GPU % @100", "@130",
                             "requests placed % @100", "frag. % of idle @100",
                             "failed pods %", "multi-GPU at q=1.0 %",
                             "q=1.0 when free %", "wall s / seed", "decisions/s"], rows)))
        for t in ties(doc):
            b.append(("p", t))
        risk = _risk_text(pol, "fill")
        if risk:
            b.append(("p", risk))
        variant = paper_variant(run)
        pc = doc.get("paper_check")
        if variant and isinstance(pc, dict):
            b.append(("h2", f"Paper check (FGD ATC'23, {variant} trace)"))
            prow: list[list[str]] = []
            for r in pc["rows"]:
                cells = [r["policy"]]
                for x in ("100", "130"):
                    if x in r:
                        v = r[x]
                        cells += [_fmt(v["ours"]), _fmt(v["paper"]),
                                  f"{v['diff']:+.2f}" if v["ours"] is not None else "-",
                                  "yes" if v["within_1pp"] else "no"]
                    else:
                        cells += ["-", "-", "-", "-"]
                prow.append(cells)
            b.append(("table", (["policy", "ours @100", "paper @100", "diff", "within 1 pp",
                                 "ours @130", "paper @130", "diff", "within 1 pp"], prow)))
            b.append(("p", f"Medians over {pc['seeds']} seeds; the paper used 10 seeds "
                           "(42..51) of Go's RNG, ours are numpy seeds, so only the distribution "
                           "is comparable, not individual seeds."))
        for key in ("fill_unallocated", "fill_fragmentation"):
            if key in images:
                b.append(("img", key))
    if "quality" in images:
        b.append(("h2", "Topology quality of multi-GPU placements"))
        b.append(("p", "Quality of a GPU set = its ring all-reduce bandwidth over the best set "
                       "of that size on an empty node of the same topology (1.0 = as good as "
                       "the hardware can do). Labels above the bars: share placed at 1.0 among "
                       "the placements for which a 1.0 set was free on some node that had the "
                       "CPU, memory and GPU model for the pod (single-pod placements)."))
        b.append(("img", "quality"))
    if any(run.dynamic.values()):
        b.append(("h2", "Dynamic replay"))
        sm = doc.get("speed_model", {})
        b.append(("p", "Arrivals in time order, a pending queue retried whenever resources free "
                       "up, gangs placed whole when the policy can plan gangs (policies that "
                       "cannot place members one by one, and those members hold their GPUs). "
                       "Job run time stretches with link quality: "
                       f"{json.dumps(sm)} (bench/speed.py explains the numbers)."))
        b.append(("p", columns_text(DYNAMIC_COLUMNS)))
        rows = []
        for name, d in in_policy_order(run.policies, _entries(pol, "dynamic")):
            seeds = d["per_seed"]
            sp = d["spread"]
            rows.append([
                name, str(seeds[0]["gang_mode"]),
                f"{_fmt(d['completed'], 0)} / {_fmt(d['queued_at_end'], 0)} / "
                f"{_fmt(float(np.median([s['unschedulable'] for s in seeds])), 0)}",
                _range(sp["wait_s_median"], 0), _range(sp["wait_s_p95"], 0),
                _range(sp["jct_s_median"], 0), _range(sp["jct_s_p95"], 0),
                _fmt(d["slowdown_mean"], 3), _fmt(d["multi_gpu_quality_mean"], 3),
                _range(sp["utilization_mean_pct"], 1),
                _fmt(d["gpus_held_by_incomplete_gangs_max"], 0),
                _fmt(d["decisions_per_s"], 0),
            ])
        b.append(("table", (["policy", "gangs", "completed / queued / unschedulable",
                             "wait median s", "wait p95 s", "JCT median s", "JCT p95 s",
                             "mean slowdown", "multi-GPU quality", "GPU util. %",
                             "max GPUs held by incomplete gangs", "decisions/s"], rows)))
        util = utilization_note(doc)
        if util:
            b.append(("p", util))
        risk = _risk_text(pol, "dynamic")
        if risk:
            b.append(("p", risk))
        for key in ("dynamic_time", "wait_cdf"):
            if key in images:
                b.append(("img", key))
        band_doc = doc.get("sensitivity")
        if isinstance(band_doc, dict) and band_doc.get("jct_gain_pct"):
            b.append(("h2", "Sensitivity: how much the JCT gain depends on the speed model"))
            g = band_doc["jct_gain_pct"]
            b.append(("p", "The dynamic replay of ours and default rerun with the slowdown "
                           "model at both ends of its documented range (bench/speed.py "
                           "SPEED_RANGE: low = jobs barely affected by link quality, high = "
                           "up to ~1.6x slower on half-bandwidth links and 2:1 oversubscribed "
                           "network levels). Gain = 1 - mean JCT of ours / mean JCT of default, "
                           "per seed; median [min, max] over the seeds rerun."))
            b.append(("table", (["speed model", "mean-JCT gain of ours over default %",
                                 "parameters"],
                                [[end, _range(g[end], 1) if end in g else "-",
                                  json.dumps(band_doc["models"].get(end, {}))]
                                 for end in ("low", "assumed", "high")])))
            if "sensitivity" in images:
                b.append(("img", "sensitivity"))
    if isinstance(doc.get("bound"), dict):
        b.append(("h2", "Gap to the LP bound (fill)"))
        b.append(("p", "Lower bound on unallocated GPU % from an LP relaxation (bench/bound.py);"
                       " gap = policy - bound, gap ratio = (policy - bound) / (fgd - bound), "
                       "medians of per-seed values."))
        b.append(("table", bound_rows(doc["bound"])))  # type: ignore[arg-type]
    b.append(("p", "results.json holds every number above per seed."))
    return b
