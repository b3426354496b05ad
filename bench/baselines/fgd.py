"""Fragmentation gradient descent (Weng et al., "Beware of Fragmentation", USENIX ATC'23).

Re-implemented from the paper and its artifact, hkust-adsl/kubernetes-scheduler-simulator:

- Target workload: FGD's typical pods (typical_pods.py, GetTypicalPods), CPU-only pods included.
- Node fragmentation (frag.go NodeGpuShareFragAmountScore), the weighted sum over typical pods:
  for a GPU pod the node can host (enough GPUs with its share free, enough CPU), the free
  thousandths on GPUs with less than its share; otherwise (it lacks GPU or CPU, or may not use
  the node's model) all the node's free thousandths; for a CPU-only pod always all of them
  (its XL/XR classes count as fragment). scheduler/policy/fragmentation.py holds that formula
  (`frag_delta_whole`, `frag_delta_share`, `node_fragmentation`); this file feeds it the
  artifact's classes (typical_pods.py says how CPU-only and model-restricted classes are encoded).
- Score (pkg/simulator/plugin/fgd_score.go calculateGpuShareFragExtendScore):
  int(sigmoid((frag_before - frag_after) / 1000) * 100) per node; whole-GPU and CPU-only pods
  are subtracted as NodeResource.Sub does (CPU, and the lowest free GPUs, which are all alike to
  this measure); a share is tried on every GPU that fits and the node scores its best GPU (the
  lowest index on ties), which is also the GPU it gets (allocateGpuIdBasedOnFGDScore). Among the
  top integer scores the node first in the run's node order wins (the artifact's selectHost,
  fgd_artifact.NodeRanking), so the integer rounding is kept on purpose: it decides which nodes tie.
- Filter and whole-GPU choice: the artifact's (fgd_artifact.py).

Where the typical pods come from: the artifact computes them once, from the trace's original
pods, before any copy is added or any pod placed. Here `typical=` fixes them up front;
otherwise `observe()` counts distinct pods (by key) and `place()` rebuilds the typical pods
whenever the distinct pods seen have doubled since the last build. With the replay's warm-up
(every original pod observed before the first placement) that is one build from the originals,
which the fill protocol's copies (at most 30 % more pods) never double: the artifact's case. From
a cold start it keeps learning, ever more rarely.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.baselines.fgd_artifact import (
    NodeRanking,
    artifact_feasible,
    artifact_gpus,
    assignment,
    exclusive_gpus,
    gpu_fits,
    gpu_number,
)
from bench.baselines.typical_pods import (
    PodKey,
    TypicalPods,
    pod_key,
    typical_pods,
)
from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.fragmentation import (
    frag_delta_share,
    frag_delta_whole,
    node_fragmentation,
)
from scheduler.policy.snapshot import Snapshot
from scheduler.policy.typical_workload import WorkloadClasses

MAX_NODE_SCORE = 100.0
# An exact zero change scores sigmoid(0) * 100 = 50 in the artifact; float noise must not turn
# it into 49. frag_delta_* compute in float32 (about 1e-6 relative: below 0.01 thousandths on a
# node), while a real change is a class weight times at least one thousandth (the trace's
# shares are multiples of 10 and its smallest typical class weighs 0.0037, so >= 0.037).
ZERO_DELTA = 0.01


def sigmoid_scores(delta_decrease: np.ndarray) -> np.ndarray:
    """int64(sigmoid(decrease / 1000) * 100), the artifact's per-node FGD score."""
    d = np.where(np.abs(delta_decrease) < ZERO_DELTA, 0.0, delta_decrease)
    return (1.0 / (1.0 + np.exp(-d / 1000.0)) * MAX_NODE_SCORE).astype(np.int64)


