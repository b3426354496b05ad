"""Whether two policy snapshots describe the same cluster state: the tests' check that a rebuild,
a restart or a read-only call leaves a snapshot as it was."""

from __future__ import annotations

import numpy as np

from scheduler.policy.snapshot import Snapshot

_ARRAYS = ("cpu_free", "mem_free", "milli_free", "gpu_mem_free", "free_mask", "cpu_total",
           "mem_total", "gpu_mem_total", "model_id", "level_ids")


def same_state(a: Snapshot, b: Snapshot) -> bool:
    """True if both snapshots describe the same nodes with the same holdings and arrays."""
    return (
        a.names == b.names
        and a.holdings == b.holdings
        and all(np.array_equal(getattr(a, f), getattr(b, f)) for f in _ARRAYS)
    )
