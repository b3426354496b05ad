"""LP patterns for fractional requests: how much of the typical workload a GPU's free share holds.

FGD's fragmentation looks one request ahead; the gap left on a shared GPU is decided by the
pairs and triples of shares that end up together (470+470, 320x3, 590+370 fill a GPU exactly,
470+320 leaves 210 that few shares fill). The offline optimum packs shares by the patterns of
the cutting-stock LP for the share sizes' distribution (Gilmore and Gomory): minimise GPUs used
so that every size gets its demand. Its dual prices y_s value each share size in GPUs; the best
pattern that fits in r free thousandths is worth

    K(r) = max { sum_s y_s n_s : sum_s s n_s <= r }        (K(1000) = 1 at the LP's optimum)

and a share that turns f free into f - m is consistent with an optimal pattern exactly when
K(f) - K(f - m) equals its own price; any excess is value the placement gives up. Since the
share's price is the same on every node, scoring K(f - m) - K(f) orders nodes by that excess.

The LP is solved by column generation (HiGHS through scipy, knapsack pricing by DP) once per
share distribution, not per pod; the tables are cached on the distribution rounded to 0.1 %.
A small share of each price is the size itself (SIZE_MIX), so that sizes the LP prices at 0
(plentiful small shares that fill any gap for free) still prefer the gap they close exactly.
Pure; the per-pod work is one table lookup per node (pattern_gains).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.optimize import linprog

from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.typical_workload import WorkloadClasses

# Part of each share's price that is its size in GPUs (s / 1000) rather than its LP dual.
SIZE_MIX = 0.05
# Column generation stops when no pattern is worth more than 1 + this, or after MAX_ROUNDS.
PRICE_TOL = 1e-9
MAX_ROUNDS = 200
# Demand shares are rounded to this before caching, so a slowly decaying histogram reuses tables.
DEMAND_GRID = 1e-3


def share_demand(classes: WorkloadClasses) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """(share sizes ascending, their share of the fractional demand rounded to DEMAND_GRID):
    classes of one GPU below 1000 thousandths, counted in pods."""
    share = (classes.gpus == 1) & (classes.milli < MILLI_PER_GPU)
    sizes, inv = np.unique(classes.milli[share], return_inverse=True)
    demand = np.bincount(inv, weights=classes.weight[share], minlength=len(sizes))
    total = float(demand.sum())
    if total <= 0:
        return (), ()
    rounded = np.round(demand / total / DEMAND_GRID) * DEMAND_GRID
    keep = rounded > 0
    return (tuple(int(s) for s in sizes[keep]),
            tuple(float(d) for d in rounded[keep]))


def knapsack(sizes: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """K[r] for r = 0..1000: the most value of shares (any number of each size) within r."""
    best = np.zeros(MILLI_PER_GPU + 1)
    for s, y in zip(sizes.tolist(), prices.tolist(), strict=True):
        if y <= 0:
            continue
        # Pass c admits up to c shares of this size on top of the smaller ones.
        for _ in range(MILLI_PER_GPU // s):
            shifted = best[:-s] + y
            if not (shifted > best[s:]).any():
                break
            best[s:] = np.maximum(best[s:], shifted)
    return best


def _best_pattern(sizes: np.ndarray, prices: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Counts per size of a pattern reaching table[1000] (backtracking the knapsack)."""
    counts = np.zeros(len(sizes), np.int64)
    r = MILLI_PER_GPU
    while r > 0 and table[r] > 0:
        for i, (s, y) in enumerate(zip(sizes.tolist(), prices.tolist(), strict=True)):
            if y > 0 and s <= r and abs(table[r] - (table[r - s] + y)) <= 1e-12:
                counts[i] += 1
                r -= s
                break
        else:
            r -= 1
    return counts


def lp_solution(
    sizes: tuple[int, ...], demand: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patterns as columns of counts per size, GPUs of each pattern, dual prices y_s) of the
    cutting-stock LP (min GPUs, each size's demand covered), by column generation."""
    s = np.asarray(sizes, np.int64)
    d = np.asarray(demand, np.float64)
    k = len(s)
    # Start from the single-size patterns (each size alone, as many as fit).
    cols = [np.eye(k, dtype=np.int64)[i] * (MILLI_PER_GPU // int(s[i])) for i in range(k)]
    y = np.zeros(k)
    x = np.zeros(0)
    for _ in range(MAX_ROUNDS):
        a = np.stack(cols, axis=1).astype(np.float64)
        res = linprog(np.ones(a.shape[1]), A_ub=-a, b_ub=-d, bounds=(0, None), method="highs")
        if res.status != 0:
            # Cannot happen for positive demand (the single-size patterns cover it); should
            # the solver still fail, the last prices stand (at worst 0: sizes alone price).
            break
        y = np.maximum(-np.asarray(res.ineqlin.marginals, np.float64), 0.0)
        x = np.asarray(res.x, np.float64)
        table = knapsack(s, y)
        if table[MILLI_PER_GPU] <= 1.0 + PRICE_TOL:
            break
        cols.append(_best_pattern(s, y, table))
    pats = np.stack(cols[: len(x)], axis=1) if len(x) else np.zeros((k, 0), np.int64)
    return pats, x, y


def lp_prices(sizes: tuple[int, ...], demand: tuple[float, ...]) -> np.ndarray:
    """Dual prices y_s of the cutting-stock LP (min GPUs, each size's demand covered)."""
    return lp_solution(sizes, demand)[2]


@lru_cache(maxsize=16)
def _pattern_table(sizes: tuple[int, ...], demand: tuple[float, ...]) -> np.ndarray:
    if not sizes:
        return np.zeros(MILLI_PER_GPU + 1)
    s = np.asarray(sizes, np.int64)
    prices = (1.0 - SIZE_MIX) * lp_prices(sizes, demand) + SIZE_MIX * s / MILLI_PER_GPU
    table = knapsack(s, prices)
    table.setflags(write=False)
    return table


def pattern_table(classes: WorkloadClasses) -> np.ndarray:
    """K[r], r = 0..1000 free thousandths: the LP-priced value of the best share pattern that
    fits (read-only; shared between calls with the same rounded share distribution)."""
    return _pattern_table(*share_demand(classes))


def pattern_gain(free_before: np.ndarray, milli: int, table: np.ndarray) -> np.ndarray:
    """K(f - m) - K(f) per node for a share of `milli` on a GPU with f free (<= 0; 0 where the
    placement follows an optimal pattern and the share's price is 0). Nodes whose f is below
    m (no GPU fits) get 0: they are never chosen anyway."""
    out: np.ndarray = gain_row(table, milli)[np.clip(free_before, 0, MILLI_PER_GPU)]
    return out


def gain_row(table: np.ndarray, milli: int) -> np.ndarray:
    """pattern_gain for every f = 0..1000 at once."""
    f = np.arange(MILLI_PER_GPU + 1)
    left = np.maximum(f - milli, 0)
    out: np.ndarray = np.where(f >= milli, table[left] - table, 0.0)
    return out


def pattern_gains(classes: WorkloadClasses, free_before: np.ndarray, milli: int) -> np.ndarray:
    """pattern_gain with the typical workload's table: the scorer's entry. The row for each
    share size is built once per classes object (rebuilt every refresh_every requests) and
    kept on its memo under -milli (the share tables use 1..1000), so a pod costs one lookup."""
    row = classes.memo.get(-milli)
    if row is None:
        row = (gain_row(pattern_table(classes), milli), 0.0)
        classes.memo[-milli] = row
    out: np.ndarray = row[0][free_before]
    return out
