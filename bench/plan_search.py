"""The search of `gts plan`: the smallest pool counts for which a predicate ("this cluster meets
the target") holds. Pure: the predicate is the only thing that runs a simulation.

Both searches assume the predicate is monotone (more nodes never make the target harder to
meet). Placement heuristics are not exactly monotone, so the caller re-checks every seed at
the answer and steps up if one misses (bench/plan.py).

One scaling pool: bisection on the pool's grid (min, min + step, ..., max). With a hint (the
answer of the previous seed, which is usually the answer or one step off) the search first
brackets around the hint with doubling steps, so a repeat costs two or three replays.

Several scaling pools: coordinate descent. Start from every pool at its maximum (if that
misses, nothing within the bounds meets the target); then, pool by pool, most expensive per
GPU first (GPUs per node as the tie-break, larger first), bisect that pool's count down with the
others fixed; repeat the round until no pool changes (at most MAX_ROUNDS). The answer is a
cluster that meets the target where no single pool can shrink by one step; it is not proven
to be the cheapest mix (that would need every combination of counts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Counts = tuple[int, ...]
MAX_ROUNDS = 3


@dataclass(slots=True)
class CachedPredicate:
    """A predicate over counts that runs each distinct counts once and logs the order."""

    fn: Callable[[Counts], bool]
    seen: dict[Counts, bool] = field(default_factory=dict)
    order: list[Counts] = field(default_factory=list)

    def __call__(self, counts: Counts) -> bool:
        c = tuple(counts)
        if c not in self.seen:
            self.seen[c] = bool(self.fn(c))
            self.order.append(c)
        return self.seen[c]


def smallest_on_grid(passes: Callable[[int], bool], grid: Sequence[int],
                     hint: int | None = None) -> int | None:
    """Smallest value of the sorted `grid` where `passes` holds (monotone assumed); None when it
    fails even at the grid's last value. `hint` is a value to start bracketing from."""
    if not grid:
        return None
    n = len(grid)
    lo, hi = -1, n - 1  # grid[lo] fails (-1: below the grid), grid[hi] passes once checked
    if hint is not None and grid[0] <= hint <= grid[-1]:
        h = min(range(n), key=lambda k: abs(grid[k] - hint))
        if passes(grid[h]):
            hi, d = h, 1
            while True:
                k = hi - d
                if k < 0:
                    break
                if passes(grid[k]):
                    hi, d = k, d * 2
                else:
                    lo = k
                    break
        else:
            lo, d = h, 1
            while True:
                k = min(lo + d, n - 1)
                if passes(grid[k]):
                    hi = k
                    break
                lo, d = k, d * 2
                if k == n - 1:
                    return None
    elif not passes(grid[-1]):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(grid[mid]):
            hi = mid
        else:
            lo = mid
    return grid[hi]


def pool_order(costs_per_gpu: Sequence[float], gpus_per_node: Sequence[float]) -> list[int]:
    """Pools to shrink first: highest cost per GPU, then most GPUs per node, then file order."""
    return sorted(range(len(costs_per_gpu)), key=lambda i: (-costs_per_gpu[i],
                                                            -gpus_per_node[i], i))


def smallest_counts(passes: Callable[[Counts], bool], grids: Sequence[Sequence[int]],
                    order: Sequence[int], hint: Counts | None = None) -> Counts | None:
    """Smallest counts (one per pool, each from its grid) where `passes` holds: bisection for
    one scaling pool, coordinate descent for several (module docstring); None when even the
    largest counts miss."""
    scaling = [i for i, g in enumerate(grids) if len(g) > 1]
    top = tuple(int(g[-1]) for g in grids)
    if len(scaling) <= 1:
        if not scaling:
            return top if passes(top) else None
        p = scaling[0]

        def one(v: int) -> bool:
            return passes((*top[:p], v, *top[p + 1:]))

        v = smallest_on_grid(one, grids[p], None if hint is None else hint[p])
        return None if v is None else (*top[:p], v, *top[p + 1:])
    if not passes(top):
        return None
    cur = list(top)
    for _ in range(MAX_ROUNDS):
        changed = False
        for p in order:
            if p not in scaling:
                continue
            grid = [g for g in grids[p] if g <= cur[p]]

            def at(v: int, p: int = p) -> bool:
                return passes(tuple([*cur[:p], v, *cur[p + 1:]]))

            v = smallest_on_grid(at, grid)
            if v is not None and v < cur[p]:
                cur[p] = v
                changed = True
        if not changed:
            break
    return tuple(cur)


def one_step_below(counts: Counts, grids: Sequence[Sequence[int]]) -> list[Counts]:
    """The neighbours of `counts` with one scaling pool one grid step smaller."""
    out: list[Counts] = []
    for p, g in enumerate(grids):
        smaller = [v for v in g if v < counts[p]]
        if smaller:
            out.append((*counts[:p], max(smaller), *counts[p + 1:]))
    return out
