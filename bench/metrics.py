"""What the reports measure, with the FGD paper's definitions (Weng et al., ATC'23) and its
artifact's way of reading them off (hkust-adsl/kubernetes-scheduler-simulator).

- Arrived workload %: cumulative GPU request of the pods submitted so far (placed or not;
  CPU-only pods add 0) over the cluster's GPU capacity.
- Allocated GPU %: GPU thousandths held by placed pods over capacity; unallocated = 100 - it.
  The artifact logs one row per submitted pod, rounds arrived % to an integer and allocated %
  to two decimals, and the value at X % arrived is the mean over the rows that round to X
  (rows within X +- 1 when none does); `at_arrived` does exactly that.
- Fragmentation: scheduler.policy.fragmentation.node_fragmentation (FGD's measure, never
  re-implemented here) summed over nodes, against the workload's typical pods as the FGD
  baseline scores with them (bench.baselines.typical_pods: GetTypicalPods, popularity 95 %,
  CPU-only pods included, classes restricted to GPU models seen per node model).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from bench.baselines.typical_pods import TypicalPods
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.fragmentation import node_fragmentation
from scheduler.policy.snapshot import Snapshot


def at_arrived(arrived_pct: np.ndarray, allocated_pct: np.ndarray, x: float) -> float:
    """Allocated % at x % arrived, as the FGD artifact reads it (see module docstring)."""
    ar = np.round(np.asarray(arrived_pct, dtype=np.float64))
    al = np.round(np.asarray(allocated_pct, dtype=np.float64), 2)
    sel = ar == round(x)
    if not sel.any():
        sel = (ar >= round(x) - 1) & (ar <= round(x) + 1)
    if not sel.any():
        return float("nan")
    return float(al[sel].mean())


def interpolated_at(arrived_pct: np.ndarray, allocated_pct: np.ndarray, x: float) -> float:
    """Allocated % at exactly x % arrived by linear interpolation (nan outside the curve)."""
    a = np.asarray(arrived_pct, dtype=np.float64)
    if a.size == 0 or x < a[0] or x > a[-1]:
        return float("nan")
    return float(np.interp(x, a, np.asarray(allocated_pct, dtype=np.float64)))


def cluster_fragmentation(snap: Snapshot, typical: TypicalPods | None) -> tuple[float, float]:
    """(fragmented GPUs, fragmented share of idle GPU capacity in %) of the whole cluster."""
    idle = float(snap.milli_free.sum())
    if typical is None or typical.n == 0 or snap.n_nodes == 0:
        return 0.0, 0.0
    if not typical.restricted:
        frag = float(node_fragmentation(snap.milli_free, snap.cpu_free, typical.classes).sum())
    else:
        frag = 0.0
        for mid in np.unique(snap.model_id).tolist():
            sel = snap.model_id == mid
            cls = typical.for_model(snap.models[mid] if mid >= 0 else "")
            frag += float(node_fragmentation(snap.milli_free[sel], snap.cpu_free[sel], cls).sum())
    return frag / MILLI_PER_GPU, (100.0 * frag / idle if idle > 0 else 0.0)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, min and max over seeds (nan-aware; nan when empty)."""
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        nan = float("nan")
        return {"median": nan, "p25": nan, "p75": nan, "min": nan, "max": nan, "n": 0}
    return {
        "median": float(np.median(a)),
        "p25": float(np.percentile(a, 25)),
        "p75": float(np.percentile(a, 75)),
        "min": float(a.min()),
        "max": float(a.max()),
        "n": int(a.size),
    }


def band(xs: np.ndarray, curves: Sequence[tuple[np.ndarray, np.ndarray]]
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and interquartile band over seeds of curves resampled on the grid xs."""
    if not curves:
        empty = np.full(len(xs), np.nan)
        return empty, empty, empty
    ys = np.vstack([
        np.where((xs >= x[0]) & (xs <= x[-1]), np.interp(xs, x, y), np.nan) if len(x) else
        np.full(len(xs), np.nan)
        for x, y in curves
    ])
    # All-nan columns (beyond every seed's curve) are expected; they stay nan, unreported.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(ys, axis=0)
        lo = np.nanpercentile(ys, 25, axis=0)
        hi = np.nanpercentile(ys, 75, axis=0)
    return med, lo, hi


def ecdf(values: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and their cumulative fractions."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    return v, (np.arange(1, v.size + 1) / v.size if v.size else v)
