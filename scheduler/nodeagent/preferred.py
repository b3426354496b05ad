"""Which devices to propose to kubelet when no signed pending pod fits its question.

GetPreferredAllocation is only a hint, and the scheduler's own assignment is proposed whenever
one pending pod fits (see claims.py). Otherwise, the best-linked set among the offered GPUs by
the topology's subset tables (same order as the scheduler: ring bandwidth, pairwise bandwidth,
then what stays usable), and for share units the GPU with the fewest offered units that still
hold the request (best fit, keeping emptier GPUs for larger shares).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from topology.tables import SubsetTables, greedy_best_set, popcounts


def _mask(gpus: Collection[int]) -> int:
    return sum(1 << g for g in set(gpus))


def best_gpu_set(
    tables: SubsetTables | None,
    bandwidth: np.ndarray,
    available: Collection[int],
    must: Collection[int],
    size: int,
) -> tuple[int, ...]:
    """The best `size` GPUs among `available` that include `must` (fewer if impossible)."""
    must_set = set(must)
    avail = set(available) | must_set
    if len(must_set) >= size:
        return tuple(sorted(must_set))
    if len(avail) <= size:
        return tuple(sorted(avail))
    if tables is None:
        rest = sorted(avail - must_set)
        chosen = greedy_best_set(bandwidth, rest, size - len(must_set)) or []
        return tuple(sorted(must_set | set(chosen)))
    free, need = _mask(avail), _mask(must_set)
    if not need:
        return _bits(int(tables.best_set[free, size]))
    masks = np.arange(1 << tables.n, dtype=np.int64)
    ok = ((masks & ~free) == 0) & ((masks & need) == need) & (popcounts(tables.n) == size)
    cand = masks[ok]
    # best quality first, then the most useful remainder
    order = np.lexsort((tables.value[free ^ cand], tables.set_quality[cand]))
    return _bits(int(cand[order[-1]]))


def _bits(mask: int) -> tuple[int, ...]:
    return tuple(i for i in range(mask.bit_length()) if mask >> i & 1)


def best_share_units(
    available: Collection[str], must: Collection[str], size: int, gpu_of: dict[str, int]
) -> tuple[str, ...]:
    """`size` share-unit ids, all on one GPU when possible (the best-fitting one)."""
    chosen = list(dict.fromkeys(must))
    by_gpu: dict[int, list[str]] = {}
    for d in sorted(set(available) - set(chosen)):
        by_gpu.setdefault(gpu_of[d], []).append(d)
    need = size - len(chosen)
    if need <= 0:
        return tuple(chosen)
    must_gpus = {gpu_of[d] for d in chosen}
    candidates = [g for g in by_gpu if len(by_gpu[g]) >= need and must_gpus <= {g}]
    if candidates:
        g = min(candidates, key=lambda g: (len(by_gpu[g]), g))
        return tuple(chosen + by_gpu[g][:need])
    rest = [d for g in sorted(by_gpu, key=lambda g: -len(by_gpu[g])) for d in by_gpu[g]]
    return tuple(chosen + rest[:need])