class FGDPolicy:
    """Place each pod where the node's fragmentation grows least (see the module docstring)."""

    name = "fgd"
    supports_gangs = False

    def __init__(self, seed: int = 0, typical: TypicalPods | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.ranking = NodeRanking(self.rng)
        self._counts: dict[PodKey, int] = {}
        self._seen_keys: set[str] = set()
        self._built_at = 0
        self._frozen = typical is not None
        self.typical = typical if typical is not None else typical_pods({})
        self._variants: dict[str, WorkloadClasses] = {}

    def observe(self, req: PodRequest) -> None:
        """Count a pod not seen before (by key) toward the target workload."""
        if self._frozen or req.key in self._seen_keys:
            return
        self._seen_keys.add(req.key)
        k = pod_key(req)
        self._counts[k] = self._counts.get(k, 0) + 1

    def _refresh(self) -> None:
        seen = len(self._seen_keys)
        if seen and seen >= 2 * self._built_at:
            self._set_typical(typical_pods(self._counts))
            self._built_at = seen

    def _set_typical(self, typical: TypicalPods) -> None:
        self.typical = typical
        self._variants = {}

    def place(self, req: PodRequest, snap: Snapshot) -> Assignment | None:
        """Node and GPUs for one pod, or None when no node fits."""
        if not self._frozen:
            self._refresh()
        idx = np.flatnonzero(artifact_feasible(req, snap))
        if len(idx) == 0:
            return None
        if self.typical.n == 0:
            node = self.ranking.pick(snap, idx, np.zeros(len(idx), dtype=np.int64))
            return self._assign(req, snap, node, None)
        if not req.is_share:
            inc = self._increase(snap, idx, None, req)
            return self._assign(req, snap, self.ranking.pick(snap, idx, sigmoid_scores(-inc)), None)
        # A share is tried on each GPU that fits; GPUs of a node with equal free are alike.
        free = snap.milli_free[idx]
        fits = gpu_fits(req, snap)[idx]
        g = free.shape[1]
        earlier = np.triu(np.ones((g, g), dtype=bool), 1)  # [a, b]: a < b
        dup = ((free[:, :, None] == free[:, None, :]) & fits[:, :, None]
               & earlier[None, :, :]).any(axis=1)
        rows, gpus = np.nonzero(fits & ~dup)
        cand = sigmoid_scores(-self._increase(snap, idx[rows], gpus, req))
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        node_scores = np.maximum.reduceat(cand, starts)
        node = self.ranking.pick(snap, idx[rows[starts]], node_scores)
        r = int(np.searchsorted(idx, node))
        mine = rows == r
        best = int(cand[mine].max())
        gpu = int(gpus[mine][cand[mine] == best].min())
        return self._assign(req, snap, node, gpu)

    def _increase(self, snap: Snapshot, nodes: np.ndarray, gpus: np.ndarray | None,
                  req: PodRequest) -> np.ndarray:
        """Fragmentation increase on each of `nodes` from placing `req` there (a share on GPU
        `gpus[i]`), computed by scheduler.policy.fragmentation."""
        tp = self.typical
        if not tp.restricted:
            if gpus is None:
                return frag_delta_whole(snap, nodes, gpu_number(req), req.cpu_milli, tp.classes)
            # frag_delta_share takes one GPU per node: one call per candidate rank.
            out = np.zeros(len(nodes))
            rank = np.zeros(len(nodes), dtype=np.int64)
            if len(nodes) > 1:
                same = np.r_[False, nodes[1:] == nodes[:-1]]
                run_start = np.maximum.accumulate(np.where(same, 0, np.arange(len(nodes))))
                rank = np.arange(len(nodes)) - run_start
            for r in range(int(rank.max()) + 1 if len(nodes) else 0):
                sel = rank == r
                out[sel] = frag_delta_share(snap, nodes[sel], snap.milli_free[nodes[sel],
                                            gpus[sel]], req.gpu_milli, req.cpu_milli, tp.classes)
            return out
        # Model-restricted classes differ per node model, and the cached statistics hold one
        # class set: evaluate each model's nodes before and after with node_fragmentation.
        before = snap.milli_free[nodes].astype(np.int64)
        after = before.copy()
        if gpus is None:
            free = after == MILLI_PER_GPU
            after[free & (np.cumsum(free, axis=1) <= gpu_number(req))] = 0
        else:
            after[np.arange(len(nodes)), gpus] -= req.gpu_milli
        cpu = snap.cpu_free[nodes]
        out = np.zeros(len(nodes))
        model_of = snap.model_id[nodes]
        for mid in np.unique(model_of).tolist():
            sel = model_of == mid
            cls = self._variant(snap.models[mid] if mid >= 0 else "")
            out[sel] = (node_fragmentation(after[sel], cpu[sel] - req.cpu_milli, cls)
                        - node_fragmentation(before[sel], cpu[sel], cls))
        return out

    def _variant(self, model: str) -> WorkloadClasses:
        if model not in self._variants:
            self._variants[model] = self.typical.for_model(model)
        return self._variants[model]

    def _assign(self, req: PodRequest, snap: Snapshot, node: int, gpu: int | None) -> Assignment:
        if req.is_share:
            return assignment(req, snap, node, (int(gpu),) if gpu is not None
                              else (self._first_fit(req, snap, node),))
        if req.wants_gpu:
            return assignment(req, snap, node, exclusive_gpus(snap, node, req.gpus))
        return assignment(req, snap, node, artifact_gpus(req, snap, node, -1))

    @staticmethod
    def _first_fit(req: PodRequest, snap: Snapshot, node: int) -> int:
        return int(np.flatnonzero(gpu_fits(req, snap)[node])[0])

    def place_gang(self, members: Sequence[PodRequest], snap: Snapshot) -> list[Assignment] | None:
        """The artifact schedules pods one by one: never places a gang whole."""
        return None
