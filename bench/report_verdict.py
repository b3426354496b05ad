"""The words of the report: the verdict paragraph, what every column means, ties between
policies, why utilisation can be lower, and the sensitivity band of the JCT gain.

Pure functions over results.json's document (bench.results_json.results_json) and, for the
sensitivity band, the per-seed dynamic results; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

OURS = "topology"
BASELINE = "default"

# What each column measures and which way is better, shown under each table.
FILL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("unallocated GPU % @100 / @130",
     "GPU capacity not allocated to any pod when the arrived GPU request reaches 100 % "
     "(130 %) of capacity, median [interquartile range] over seeds. Lower is better only "
     "together with a high 'requests placed': a policy that turns pods away keeps GPUs free "
     "as well; a policy without GPU sharing hands a fractional pod a whole GPU, which counts "
     "as allocated"),
    ("requests placed % @100",
     "GPU request of the pods that got a place, in % of capacity, when 100 % has arrived "
     "(the most it can be is 100): higher is better"),
    ("frag. % of idle @100",
     "share of the idle GPU capacity that the workload's typical pods cannot use (FGD's "
     "fragmentation measure): lower is better"),
    ("failed pods %", "pods that found no place when they arrived, in % of the pods "
     "submitted (never retried in this protocol): lower is better"),
    ("multi-GPU at q=1.0 %", "multi-GPU pods whose GPU set is as well connected as the "
     "hardware allows (quality 1.0): higher is better"),
    ("q=1.0 when free %", "the same, counting only the pods for which such a set was free "
     "somewhere they could go: 100 is the most a policy can do"),
    ("wall s / seed, decisions/s", "simulator time per replay and placement decisions per "
     "second of policy time (speed, not quality)"),
)
DYNAMIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("gangs", "whole: the policy places a gang all at once; one-by-one: members are placed "
     "as they come and hold their GPUs while the rest wait"),
    ("completed / queued / unschedulable", "jobs finished, still waiting at the end, and "
     "fitting no node even when empty (median over seeds): more completed is better"),
    ("wait p95 s, wait median s", "time from arrival to start, median over seeds "
     "[min, max]: lower is better"),
    ("JCT median s, JCT p95 s", "job completion time, arrival to end (waiting plus the run "
     "time stretched by link quality, bench/speed.py): lower is better"),
    ("mean slowdown", "run time over the trace's duration because of link quality (1.0 = "
     "no slowdown): lower is better"),
    ("multi-GPU quality", "mean topology quality of multi-GPU jobs (1.0 = best the hardware "
     "allows): higher is better"),
    ("GPU util. %", "time-weighted GPU allocation while jobs arrive. Not a score: with the "
     "same jobs, a policy whose jobs run faster holds GPUs for less time"),
    ("max GPUs held by incomplete gangs", "most GPUs ever held by gangs still waiting for "
     "members: GPUs nobody can use. 0 is best"),
)
EVENT_WORDS = {
    "oversubscribed_gpu_pods": "pods placed on a GPU whose pods together ask for more than the "
                               "GPU (time-slicing has no memory isolation: out-of-memory risk)",
    "colocated_whole_gpu_pods": "pods that asked for whole GPUs and share one with another pod "
                                "or with themselves",
}


def columns_text(cols: Sequence[tuple[str, str]]) -> str:
    """One paragraph explaining the columns of a table."""
    return "Columns: " + "; ".join(f"**{name}**: {text}" for name, text in cols) + "."


def _spread_of(s: Mapping[str, Any] | None, digits: int = 1, unit: str = "") -> str:
    if not s or not s.get("n"):
        return "-"
    med = s["median"]
    if s["n"] == 1:
        return f"{med:,.{digits}f}{unit}"
    return f"{med:,.{digits}f}{unit} [{s['min']:,.{digits}f}-{s['max']:,.{digits}f}]"


def _pol(doc: Mapping[str, Any], name: str, mode: str) -> Mapping[str, Any] | None:
    p = doc.get("policies", {}).get(name)
    return p.get(mode) if isinstance(p, Mapping) else None


def verdict(doc: Mapping[str, Any], plan: Mapping[str, Any] | None = None) -> str | None:
    """The opening paragraph: ours against the default scheduler, three numbers with spread."""
    pols = doc.get("policies", {})
    if OURS not in pols or BASELINE not in pols:
        return None
    n_seeds = len(doc.get("seeds", []))
    parts: list[str] = []
    if plan is not None:
        pp = plan.get("policies", {})
        a, b = pp.get(OURS, {}), pp.get(BASELINE, {})
        seeds = ", ".join(map(str, plan.get("seeds", [])))
        answers = [g for g in a.get("seed_answer_gpus") or [] if g]
        spread = f" [each seed: {min(answers):,}-{max(answers):,}]" if answers else ""
        if a.get("gpus") and b.get("gpus"):
            parts.append(f"**GPUs needed** for the plan's target: {a['gpus']:,}{spread} with "
                         f"ours against {b['gpus']:,}: {b['gpus'] - a['gpus']:,} fewer (seeds "
                         f"{seeds}; `gts plan`)")
        elif a.get("gpus") and b:
            top = max((o.get("gpus") or 0 for o in b.get("best_at_max") or []), default=0)
            if top:
                parts.append(f"**GPUs needed** for the plan's target: {a['gpus']:,}{spread} "
                             f"with ours, while the default misses it even with {top:,} GPUs, "
                             f"the largest cluster searched: more than {top - a['gpus']:,} "
                             f"fewer (seeds {seeds}; `gts plan`)")
    fo, fb = _pol(doc, OURS, "fill"), _pol(doc, BASELINE, "fill")
    gpus = float(doc.get("cluster", {}).get("gpus") or 0)
    if fo and fb:
        so = fo["placed_request_pct_spread"]["100"]
        sb = fb["placed_request_pct_spread"]["100"]
        more = (so["median"] - sb["median"]) / 100.0 * gpus
        parts.append(f"**GPU requests placed** when the request reaches the cluster's capacity "
                     f"(fill): {_spread_of(so, 1, ' %')} with ours against "
                     f"{_spread_of(sb, 1, ' %')}, i.e. {more:+,.0f} GPUs' worth of requests on "
                     f"the same {gpus:,.0f} GPUs")
    do, db = _pol(doc, OURS, "dynamic"), _pol(doc, BASELINE, "dynamic")
    if do and db:
        w_o, w_b = do["spread"]["wait_s_p95"], db["spread"]["wait_s_p95"]
        j_o, j_b = do["spread"]["jct_s_mean"], db["spread"]["jct_s_mean"]
        parts.append(f"**p95 wait** (dynamic): {_spread_of(w_o, 0, ' s')} against "
                     f"{_spread_of(w_b, 0, ' s')}; **mean job completion time** "
                     f"{_spread_of(j_o, 0, ' s')} against {_spread_of(j_b, 0, ' s')}")
        g_o = do["spread"]["gpus_held_by_incomplete_gangs_max"]
        g_b = db["spread"]["gpus_held_by_incomplete_gangs_max"]
        if (g_b.get("max") or 0) > 0:
            parts.append(f"GPUs held by incomplete gangs at worst: {g_o['max']:.0f} against "
                         f"{g_b['max']:.0f}")
    if not parts:
        return None
    head = (f"**Verdict.** gpu-topology-scheduler (`{OURS}`) against kube-scheduler's default "
            f"profile (`{BASELINE}`), median [min-max] over {n_seeds} seed"
            f"{'s' if n_seeds != 1 else ''}: ")
    tail = "" if plan is not None else (" For the GPUs each policy needs to meet a target, "
                                        "run `gts plan` (README).")
    return head + "; ".join(parts) + "." + tail


def ties(doc: Mapping[str, Any]) -> list[str]:
    """Pairs of policies whose fill results cannot be told apart: the medians of unallocated
    GPU % at 100 % lie inside each other's interquartile range."""
    rows = []
    for name, p in doc.get("policies", {}).items():
        f = p.get("fill") if isinstance(p, Mapping) else None
        if f:
            s = f["unallocated_gpu_pct_spread"]["100"]
            pr = f["placed_request_pct"]["100"]
            if s.get("n"):
                rows.append((name, s, pr))
    out = []
    for i, (a, sa, pa) in enumerate(rows):
        for b, sb, pb in rows[i + 1:]:
            inside = sa["p25"] <= sb["median"] <= sa["p75"] or sb["p25"] <= sa["median"] <= \
                sb["p75"]
            same_placed = pa is not None and pb is not None and abs(pa - pb) < 0.5
            if inside and same_placed:
                out.append(f"`{a}` and `{b}` tie in the fill replay: unallocated GPU % at 100 % "
                           f"is {sa['median']:.2f} against {sb['median']:.2f}, a difference "
                           f"inside the spread between seeds, and they place the same share of "
                           f"requests; their curves lie on top of each other in the plots "
                           f"(dashes tell them apart).")
    return out


