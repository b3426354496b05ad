"""The FGD artifact's scheduling frame, shared by its baselines (random, bestfit, fgd).

hkust-adsl/kubernetes-scheduler-simulator runs kube-scheduler with percentageOfNodesToScore 100,
the default filters (NodeResourcesFit: CPU and memory requests) plus its Open-Gpu-Share filter,
one score plugin, and among the top-scoring nodes the first in a per-run random node order
(NodeRanking).

Open-Gpu-Share (pkg/simulator/plugin/open_gpu_share.go, Filter ->
pkg/type/open-gpu-share/cache/gpunodeinfo.go AllocateGpuId): a pod asking for `n` GPUs with
`m` thousandths each (m = 1000 for whole GPUs, n = 1 for a share) fits a node of an accepted
model (pkg/utils/utils.go IsNodeAccessibleToPodByType) that has at least `n` GPUs with `m` or
more thousandths free; GPU memory is not checked there (it is here when a share asks for some,
since the snapshot holds it). CPU-only pods pass this filter.

Which GPUs a pod gets (open_gpu_share.go allocateGpuIdBasedOn*, pkg/type/resource.go
AllocateExclusiveGpuId): whole GPUs are always the lowest-indexed wholly free ones; a share goes
to the tightest GPU that fits (BestFit, "best"), a uniformly random one that fits ("random"), or
the one the FGD score prefers (fgd.py).
"""

from __future__ import annotations

import numpy as np

from bench.baselines.default import model_ok
from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.snapshot import Snapshot


def per_gpu_milli(req: PodRequest) -> int:
    """Thousandths the pod needs on each of its GPUs (0 for a CPU-only pod)."""
    return req.gpu_milli if req.is_share else (MILLI_PER_GPU if req.gpus else 0)


def gpu_number(req: PodRequest) -> int:
    """GPUs the pod occupies (1 for a share)."""
    return 1 if req.is_share else req.gpus


def gpu_fits(req: PodRequest, snap: Snapshot) -> np.ndarray:
    """nodes x GPUs: which GPUs could take (their part of) the pod."""
    ok = snap.milli_free >= per_gpu_milli(req)
    if req.is_share and req.gpu_memory_mib:
        ok &= snap.gpu_mem_free >= req.gpu_memory_mib
    return ok


def artifact_feasible(req: PodRequest, snap: Snapshot) -> np.ndarray:
    """NodeResourcesFit (CPU, memory) and Open-Gpu-Share's filter, per node."""
    ok = (snap.cpu_free >= req.cpu_milli) & (snap.mem_free >= req.memory_mib)
    if req.wants_gpu:
        if req.is_share:
            cnt = gpu_fits(req, snap).sum(axis=1)
        else:
            cnt = np.bitwise_count(snap.free_mask).astype(np.int64)
        ok &= (cnt >= gpu_number(req)) & model_ok(req, snap)
    return ok


def exclusive_gpus(snap: Snapshot, node: int, n: int) -> tuple[int, ...]:
    """AllocateExclusiveGpuId: the `n` lowest-indexed wholly free GPUs."""
    mask = int(snap.free_mask[node])
    out = [g for g in range(int(snap.gpu_count[node])) if mask >> g & 1][:n]
    return tuple(out)


def best_fit_gpu(req: PodRequest, snap: Snapshot, node: int) -> int:
    """allocateGpuIdBasedOnBestFit for a share: the fitting GPU with least free (lowest index)."""
    fits = gpu_fits(req, snap)[node]
    free = np.where(fits, snap.milli_free[node], MILLI_PER_GPU + 1)
    return int(np.argmin(free))


def random_gpu(req: PodRequest, snap: Snapshot, node: int, rng: np.random.Generator) -> int:
    """allocateGpuIdBasedOnRandomFit for a share: a uniformly random fitting GPU."""
    cand = np.flatnonzero(gpu_fits(req, snap)[node])
    return int(cand[rng.integers(len(cand))])


class NodeRanking:
    """The artifact's tie-break among top-scoring nodes: a fixed per-seed node order.

    The artifact builds kube-scheduler from a fork, github.com/mental2008/kubernetes
    v1.20.5-minor (go.mod replace), whose selectHost (pkg/scheduler/core/generic_scheduler.go)
    keeps "the smallest lexicographical order if the score remains the same", and
    syncClusterResourceList (pkg/simulator/simulator.go) prefixes the name-sorted nodes with
    "%04d-" of a seeded rand.Perm. So ties always go to the node ranked first in one random
    permutation drawn per run, which packs pods onto the same nodes instead of spreading them.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._rank: tuple[int, np.ndarray] | None = None

    def rank(self, snap: Snapshot) -> np.ndarray:
        """Each node's position in the run's permutation (drawn on first use)."""
        if self._rank is None or self._rank[0] != snap.n_nodes:
            by_name = np.argsort(np.array(snap.names, dtype=object), kind="stable")
            rank = np.empty(snap.n_nodes, dtype=np.int64)
            rank[by_name] = self.rng.permutation(snap.n_nodes)
            self._rank = (snap.n_nodes, rank)
        return self._rank[1]

    def pick(self, snap: Snapshot, nodes: np.ndarray, scores: np.ndarray) -> int:
        """The top-scoring node that comes first in the permutation."""
        top = nodes[scores == scores.max()]
        if len(top) == 1:
            return int(top[0])
        return int(top[np.argmin(self.rank(snap)[top])])


def assignment(req: PodRequest, snap: Snapshot, node: int, gpus: tuple[int, ...]) -> Assignment:
    """The Assignment of `req` on `node` holding `gpus` (a share holds its milli on one GPU)."""
    return Assignment(
        pod=req.key, node=snap.names[node], gpus=gpus,
        gpu_milli=req.gpu_milli if req.is_share else MILLI_PER_GPU,
        gpu_memory_mib=req.gpu_memory_mib if req.is_share else 0,
        cpu_milli=req.cpu_milli, memory_mib=req.memory_mib,
    )


def artifact_gpus(req: PodRequest, snap: Snapshot, node: int, share_gpu: int) -> tuple[int, ...]:
    """GPUs for `req` on `node`: lowest free ones for whole GPUs, `share_gpu` for a share."""
    if not req.wants_gpu:
        return ()
    if req.is_share:
        return (share_gpu,)
    return exclusive_gpus(snap, node, req.gpus)
