"""The FGD paper's Random baseline, as its artifact runs it.

hkust-adsl/kubernetes-scheduler-simulator pkg/simulator/plugin/random_score.go: PreScore draws one
of the feasible nodes uniformly (rand.Intn over the filtered list) and Score gives it the only
top score; the experiments run it with `-gpusel random` (experiments/run_scripts/
generate_run_scripts.py), so a share goes to a uniformly random GPU that fits
(open_gpu_share.go allocateGpuIdBasedOnRandomFit) and whole GPUs to the lowest-indexed free
ones. The filter is the artifact's (fgd_artifact.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.baselines.fgd_artifact import artifact_feasible, artifact_gpus, assignment, random_gpu
from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.policy.snapshot import Snapshot


class RandomPolicy:
    """A uniformly random feasible node; a uniformly random fitting GPU for a share."""

    name = "random"
    supports_gangs = False

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def place(self, req: PodRequest, snap: Snapshot) -> Assignment | None:
        """Node and GPUs for one pod, or None when no node fits."""
        feasible = np.flatnonzero(artifact_feasible(req, snap))
        if len(feasible) == 0:
            return None
        node = int(feasible[self.rng.integers(len(feasible))])
        share_gpu = random_gpu(req, snap, node, self.rng) if req.is_share else -1
        return assignment(req, snap, node, artifact_gpus(req, snap, node, share_gpu))

    def place_gang(self, members: Sequence[PodRequest], snap: Snapshot) -> list[Assignment] | None:
        """The artifact schedules pods one by one: never places a gang whole."""
        return None

    def observe(self, req: PodRequest) -> None:
        """Random learns nothing."""
