"""The simulator's report folder: results.json (DESIGN.md section 7), report.md, a
self-contained report.html (plots inlined as base64) and the PNG plots.

Plots are drawn with matplotlib's Agg backend; every figure shows the median over seeds and,
where there are several seeds, the interquartile band.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from bench.bound_report import bound_json, bound_rows
from bench.dynamic_replay import DynamicResult
from bench.fill_replay import FillResult
from bench.metrics import at_arrived, band, ecdf, interpolated_at, summarize
from bench.report_verdict import (
    DYNAMIC_COLUMNS,
    EVENT_WORDS,
    FILL_COLUMNS,
    columns_text,
    jct_gain_band,
    ties,
    utilization_note,
    verdict,
)
from scheduler.contract.units import MILLI_PER_GPU

# Published fill results of the FGD artifact (ATC'23; ../shared/traces/README.md): unallocated
# GPU % at 100 % and 130 % arrived, median of 10 seeds, 1,213 GPU nodes. Keys are our policy
# names where we have the policy, the paper's name otherwise.
PAPER_DEFAULT: dict[str, tuple[float, float]] = {
    "random": (13.75, 12.62),
    "dotprod": (9.45, 9.20),
    "gpuclustering": (8.42, 8.21),
    "gpupacking": (8.20, 7.94),
    "bestfit": (7.09, 6.89),
    "fgd": (4.77, 4.60),
}
# FGD and BestFit at 100 % arrived on the trace's variants.
PAPER_VARIANTS: dict[str, dict[str, float]] = {
    "cpu050": {"fgd": 5.00, "bestfit": 6.42},
    "cpu100": {"fgd": 4.79, "bestfit": 6.72},
    "cpu200": {"fgd": 5.18, "bestfit": 7.85},
    "gpushare40": {"fgd": 6.05, "bestfit": 8.53},
    "gpushare80": {"fgd": 10.91, "bestfit": 13.27},
    "gpuspec10": {"fgd": 5.30, "bestfit": 6.88},
    "gpuspec20": {"fgd": 5.31, "bestfit": 11.54},
    "multigpu20": {"fgd": 4.47, "bestfit": 6.27},
    "multigpu40": {"fgd": 3.10, "bestfit": 4.91},
}
PAPER_NODES, PAPER_GPUS = 1213, 6212
READ_OFF = (100, 130)
QUALITY_BUCKETS = ((1.0, 1.01, "as good as the hardware allows"),
                   (0.75, 1.0, "75-99 % of the best"), (0.5, 0.75, "50-75 % of the best"),
                   (0.0, 0.5, "under half the best"))


@dataclass(slots=True)
class SimulationRun:
    """Everything a report shows: the scenario and the per-policy, per-seed results."""

    command: str
    cluster: dict[str, object]
    workload: dict[str, object]
    seeds: list[int]
    policies: list[str]
    fill: dict[str, list[FillResult]] = field(default_factory=dict)
    dynamic: dict[str, list[DynamicResult]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    # Dynamic reruns at the ends of the speed model's range: end ("low"/"high") -> policy ->
    # per-seed results (bench.speed.SPEED_RANGE).
    sensitivity: dict[str, dict[str, list[DynamicResult]]] = field(default_factory=dict)
    plan: dict[str, Any] | None = None  # plan.json of `gts plan`, shown in the verdict
    # LP bound per seed of the fill runs ({seed: {"100": %, "130": %}}; bench.bound_report).
    bound: dict[int, dict[str, float]] = field(default_factory=dict)


def paper_variant(run: SimulationRun) -> str | None:
    """'default' or the variant name when the run is the FGD paper's setting, else None."""
    src = os.path.basename(str(run.workload.get("source", "")))
    if not src.startswith("openb_pod_list_") or not src.endswith(".csv"):
        return None
    if run.cluster.get("gpu_nodes") != PAPER_NODES or run.cluster.get("gpus") != PAPER_GPUS:
        return None
    variant = src[len("openb_pod_list_"):-len(".csv")]
    return variant if variant == "default" or variant in PAPER_VARIANTS else None


