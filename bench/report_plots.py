"""The report's PNG plots, drawn with matplotlib's Agg backend; every figure shows the median
over seeds and, where there are several seeds, the interquartile band."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.metrics import band, ecdf
from bench.seed_summary import READ_OFF
from bench.simulation_run import SimulationRun, in_policy_order
from scheduler.contract.units import MILLI_PER_GPU

QUALITY_BUCKETS = ((1.0, 1.01, "as good as the hardware allows"),
                   (0.75, 1.0, "75-99 % of the best"), (0.5, 0.75, "50-75 % of the best"),
                   (0.0, 0.5, "under half the best"))


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


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _median_band(ax: Any, run: SimulationRun, name: str, xs: np.ndarray,
                 curves: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """One policy's median curve over seeds, with the interquartile band when there are
    several seeds."""
    med, lo, hi = band(xs, curves)
    ax.plot(xs, med, label=name, **_line(run, name))
    if len(curves) > 1:
        ax.fill_between(xs, lo, hi, color=_color(run, name), alpha=0.2, lw=0)


def plot_fill_unallocated(run: SimulationRun, path: Path) -> Path:
    """Unallocated GPU % vs arrived workload (median and IQR over seeds, full and zoomed),
    beside the GPU requests placed: a policy that turns pods away also leaves few GPUs
    unallocated, so the two panels are read together."""
    plt = _plt()
    xs = np.arange(0.0, 131.0, 0.25)
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6), dpi=100)
    ax = axes[2]
    ax.plot([0, 100, 131], [0, 100, 100], ":", color="grey", label="everything placed")
    for name, res in in_policy_order(run.policies, run.fill):
        _median_band(ax, run, name, xs, [(r.arrived_pct, r.placed_request_pct) for r in res])
    ax.set_xlim(0, 131)
    ax.set_xlabel("arrived workload (% of cluster GPU capacity)")
    ax.set_ylabel("GPU requests placed (% of capacity)")
    ax.set_title("requests placed: higher is better\n(read with the unallocated panels)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    for ax, (lo_x, hi_x) in zip(axes[:2], ((0, 131), (75, 131)), strict=True):
        ax.plot([0, 100, 131], [100, 0, 0], ":", color="grey", label="ideal")
        for name, res in in_policy_order(run.policies, run.fill):
            _median_band(ax, run, name, xs,
                         [(r.arrived_pct, 100.0 - r.allocated_pct) for r in res])
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
    return _save(plt, fig, path)


def plot_fill_fragmentation(run: SimulationRun, path: Path) -> Path:
    """FGD fragmentation vs arrived workload: GPUs and share of idle capacity."""
    plt = _plt()
    xs = np.arange(0.0, 131.0, 1.0)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), dpi=110)
    for name, res in in_policy_order(run.policies, run.fill):
        for ax, attr in zip(axes, ("cp_frag_gpus", "cp_frag_pct"), strict=True):
            _median_band(ax, run, name, xs, [(r.cp_arrived_pct, getattr(r, attr)) for r in res])
    axes[0].set_ylabel("fragmented GPUs (FGD measure)")
    axes[1].set_ylabel("fragmented share of idle GPU capacity (%)")
    for ax in axes:
        ax.set_xlabel("arrived workload (% of cluster GPU capacity)")
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.legend(fontsize=8)
    axes[0].set_title("fill: fragmented GPUs against the workload's typical pods", fontsize=10)
    axes[1].set_title("fill: fragmented share of the idle GPU capacity", fontsize=10)
    return _save(plt, fig, path)


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
    return _save(plt, fig, path)


def plot_dynamic_time(run: SimulationRun, path: Path) -> Path:
    """GPU allocation, GPUs held by incomplete gangs and queue length over time (first seed)."""
    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), dpi=110, sharex=True)
    for name, res in in_policy_order(run.policies, run.dynamic):
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
    return _save(plt, fig, path)


def plot_wait_cdf(run: SimulationRun, path: Path) -> Path:
    """CDF of job waiting time (pooled over seeds) and of job completion time."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), dpi=110)
    for name, res in in_policy_order(run.policies, run.dynamic):
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
    return _save(plt, fig, path)


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
    return _save(plt, fig, path)


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
    return _save(plt, fig, path)
