"""The FGD paper's published fill results (ATC'23) and how a run compares with them."""

from __future__ import annotations

import os

from bench.seed_summary import fill_seed, seed_spread
from bench.simulation_run import SimulationRun

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


def paper_variant(run: SimulationRun) -> str | None:
    """'default' or the variant name when the run is the FGD paper's setting, else None."""
    src = os.path.basename(str(run.workload.get("source", "")))
    if not src.startswith("openb_pod_list_") or not src.endswith(".csv"):
        return None
    if run.cluster.get("gpu_nodes") != PAPER_NODES or run.cluster.get("gpus") != PAPER_GPUS:
        return None
    variant = src[len("openb_pod_list_"):-len(".csv")]
    return variant if variant == "default" or variant in PAPER_VARIANTS else None


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
            ours = seed_spread(seeds, "unallocated_gpu_pct", x)["median"]
            row[x] = {"ours": ours, "paper": p, "diff": ours - p,
                      "within_1pp": bool(abs(ours - p) <= 1.0)}
        rows.append(row)
    return {"variant": variant, "seeds": len(run.seeds), "rows": rows}