# ---- numbers ---------------------------------------------------------------------------------


def _clean(x: object) -> object:
    """JSON-safe: nan/inf -> None, numpy scalars -> Python, recursively."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        f = float(x)
        return f if math.isfinite(f) else None
    return x


def _or(v: float, fallback: float) -> float:
    return v if math.isfinite(v) else fallback


def fill_seed(r: FillResult) -> dict[str, object]:
    """Per-seed fill numbers."""
    ui = {str(x): 100.0 - interpolated_at(r.arrived_pct, r.allocated_pct, x) for x in READ_OFF}
    # The artifact's read-off, or the interpolated value where no pod's arrival rounds to X
    # (single pods span several % on small clusters).
    un = {str(x): _or(100.0 - at_arrived(r.arrived_pct, r.allocated_pct, x), ui[str(x)])
          for x in READ_OFF}
    pr = {str(x): _or(at_arrived(r.arrived_pct, r.placed_request_pct, x),
                      interpolated_at(r.arrived_pct, r.placed_request_pct, x))
          for x in READ_OFF}
    fr = {str(x): interpolated_at(r.cp_arrived_pct, r.cp_frag_pct, x) for x in READ_OFF}
    fg = {str(x): interpolated_at(r.cp_arrived_pct, r.cp_frag_gpus, x) for x in READ_OFF}
    avail = r.q_best >= 1.0 - 1e-9
    return {
        "seed": r.seed,
        "unallocated_gpu_pct": un,
        "unallocated_gpu_pct_interpolated": ui,
        "placed_request_pct": pr,
        "fragmentation_pct_of_idle": fr,
        "fragmented_gpus": fg,
        "pods_submitted": r.n_pods,
        "pods_original": r.n_original,
        "pods_failed": r.failed,
        "pods_failed_pct": 100.0 * r.failed / r.n_pods if r.n_pods else 0.0,
        "stopped_early": r.stopped_early,
        "events": dict(r.events),
        "final_arrived_pct": float(r.arrived_pct[-1]) if r.n_pods else 0.0,
        "multi_gpu_placements": int(r.q_chosen.size),
        "quality_1_pct": 100.0 * float((r.q_chosen >= 1 - 1e-9).mean()) if r.q_chosen.size
        else None,
        "quality_1_when_free_pct": 100.0 * float((r.q_chosen[avail] >= 1 - 1e-9).mean())
        if avail.any() else None,
        "quality_1_free_count": int(avail.sum()),
        "mean_quality": float(r.q_chosen.mean()) if r.q_chosen.size else None,
        "wall_s": r.wall_s,
        "policy_s": r.policy_s,
        "decisions_per_s": r.decisions / r.policy_s if r.policy_s > 0 else None,
    }


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if a.size else float("nan")


def dynamic_seed(r: DynamicResult) -> dict[str, object]:
    """Per-seed dynamic numbers."""
    util = r.utilization_pct()
    q = r.quality
    avail = r.q_best >= 1.0 - 1e-9
    return {
        "seed": r.seed,
        "gang_mode": r.gang_mode,
        "jobs": r.n_jobs,
        "completed": r.completed,
        "queued_at_end": r.queued_at_end,
        "running_at_end": r.running_at_end,
        "unschedulable": r.unschedulable,
        "unschedulable_examples": r.unschedulable_examples,
        "wait_s": {"mean": float(r.wait_s.mean()) if r.wait_s.size else float("nan"),
                   "median": _pct(r.wait_s, 50), "p95": _pct(r.wait_s, 95)},
        "jct_s": {"mean": float(r.jct_s.mean()) if r.jct_s.size else float("nan"),
                  "median": _pct(r.jct_s, 50), "p95": _pct(r.jct_s, 95)},
        "slowdown_mean": float(r.slowdown.mean()) if r.slowdown.size else float("nan"),
        "multi_gpu_jobs": int(q.size),
        "multi_gpu_quality_mean": float(q.mean()) if q.size else float("nan"),
        "quality_1_pct": 100.0 * float((q >= 1 - 1e-9).mean()) if q.size else float("nan"),
        "quality_1_when_free_pct": 100.0 * float((r.q_chosen[avail] >= 1 - 1e-9).mean())
        if avail.any() else float("nan"),
        "gpus_held_by_incomplete_gangs_max": r.max_held_incomplete_gpus,
        "gpus_held_by_incomplete_gangs_at_end": float(r.held_incomplete_milli[-1] / MILLI_PER_GPU)
        if r.t.size else 0.0,
        "utilization_mean_pct": util,
        "makespan_s": r.makespan_s,
        "decisions": r.decisions,
        "wall_s": r.wall_s,
        "policy_s": r.policy_s,
        "decisions_per_s": r.decisions / r.policy_s if r.policy_s > 0 else float("nan"),
        "events": dict(r.events),
    }


def _med(rows: Sequence[dict[str, object]], *path: str) -> dict[str, float]:
    vals: list[float] = []
    for row in rows:
        v: object = row
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        vals.append(float(v) if isinstance(v, int | float) else float("nan"))
    return summarize(vals)


DYNAMIC_SPREAD: dict[str, tuple[str, ...]] = {
    "wait_s_median": ("wait_s", "median"), "wait_s_p95": ("wait_s", "p95"),
    "jct_s_median": ("jct_s", "median"), "jct_s_mean": ("jct_s", "mean"),
    "jct_s_p95": ("jct_s", "p95"), "completed": ("completed",),
    "queued_at_end": ("queued_at_end",), "slowdown_mean": ("slowdown_mean",),
    "utilization_mean_pct": ("utilization_mean_pct",),
    "gpus_held_by_incomplete_gangs_max": ("gpus_held_by_incomplete_gangs_max",),
}


def _events(rows: Sequence[dict[str, object]]) -> dict[str, dict[str, float]]:
    """Policy-specific event counts (e.g. time-slicing risks): spread over seeds per name."""
    names = sorted({k for r in rows for k in dict(r.get("events") or {})})  # type: ignore[call-overload]
    return {k: summarize([float(dict(r.get("events") or {}).get(k, 0))  # type: ignore[call-overload]
                          for r in rows]) for k in names}


def results_json(run: SimulationRun) -> dict[str, object]:
    """The results.json document (DESIGN.md section 7, plus spreads and per-seed detail)."""
    policies: dict[str, dict[str, object]] = {}
    for name in run.policies:
        entry: dict[str, object] = {}
        if run.fill.get(name):
            rows = [fill_seed(r) for r in run.fill[name]]
            entry["fill"] = {
                "unallocated_gpu_pct": {str(x): _med(rows, "unallocated_gpu_pct", str(x))["median"]
                                        for x in READ_OFF},
                "unallocated_gpu_pct_spread": {
                    str(x): _med(rows, "unallocated_gpu_pct", str(x)) for x in READ_OFF},
                "unallocated_gpu_pct_interpolated": {
                    str(x): _med(rows, "unallocated_gpu_pct_interpolated", str(x))["median"]
                    for x in READ_OFF},
                "placed_request_pct": {
                    str(x): _med(rows, "placed_request_pct", str(x))["median"]
                    for x in READ_OFF},
                "placed_request_pct_spread": {
                    str(x): _med(rows, "placed_request_pct", str(x)) for x in READ_OFF},
                "pods_failed_pct": _med(rows, "pods_failed_pct"),
                "events": _events(rows),
                "fragmentation_pct_of_idle": {
                    str(x): _med(rows, "fragmentation_pct_of_idle", str(x))["median"]
                    for x in READ_OFF},
                "quality_1_when_free_pct": _med(rows, "quality_1_when_free_pct")["median"],
                "quality_1_pct": _med(rows, "quality_1_pct")["median"],
                "wall_s": _med(rows, "wall_s")["median"],
                "decisions_per_s": _med(rows, "decisions_per_s")["median"],
                "per_seed": rows,
            }
        if run.dynamic.get(name):
            rows = [dynamic_seed(r) for r in run.dynamic[name]]
            entry["dynamic"] = {
                "gpus_held_by_incomplete_gangs_max": _med(
                    rows, "gpus_held_by_incomplete_gangs_max")["max"],
                "wait_s_median": _med(rows, "wait_s", "median")["median"],
                "wait_s_p95": _med(rows, "wait_s", "p95")["median"],
                "jct_s_median": _med(rows, "jct_s", "median")["median"],
                "jct_s_p95": _med(rows, "jct_s", "p95")["median"],
                "completed": _med(rows, "completed")["median"],
                "queued_at_end": _med(rows, "queued_at_end")["median"],
                "slowdown_mean": _med(rows, "slowdown_mean")["median"],
                "multi_gpu_quality_mean": _med(rows, "multi_gpu_quality_mean")["median"],
                "utilization_mean_pct": _med(rows, "utilization_mean_pct")["median"],
                "decisions_per_s": _med(rows, "decisions_per_s")["median"],
                "spread": {k: _med(rows, *path) for k, path in DYNAMIC_SPREAD.items()},
                "events": _events(rows),
                "per_seed": rows,
            }
        policies[name] = entry
    doc: dict[str, object] = {
        "policies": policies,
        "cluster": run.cluster,
        "workload": run.workload,
        "seeds": list(run.seeds),
        "command": run.command,
        "protocol": {
            "fill": "FGD ATC'23: shuffled pods, random copies appended until 130% of GPU "
                    "capacity is requested, no departures, failed pods not retried",
            "read_off": "artifact: mean allocated % over pods whose arrived % rounds to X "
                        "(interpolated between pods where no pod rounds to X)",
            "medians_over_seeds": True,
        },
        "notes": run.notes,
        "wall_s": run.wall_s,
    }
    if run.sensitivity:
        from bench.speed import SPEED_RANGE

        doc["sensitivity"] = {
            "jct_gain_pct": jct_gain_band(run.dynamic, run.sensitivity),
            "models": {k: m.describe() for k, m in SPEED_RANGE.items()},
            "seeds": sorted({r.seed for rs in run.sensitivity.get("low", {}).values()
                             for r in rs}),
        }
    if run.plan is not None:
        doc["plan"] = run.plan
    first_dyn = next((rs[0] for rs in run.dynamic.values() if rs), None)
    if first_dyn is not None:
        doc["speed_model"] = first_dyn.speed
    variant = paper_variant(run)
    if variant is not None:
        doc["paper_check"] = paper_check(run, variant)
    if run.bound and run.fill:
        doc["bound"] = bound_json(run.fill, run.bound)
    return _clean(doc)  # type: ignore[return-value]


def paper_check(run: SimulationRun, variant: str) -> dict[str, object]:
    """Ours vs the published unallocated GPU % for the policies both have."""
    rows: list[dict[str, object]] = []
    for name in run.policies:
        res = run.fill.get(name)
        if not res:
            continue
        seeds = [fill_seed(r) for r in res]
        if variant == "default" and name in PAPER_DEFAULT:
            paper = dict(zip(("100", "130"), PAPER_DEFAULT[name], strict=True))
        elif variant != "default" and name in PAPER_VARIANTS.get(variant, {}):
            paper = {"100": PAPER_VARIANTS[variant][name]}
        else:
            continue
        row: dict[str, object] = {"policy": name}
        for x, p in paper.items():
            ours = _med(seeds, "unallocated_gpu_pct", x)["median"]
            row[x] = {"ours": ours, "paper": p, "diff": ours - p,
                      "within_1pp": bool(abs(ours - p) <= 1.0)}
        rows.append(row)
    return {"variant": variant, "seeds": len(run.seeds), "rows": rows}


# ---- plots -----------------------------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")


LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 1)))


def _color(run: SimulationRun, name: str) -> str:
    return COLORS[run.policies.index(name) % len(COLORS)]


def _line(run: SimulationRun, name: str) -> dict[str, object]:
    """Color and dash per policy, so that curves lying on top of each other stay visible."""
    k = run.policies.index(name)
    return {"color": _color(run, name), "ls": LINESTYLES[k % len(LINESTYLES)],
            "lw": 2.2 if k == 0 else 1.6}


def plot_fill_unallocated(run: SimulationRun, path: Path) -> Path:
    """Unallocated GPU % vs arrived workload (median and IQR over seeds, full and zoomed),
    beside the GPU requests placed: a policy that turns pods away also leaves few GPUs
    unallocated, so the two panels are read together."""
    plt = _plt()
    xs = np.arange(0.0, 131.0, 0.25)
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6), dpi=100)
    ax = axes[2]
    ax.plot([0, 100, 131], [0, 100, 100], ":", color="grey", label="everything placed")
    for name in run.policies:
        res = run.fill.get(name)
        if not res:
            continue
        med, lo, hi = band(xs, [(r.arrived_pct, r.placed_request_pct) for r in res])
        ax.plot(xs, med, label=name, **_line(run, name))
        if len(res) > 1:
            ax.fill_between(xs, lo, hi, color=_color(run, name), alpha=0.2, lw=0)
    ax.set_xlim(0, 131)
    ax.set_xlabel("arrived workload (% of cluster GPU capacity)")
    ax.set_ylabel("GPU requests placed (% of capacity)")
    ax.set_title("requests placed: higher is better\n(read with the unallocated panels)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    for ax, (lo_x, hi_x) in zip(axes[:2], ((0, 131), (75, 131)), strict=True):
        ax.plot([0, 100, 131], [100, 0, 0], ":", color="grey", label="ideal")
        for name in run.policies:
            res = run.fill.get(name)
            if not res:
                continue
            curves = [(r.arrived_pct, 100.0 - r.allocated_pct) for r in res]
            med, lo, hi = band(xs, curves)
            c = _color(run, name)
            ax.plot(xs, med, label=name, **_line(run, name))
            if len(res) > 1:
                ax.fill_between(xs, lo, hi, color=c, alpha=0.2, lw=0)
        ax.set_xlim(lo_x, hi_x)
        if lo_x > 0:
            ymax = 0.0
            for name in run.policies:
                for r in run.fill.get(name, []):
                    sel = r.arrived_pct >= lo_x
                    if sel.any():
                        ymax = max(ymax, float((100 - r.allocated_pct[sel]).max()))
            ax.set_ylim(0, max(5.0, min(ymax * 1.1, 30.0)))
            for x in READ_OFF:
                ax.axvline(x, color="grey", lw=0.6, ls="--")
        ax.set_xlabel("arrived workload (% of cluster GPU capacity)")
        ax.set_ylabel("unallocated GPU (%)")
        ax.grid(alpha=0.3)
    axes[0].set_title("unallocated GPUs (median, IQR band over seeds)", fontsize=10)
    axes[1].set_title("zoom on 75-130 % arrived; low is good only if\nthe requests are placed "
                      "(right panel)", fontsize=10)
    for ax in axes[:2]:
        ax.legend(loc="upper right" if ax is axes[0] else "upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_fill_fragmentation(run: SimulationRun, path: Path) -> Path:
    """FGD fragmentation vs arrived workload: GPUs and share of idle capacity."""
    plt = _plt()
    xs = np.arange(0.0, 131.0, 1.0)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), dpi=110)
    for name in run.policies:
        res = run.fill.get(name)
        if not res:
            continue
        c = _color(run, name)
        for ax, attr in zip(axes, ("cp_frag_gpus", "cp_frag_pct"), strict=True):
            med, lo, hi = band(xs, [(r.cp_arrived_pct, getattr(r, attr)) for r in res])
            ax.plot(xs, med, label=name, **_line(run, name))
            if len(res) > 1:
                ax.fill_between(xs, lo, hi, color=c, alpha=0.2, lw=0)
    axes[0].set_ylabel("fragmented GPUs (FGD measure)")
    axes[1].set_ylabel("fragmented share of idle GPU capacity (%)")
    for ax in axes:
        ax.set_xlabel("arrived workload (% of cluster GPU capacity)")
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.legend(fontsize=8)
    axes[0].set_title("fill: fragmented GPUs against the workload's typical pods", fontsize=10)
    axes[1].set_title("fill: fragmented share of the idle GPU capacity", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_quality(run: SimulationRun, path: Path) -> Path:
    """Topology quality of multi-GPU placements (fill and dynamic), pooled over seeds."""
    plt = _plt()
    modes = [m for m, d in (("fill", run.fill), ("dynamic", run.dynamic)) if any(d.values())]
    fig, axes = plt.subplots(1, max(1, len(modes)), figsize=(6 * max(1, len(modes)), 5.2),
                             dpi=110, squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=False):
        names = [n for n in run.policies if (run.fill if mode == "fill" else run.dynamic).get(n)]
        bottoms = np.zeros(len(names))
        for lo, hi, label in QUALITY_BUCKETS:
            shares = []
            for n in names:
                if mode == "fill":
                    q = np.concatenate([r.q_chosen for r in run.fill[n]])
                else:
                    q = np.concatenate([r.quality for r in run.dynamic[n]])
                shares.append(100.0 * float(((q >= lo - 1e-9) & (q < hi - 1e-9)).mean())
                              if q.size else 0.0)
            ax.bar(names, shares, bottom=bottoms, label=label)
            bottoms += np.array(shares)
        for k, n in enumerate(names):
            rs = run.fill[n] if mode == "fill" else run.dynamic[n]
            qb = np.concatenate([r.q_best for r in rs])
            qc = np.concatenate([r.q_chosen for r in rs])
            avail = qb >= 1 - 1e-9
            has = any(r.quality.size for r in run.dynamic[n]) if mode == "dynamic" \
                else bool(qc.size)
            if not has:
                ax.text(k, 3, "no multi-GPU\nplacements", ha="center", fontsize=7)
            elif avail.any():
                ax.text(k, 101, f"{100 * (qc[avail] >= 1 - 1e-9).mean():.0f}%", ha="center",
                        fontsize=8)
        ax.set_ylim(0, 108)
        ax.set_ylabel("% of multi-GPU pods")
        ax.set_title(f"{mode} replay: how well connected the GPUs of multi-GPU pods are\n"
                     f"(number above a bar: share given the best set when one was free)",
                     fontsize=9)
        ax.tick_params(axis="x", labelrotation=20)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2,
                  title="bandwidth of the pod's GPU set", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_dynamic_time(run: SimulationRun, path: Path) -> Path:
    """GPU allocation, GPUs held by incomplete gangs and queue length over time (first seed)."""
    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), dpi=110, sharex=True)
    for name in run.policies:
        res = run.dynamic.get(name)
        if not res:
            continue
        r = res[0]
        h = r.t / 3600.0
        st = {**_line(run, name), "lw": 1.2}
        axes[0].step(h, 100.0 * r.alloc_milli / r.capacity_milli, where="post", label=name,
                     **st)
        axes[1].step(h, r.held_incomplete_milli / MILLI_PER_GPU, where="post", label=name,
                     **st)
        axes[2].step(h, r.queue_len, where="post", label=name, **st)
    axes[0].set_ylabel("GPU allocated (%)")
    axes[1].set_ylabel("GPUs held by\nincomplete gangs")
    axes[2].set_ylabel("jobs waiting")
    last = max((rs[0].last_arrival_s for rs in run.dynamic.values() if rs), default=0.0)
    if last > 0:
        # The drain after the last arrival is long and uneventful; show the arrival window.
        axes[2].set_xlim(0, 1.05 * last / 3600.0)
    axes[2].set_xlabel(f"time (hours; arrivals end at {last / 3600.0:.1f} h), "
                       f"seed {run.seeds[0] if run.seeds else 0}")
    axes[0].set_title("dynamic replay: GPUs allocated (includes GPUs held by waiting gang "
                      "members)", fontsize=10)
    axes[1].set_title("GPUs held by gangs still waiting for members (nobody can use them)",
                      fontsize=10)
    axes[2].set_title("jobs waiting in the queue", fontsize=10)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=3, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_wait_cdf(run: SimulationRun, path: Path) -> Path:
    """CDF of job waiting time (pooled over seeds) and of job completion time."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), dpi=110)
    for name in run.policies:
        res = run.dynamic.get(name)
        if not res:
            continue
        for ax, attr in zip(axes, ("wait_s", "jct_s"), strict=True):
            v, f = ecdf(np.concatenate([getattr(r, attr) for r in res]))
            if v.size:
                ax.step(np.maximum(v, 1.0), f, where="post", label=name, **_line(run, name))
    axes[0].set_xlabel("waiting time (s, log; 0 shown at 1 s)")
    axes[1].set_xlabel("job completion time (s, log)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_ylabel("fraction of jobs")
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_title("dynamic replay: waiting time (further left is better)", fontsize=10)
    axes[1].set_title("job completion time (further left is better)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_plan(plan: dict[str, Any], path: Path) -> Path:
    """GPUs needed per policy (plan.json of `gts plan`): the answer as a bar, each seed's own
    answer as a dot (the spread), and policies with no answer within the bounds marked."""
    plt = _plt()
    pols = plan.get("policies", {})
    names = list(pols)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(names) + 2.0), dpi=100)
    top = 0.0
    for k, n in enumerate(names):
        p = pols[n]
        g = p.get("gpus")
        pts = [x for x in p.get("seed_answer_gpus", []) if x]
        if g is None:
            tops = [o.get("gpus") or 0 for o in p.get("best_at_max") or []]
            msg = "  no cluster within the bounds meets the target"
            if tops and max(tops):
                msg += f" (misses even with {max(tops):,} GPUs)"
            ax.text(0, k, msg, va="center", fontsize=9, color="#d62728")
            continue
        top = max(top, float(g))
        ax.barh(k, g, color=COLORS[0] if n == "topology" else "#9e9e9e",
                label="GPUs needed (every seed meets the target)" if not ax.patches else None)
        if pts:
            ax.plot(pts, [k] * len(pts), "o", color="black", ms=4,
                    label="each seed's own answer" if k == 0 else None)
        ax.text(g, k, f"  {g:,}", va="center", fontsize=9)
    ax.set_xlim(0, max(top, 1.0) * 1.25)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("GPUs in the smallest cluster that meets the target (fewer is better)")
    tgt = plan.get("target_text") or ""
    ax.set_title(f"gts plan: GPUs needed per policy\n{tgt}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_sensitivity(band_doc: dict[str, Any], path: Path) -> Path:
    """Mean-JCT gain of ours over default with the speed model at its low end, as assumed,
    and at its high end (median and min-max over seeds)."""
    plt = _plt()
    g = band_doc.get("jct_gain_pct", {})
    ends = [e for e in ("low", "assumed", "high") if e in g]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    med = [g[e]["median"] for e in ends]
    lo = [g[e]["median"] - g[e]["min"] for e in ends]
    hi = [g[e]["max"] - g[e]["median"] for e in ends]
    ax.bar(ends, med, color=[COLORS[0] if e == "assumed" else "#9ecae1" for e in ends],
           label="median over seeds")
    ax.errorbar(ends, med, yerr=[lo, hi], fmt="none", ecolor="black", capsize=5,
                label="min-max over seeds")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("mean-JCT gain of ours over default (%)")
    ax.set_xlabel("slowdown model (bench/speed.py SPEED_RANGE)")
    ax.set_title("sensitivity of the JCT gain to the assumed slowdown model", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---- documents -------------------------------------------------------------------------------


Block = tuple[str, object]


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


def _blocks(run: SimulationRun, doc: dict[str, object], images: dict[str, str]) -> list[Block]:
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
        for name in run.policies:
            f = pol.get(name, {}).get("fill") if isinstance(pol.get(name), dict) else None
            if not f:
                continue
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
        for name in run.policies:
            d = pol.get(name, {}).get("dynamic") if isinstance(pol.get(name), dict) else None
            if not d:
                continue
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


def render_markdown(blocks: Sequence[Block], images: dict[str, str]) -> str:
    """Markdown with image links to the PNGs next to it."""
    out: list[str] = []
    for kind, body in blocks:
        if kind == "h1":
            out.append(f"# {body}\n")
        elif kind == "h2":
            out.append(f"## {body}\n")
        elif kind == "p":
            out.append(f"{body}\n")
        elif kind == "table":
            head, rows = cast(tuple[list[str], list[list[str]]], body)
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "|".join(" --- " for _ in head) + "|")
            out.extend("| " + " | ".join(r) + " |" for r in rows)
            out.append("")
        elif kind == "img":
            out.append(f"![{body}]({images[str(body)]})\n")
    return "\n".join(out)


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
        "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:14px}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,th{text-align:left}th{background:#f3f3f3}img{max-width:100%}"
        "code{background:#f3f3f3;padding:1px 4px}")


