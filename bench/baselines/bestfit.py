"""The FGD paper's BestFit baseline, as its artifact runs it.

hkust-adsl/kubernetes-scheduler-simulator pkg/simulator/plugin/best_fit_score.go getBestFitScore:
with free = (CPU milli left, GPU milli left on the node) and request = (CPU milli, GPU milli in
all), score = int((1 - sum_i 0.5 * (free_i - request_i) / maxSpec_i) * 100), maxSpec =
(128000 CPU milli, 8000 GPU milli) (pkg/type/open-gpu-share/utils/const.go MaxSpecCpu,
MaxSpecGpu): the node left with the least is best. NormalizeScore (plugin_utils.go) rescales the
scores min-max to 0..100 with integer division, which keeps exactly the same top nodes. The
experiments run it without `-gpusel`, so shares take the tightest fitting GPU
(allocateGpuIdBasedOnBestFit, the "best" default of scripts/generate_config_and_run.py).
Ties between nodes go to the first in the run's node order (fgd_artifact.NodeRanking).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.baselines.fgd_artifact import (
    NodeRanking,
    artifact_feasible,
    artifact_gpus,
    assignment,
    best_fit_gpu,
    gpu_number,
    per_gpu_milli,
)
from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.policy.snapshot import Snapshot

MAX_SPEC_CPU = 128000.0
MAX_SPEC_GPU = 8000.0
WEIGHT_CPU = 0.5
WEIGHT_GPU = 0.5
MAX_NODE_SCORE = 100.0


def best_fit_scores(
    cpu_free: np.ndarray, gpu_free_total: np.ndarray, cpu_req: int, gpu_req: int
) -> np.ndarray:
    """getBestFitScore per node, in the artifact's float64 operation order (higher is better)."""
    s = (np.asarray(cpu_free, np.float64) - float(cpu_req)) / MAX_SPEC_CPU * WEIGHT_CPU
    s = s + (np.asarray(gpu_free_total, np.float64) - float(gpu_req)) / MAX_SPEC_GPU * WEIGHT_GPU
    return ((1.0 - s) * MAX_NODE_SCORE).astype(np.int64)


def normalize_scores(scores: np.ndarray) -> np.ndarray:
    """plugin_utils.go NormalizeScore: (s - lowest) * 100 // (highest - lowest), 0 if all equal."""
    s = np.asarray(scores, dtype=np.int64)
    lo, hi = int(s.min()), int(s.max())
    if hi == lo:
        return np.zeros_like(s)
    return (s - lo) * 100 // (hi - lo)


class BestFitPolicy:
    """The node left with the least CPU and GPU (normalised by the largest node), shares packed."""

    name = "bestfit"
    supports_gangs = False

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.ranking = NodeRanking(self.rng)

    def place(self, req: PodRequest, snap: Snapshot) -> Assignment | None:
        """Node and GPUs for one pod, or None when no node fits."""
        feasible = np.flatnonzero(artifact_feasible(req, snap))
        if len(feasible) == 0:
            return None
        gpu_left = snap.milli_free[feasible].sum(axis=1)
        raw = best_fit_scores(snap.cpu_free[feasible], gpu_left, req.cpu_milli,
                              per_gpu_milli(req) * gpu_number(req))
        node = self.ranking.pick(snap, feasible, normalize_scores(raw))
        share_gpu = best_fit_gpu(req, snap, node) if req.is_share else -1
        return assignment(req, snap, node, artifact_gpus(req, snap, node, share_gpu))

    def place_gang(self, members: Sequence[PodRequest], snap: Snapshot) -> list[Assignment] | None:
        """The artifact schedules pods one by one: never places a gang whole."""
        return None

    def observe(self, req: PodRequest) -> None:
        """BestFit learns nothing."""
