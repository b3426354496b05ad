"""The numbers of one seed's replay, as results.json lists them per seed, and their spread
over seeds. Fill numbers are read off at READ_OFF % arrived as the FGD artifact reads them
(bench.metrics.at_arrived)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bench.dynamic_replay import DynamicResult
from bench.fill_replay import FillResult
from bench.metrics import at_arrived, interpolated_at, summarize
from scheduler.contract.units import MILLI_PER_GPU

READ_OFF = (100, 130)


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


def seed_spread(rows: Sequence[dict[str, object]], *path: str) -> dict[str, float]:
    """Median, quartiles, min and max over seeds of the number at `path` in each row."""
    vals: list[float] = []
    for row in rows:
        v: object = row
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        vals.append(float(v) if isinstance(v, int | float) else float("nan"))
    return summarize(vals)
