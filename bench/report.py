"""The simulator's report folder: results.json (bench.results_json), the PNG plots
(bench.report_plots), report.md and a self-contained report.html (bench.report_blocks, rendered
by bench.report_render)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report_blocks import report_blocks
from bench.report_plots import (
    plot_dynamic_time,
    plot_fill_fragmentation,
    plot_fill_unallocated,
    plot_plan,
    plot_quality,
    plot_sensitivity,
    plot_wait_cdf,
)
from bench.report_render import render_html, render_markdown
from bench.results_json import results_json
from bench.simulation_run import SimulationRun


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
    blocks = report_blocks(run, doc, images)
    (folder / "report.md").write_text(render_markdown(blocks, images), encoding="utf-8")
    (folder / "report.html").write_text(render_html(blocks, images, folder), encoding="utf-8")
    return folder / "report.md"
