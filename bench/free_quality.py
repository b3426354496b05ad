"""The best topology quality free anywhere a multi-GPU pod could go: what the reports compare
each placement's quality with. Measured, never used to place."""

from __future__ import annotations

import numpy as np

from scheduler.contract.request import PodRequest
from scheduler.policy.gpu_models import matching_model_ids
from scheduler.policy.snapshot import Snapshot


class ModelMasks:
    """Boolean node masks for allowed-model sets, built once per distinct set."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.cache: dict[frozenset[str], np.ndarray] = {}

    def of(self, models: frozenset[str]) -> np.ndarray | None:
        """Nodes whose GPU model is in `models`; None when any model is allowed."""
        if not models:
            return None
        m = self.cache.get(models)
        if m is None:
            ids = matching_model_ids(models, self.snap.models)
            m = np.isin(self.snap.model_id, ids.astype(self.snap.model_id.dtype))
            self.cache[models] = m
        return m


def best_free_quality(snap: Snapshot, req: PodRequest, masks: ModelMasks) -> float:
    """Best topology quality of a free `req.gpus`-set on any node that has the CPU, memory and
    model for `req` (-1 when none has such a set)."""
    k = req.gpus
    ok = (snap.cpu_free >= req.cpu_milli) & (snap.mem_free >= req.memory_mib) & \
         (snap.gpu_count >= k)
    mm = masks.of(req.allowed_models)
    if mm is not None:
        ok &= mm
    best = -1.0
    for t, tables in enumerate(snap.topo_index.tables):
        if tables is None or tables.n < k:
            continue
        sel = ok & (snap.topo_id == t)
        if sel.any():
            best = max(best, float(tables.best_quality[snap.free_mask[sel], k].max()))
    return best