def render_html(blocks: Sequence[Block], images: dict[str, str], folder: Path) -> str:
    """One HTML file with the PNGs inlined as base64 data URIs."""
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>gts simulate report"
           f"</title><style>{_CSS}</style></head><body>"]
    for kind, body in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{html.escape(str(body))}</{kind}>")
        elif kind == "p":
            text = html.escape(str(body))
            parts = text.split("`")
            text = "".join(f"<code>{p}</code>" if k % 2 else p for k, p in enumerate(parts))
            bold = text.split("**")  # the markdown's **emphasis**, as in report.md
            if len(bold) % 2:
                text = "".join(f"<b>{p}</b>" if k % 2 else p for k, p in enumerate(bold))
            out.append(f"<p>{text}</p>")
        elif kind == "table":
            head, rows = cast(tuple[list[str], list[list[str]]], body)
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
                       + "</tr>")
            for r in rows:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
            out.append("</table>")
        elif kind == "img":
            data = base64.b64encode((folder / images[str(body)]).read_bytes()).decode()
            out.append(f"<p><img alt='{html.escape(str(body))}' "
                       f"src='data:image/png;base64,{data}'></p>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(run: SimulationRun, out: str | Path) -> Path:
    """Write results.json, the PNGs, report.md and report.html into `out`; returns report.md."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    doc = results_json(run)
    (folder / "results.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n",
                                         encoding="utf-8")
    images: dict[str, str] = {}
    if any(run.fill.values()):
        images["fill_unallocated"] = plot_fill_unallocated(
            run, folder / "fill_unallocated.png").name
        images["fill_fragmentation"] = plot_fill_fragmentation(
            run, folder / "fill_fragmentation.png").name
    has_q = any(r.q_chosen.size for rs in run.fill.values() for r in rs) or any(
        r.quality.size for rs in run.dynamic.values() for r in rs)
    if has_q:
        images["quality"] = plot_quality(run, folder / "quality.png").name
    if any(run.dynamic.values()):
        images["dynamic_time"] = plot_dynamic_time(run, folder / "dynamic_time.png").name
        images["wait_cdf"] = plot_wait_cdf(run, folder / "wait_cdf.png").name
    sens = doc.get("sensitivity")
    if isinstance(sens, dict) and sens.get("jct_gain_pct"):
        images["sensitivity"] = plot_sensitivity(sens, folder / "sensitivity.png").name
    if run.plan is not None:
        images["plan"] = plot_plan(run.plan, folder / "plan.png").name
    blocks = _blocks(run, doc, images)
    (folder / "report.md").write_text(render_markdown(blocks, images), encoding="utf-8")
    (folder / "report.html").write_text(render_html(blocks, images, folder), encoding="utf-8")
    return folder / "report.md"