def utilization_note(doc: Mapping[str, Any]) -> str | None:
    """Why ours' dynamic GPU utilisation can be lower than a baseline's, from the data."""
    do = _pol(doc, OURS, "dynamic")
    if not do:
        return None
    lower = []
    for name, p in doc.get("policies", {}).items():
        d = p.get("dynamic") if isinstance(p, Mapping) and name != OURS else None
        if d and _finite(d["utilization_mean_pct"]) and _finite(do["utilization_mean_pct"]) \
                and do["utilization_mean_pct"] < d["utilization_mean_pct"] - 0.05:
            lower.append((name, d))
    if not lower:
        return None
    bits = []
    for name, d in lower:
        why = []
        if _finite(d["slowdown_mean"]) and do["slowdown_mean"] < d["slowdown_mean"] - 1e-3:
            why.append(f"its jobs run {100 * (d['slowdown_mean'] / do['slowdown_mean'] - 1):.1f}"
                       f" % longer on worse links (mean slowdown {d['slowdown_mean']:.3f} "
                       f"against {do['slowdown_mean']:.3f})")
        hb = d["gpus_held_by_incomplete_gangs_max"] or 0
        if hb > (do["gpus_held_by_incomplete_gangs_max"] or 0):
            why.append(f"its incomplete gangs hold up to {hb:.0f} GPUs that count as allocated "
                       f"while nothing runs on them")
        if (d.get("queued_at_end") or 0) > (do.get("queued_at_end") or 0):
            why.append("it leaves more jobs waiting at the end")
        bits.append(f"`{name}` ({d['utilization_mean_pct']:.1f} % against "
                    f"{do['utilization_mean_pct']:.1f} %)" + (": " + "; ".join(why) if why
                                                              else ""))
    return ("Why GPU utilisation is lower for ours than for " + "; and for ".join(bits)
            + ". The jobs are the same, so less GPU time allocated for the same work means "
            "GPUs were freed sooner, not that the cluster did less.")


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def jct_gain_band(assumed: Mapping[str, Sequence[Any]],
                  ends: Mapping[str, Mapping[str, Sequence[Any]]]) -> dict[str, dict[str, float]]:
    """Mean-JCT gain of ours over the baseline (%, seed-paired, median and range over seeds)
    at each end of the speed model's range and with the assumed model.

    `assumed` and each `ends[end]` map a policy name to per-seed DynamicResults (same seeds in
    the same order)."""
    out: dict[str, dict[str, float]] = {}
    for end, by_policy in (("low", ends.get("low", {})), ("assumed", assumed),
                           ("high", ends.get("high", {}))):
        ours, base = by_policy.get(OURS, []), by_policy.get(BASELINE, [])
        k = min(len(ours), len(base))
        if end == "assumed":
            k = min(k, min((len(v) for v in ends.get("low", {}).values()), default=k))
        gains = []
        for o, b in zip(ours[:k], base[:k], strict=True):
            if o.jct_s.size and b.jct_s.size and float(b.jct_s.mean()) > 0:
                gains.append(100.0 * (1.0 - float(o.jct_s.mean()) / float(b.jct_s.mean())))
        if gains:
            g = np.asarray(gains)
            out[end] = {"median": float(np.median(g)), "min": float(g.min()),
                        "max": float(g.max()), "n": int(g.size)}
    return out
