"""results.json (DESIGN.md section 7): medians over seeds per policy and mode, their spreads,
every seed's numbers, the scenario, and the paper check and LP bound where they apply."""

from __future__ import annotations

from collections.abc import Sequence

from bench.bound_report import bound_json
from bench.json_safe import json_safe
from bench.metrics import summarize
from bench.paper_check import paper_check, paper_variant
from bench.report_verdict import jct_gain_band
from bench.seed_summary import READ_OFF, dynamic_seed, fill_seed, seed_spread
from bench.simulation_run import SimulationRun

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


def _median(rows: Sequence[dict[str, object]], *path: str) -> float:
    return seed_spread(rows, *path)["median"]


def _at_read_off(rows: Sequence[dict[str, object]], key: str) -> dict[str, float]:
    """The median over seeds of `key` at each READ_OFF % arrived."""
    return {str(x): _median(rows, key, str(x)) for x in READ_OFF}


def _spread_at_read_off(rows: Sequence[dict[str, object]], key: str
                        ) -> dict[str, dict[str, float]]:
    return {str(x): seed_spread(rows, key, str(x)) for x in READ_OFF}


def results_json(run: SimulationRun) -> dict[str, object]:
    """The results.json document (DESIGN.md section 7, plus spreads and per-seed detail)."""
    policies: dict[str, dict[str, object]] = {}
    for name in run.policies:
        entry: dict[str, object] = {}
        if run.fill.get(name):
            rows = [fill_seed(r) for r in run.fill[name]]
            entry["fill"] = {
                "unallocated_gpu_pct": _at_read_off(rows, "unallocated_gpu_pct"),
                "unallocated_gpu_pct_spread": _spread_at_read_off(rows, "unallocated_gpu_pct"),
                "unallocated_gpu_pct_interpolated": _at_read_off(
                    rows, "unallocated_gpu_pct_interpolated"),
                "placed_request_pct": _at_read_off(rows, "placed_request_pct"),
                "placed_request_pct_spread": _spread_at_read_off(rows, "placed_request_pct"),
                "pods_failed_pct": seed_spread(rows, "pods_failed_pct"),
                "events": _events(rows),
                "fragmentation_pct_of_idle": _at_read_off(rows, "fragmentation_pct_of_idle"),
                "quality_1_when_free_pct": _median(rows, "quality_1_when_free_pct"),
                "quality_1_pct": _median(rows, "quality_1_pct"),
                "wall_s": _median(rows, "wall_s"),
                "decisions_per_s": _median(rows, "decisions_per_s"),
                "per_seed": rows,
            }
        if run.dynamic.get(name):
            rows = [dynamic_seed(r) for r in run.dynamic[name]]
            entry["dynamic"] = {
                "gpus_held_by_incomplete_gangs_max": seed_spread(
                    rows, "gpus_held_by_incomplete_gangs_max")["max"],
                "wait_s_median": _median(rows, "wait_s", "median"),
                "wait_s_p95": _median(rows, "wait_s", "p95"),
                "jct_s_median": _median(rows, "jct_s", "median"),
                "jct_s_p95": _median(rows, "jct_s", "p95"),
                "completed": _median(rows, "completed"),
                "queued_at_end": _median(rows, "queued_at_end"),
                "slowdown_mean": _median(rows, "slowdown_mean"),
                "multi_gpu_quality_mean": _median(rows, "multi_gpu_quality_mean"),
                "utilization_mean_pct": _median(rows, "utilization_mean_pct"),
                "decisions_per_s": _median(rows, "decisions_per_s"),
                "spread": {k: seed_spread(rows, *path) for k, path in DYNAMIC_SPREAD.items()},
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
    doc_safe: dict[str, object] = json_safe(doc)
    return doc_safe
