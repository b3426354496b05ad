"""The LP bound in the simulator's report: every policy's fill result as its gap to the bound.

bench.bound gives, per seed (one arrival order), a lower bound on the unallocated GPU % any
placement reaches at each read-off point. Here it is set beside the policies of a run:
`gap` is the policy's unallocated % minus the bound on the same seed (median over seeds), and
`gap_ratio` divides that gap by FGD's on the same seed, (policy - bound) / (fgd - bound):
1.0 = as far from the bound as FGD, 0 = on it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence

from bench.bound import fill_bound
from bench.fill_replay import FillResult
from bench.metrics import at_arrived, interpolated_at
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest

READ_OFF = (100, 130)
SeedBounds = dict[int, dict[str, float]]


def seed_bounds(
    nodes: Sequence[NodeSpec], pods_of: Callable[[int], Sequence[PodRequest]],
    seeds: Sequence[int], read_off: Sequence[int] = READ_OFF,
) -> SeedBounds:
    """{seed: {"100": bound %, "130": bound %}} for the fill runs of `seeds`."""
    return {s: {str(x): fill_bound(nodes, pods_of(s), s, x).unallocated_pct for x in read_off}
            for s in seeds}


def _unallocated(r: FillResult, x: int) -> float:
    v = 100.0 - at_arrived(r.arrived_pct, r.allocated_pct, x)
    return v if math.isfinite(v) else 100.0 - interpolated_at(r.arrived_pct, r.allocated_pct, x)


def _median(xs: Sequence[float]) -> float | None:
    xs = [x for x in xs if math.isfinite(x)]
    return statistics.median(xs) if xs else None


def bound_json(
    fill: Mapping[str, Sequence[FillResult]], bounds: SeedBounds, reference: str = "fgd",
) -> dict[str, object]:
    """results.json's "bound" section: medians, per-seed bounds, each policy's gap."""
    keys = sorted({k for b in bounds.values() for k in b}, key=float)
    ref = {r.seed: r for r in fill.get(reference, [])}
    policies: dict[str, object] = {}
    for name, runs in fill.items():
        gap: dict[str, float | None] = {}
        ratio: dict[str, float | None] = {}
        for k in keys:
            x = int(float(k))
            gaps, ratios = [], []
            for r in runs:
                if r.seed not in bounds:
                    continue
                b = bounds[r.seed][k]
                ours = _unallocated(r, x)
                gaps.append(ours - b)
                if r.seed in ref:
                    den = _unallocated(ref[r.seed], x) - b
                    if den > 1e-9:
                        ratios.append((ours - b) / den)
            gap[k] = _median(gaps)
            ratio[k] = _median(ratios)
        policies[name] = {"gap": gap, "gap_ratio": ratio if reference in fill else None}
    return {
        "what": "LP lower bound on unallocated GPU % (bench/bound.py); gap = policy - bound, "
                f"gap_ratio = (policy - bound) / ({reference} - bound), medians over seeds "
                "of per-seed values",
        "unallocated_gpu_pct": {k: _median([b[k] for b in bounds.values()]) for k in keys},
        "per_seed": {str(s): b for s, b in sorted(bounds.items())},
        "policies": policies,
    }


def bound_rows(section: Mapping[str, object]) -> tuple[list[str], list[list[str]]]:
    """The report's table: per policy, gap to the bound and gap ratio at each read-off."""
    med = section["unallocated_gpu_pct"]
    pols = section["policies"]
    assert isinstance(med, dict) and isinstance(pols, dict)
    keys = list(med)

    def fmt(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else "-"

    head = ["policy"] + [f"gap at {k} %" for k in keys] + [f"gap ratio at {k} %" for k in keys]
    rows = [["bound (LP)"] + [fmt(med[k]) + " (bound)" for k in keys] + ["" for _ in keys]]
    for name, p in pols.items():
        assert isinstance(p, dict)
        ratio = p.get("gap_ratio") or {}
        rows.append([name] + [fmt(p["gap"][k]) for k in keys] + [fmt(ratio.get(k)) for k in keys])
    return head, rows
