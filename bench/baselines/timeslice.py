"""`default-timeslice`: kube-scheduler's default profile over time-sliced GPUs.

What clusters without a sharing scheduler often run: the NVIDIA device plugin with
`sharing.timeSlicing.resources: [{name: nvidia.com/gpu, replicas: R}]`. Facts this model
follows (NVIDIA k8s-device-plugin README, "Shared Access to GPUs with CUDA Time-Slicing", and
internal/rm/allocate.go):

- Each physical GPU is advertised as R replicas of `nvidia.com/gpu`, so a node with n GPUs has
  n * R allocatable; kube-scheduler counts replicas and knows nothing else about them.
- "Unlike with MIG, there is no memory or fault-isolation between replicas": pods sharing a
  GPU can together ask for more memory (and compute) than the card has.
- A pod asks for replicas: a fractional pod takes one (`nvidia.com/gpu: 1`); a pod of N whole
  GPUs asks for N replicas, and with `failRequestsGreaterThanOne: false` (the default, kept for
  backward compatibility; the README recommends true) the plugin grants them. It does not
  guarantee N distinct GPUs: "requesting more than one shared GPU does not guarantee that you
  will get access to a proportional amount of compute power".
- Which replicas: GetPreferredAllocation for replicated resources runs `distributedAlloc`:
  one replica at a time, the candidate whose physical GPU has the fewest replicas allocated
  (total - available) first (sort.Slice over the candidates in kubelet's order, modelled as a
  seeded random order). So replicas spread over GPUs while free ones exist, and land on the
  same GPU when they do not.

Node choice is exactly `default` (NodeResourcesFit over cpu and memory, LeastAllocated,
BalancedAllocation, percentageOfNodesToScore sampling, random ties; no gangs) with
`nvidia.com/gpu` counted in replicas.

Accounting in the simulator: a replica is 1000 / R thousandths of its GPU (R divides 1000), so
the shared Snapshot tracks replicas exactly and never over-commits; the pod's own demand is
what time-slicing cannot enforce. The policy counts the risks at each placement (`events`):
- `oversubscribed_gpu_pods`: pods placed on a GPU whose pods together ask for more than the
  whole GPU (a share pod's gpu_milli, or a whole GPU per replica of a whole-GPU pod): with no
  memory isolation their memory can exceed the card's, and each runs slower than it asked;
- `colocated_whole_gpu_pods`: pods that asked for whole GPUs and got a replica on a GPU that
  another pod (or another of its own replicas) also uses.
"""

from __future__ import annotations

import numpy as np

from bench.baselines.default import KubeDefaultPolicy, gpus_needed, model_ok
from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.snapshot import Snapshot

DEFAULT_REPLICAS = 4  # the GPU Operator's documented example (time-slicing-config-all: 4)


class TimeSliceDefaultPolicy(KubeDefaultPolicy):
    """kube-scheduler's default profile over GPUs advertised as `replicas` time-sliced copies."""

    def __init__(self, seed: int = 0, *, replicas: int = DEFAULT_REPLICAS,
                 name: str = "default-timeslice") -> None:
        if replicas < 2 or MILLI_PER_GPU % replicas:
            raise ValueError(f"replicas={replicas}: must be >= 2 and divide {MILLI_PER_GPU}")
        super().__init__(seed, name=name)
        self.gpu_replicas = replicas
        self.unit = MILLI_PER_GPU // replicas
        self.events: dict[str, int] = {"oversubscribed_gpu_pods": 0,
                                       "colocated_whole_gpu_pods": 0}
        # (node, gpu) -> {pod: thousandths the pod expects on that GPU}
        self._demand: dict[tuple[int, int], dict[str, int]] = {}

    def free_replicas(self, snap: Snapshot) -> np.ndarray:
        """Free replicas per node and GPU (N x G)."""
        out: np.ndarray = snap.milli_free // self.unit
        return out

    def place(self, req: PodRequest, snap: Snapshot) -> Assignment | None:
        """Filter, sample and score as `default` with replicas as `nvidia.com/gpu`; replicas
        chosen as distributedAlloc does."""
        per_gpu = self.free_replicas(snap)
        free = per_gpu.sum(axis=1)
        need = gpus_needed(req)
        feasible = (snap.cpu_free >= req.cpu_milli) & (snap.mem_free >= req.memory_mib)
        if need:
            feasible &= (free >= need) & model_ok(req, snap)
        node = self.pick_node(req, snap, feasible, free)
        if node is None:
            return None
        gpus: tuple[int, ...] = ()
        if need:
            gpus = self.distributed_alloc(per_gpu[node], int(snap.gpu_count[node]), need)
            self._count_risks(req, snap, node, gpus)
        return Assignment(pod=req.key, node=snap.names[node], gpus=gpus,
                          gpu_milli=self.unit if need else MILLI_PER_GPU,
                          gpu_memory_mib=0, cpu_milli=req.cpu_milli, memory_mib=req.memory_mib)

    def distributed_alloc(self, free: np.ndarray, n_gpus: int, need: int) -> tuple[int, ...]:
        """Physical GPU of each of `need` replicas (repeats allowed), fewest-allocated first."""
        cands = [g for g in range(n_gpus) for _ in range(int(free[g]))]
        order = [cands[i] for i in self.rng.permutation(len(cands))]
        allocated = {g: self.gpu_replicas - int(free[g]) for g in range(n_gpus)}
        out: list[int] = []
        for _ in range(need):
            order.sort(key=lambda g: allocated[g])  # stable: kubelet order among ties
            g = order.pop(0)
            allocated[g] += 1
            out.append(g)
        return tuple(sorted(out))

    def _count_risks(self, req: PodRequest, snap: Snapshot, node: int,
                     gpus: tuple[int, ...]) -> None:
        whole = not req.is_share
        colocated = whole and len(set(gpus)) < len(gpus)
        over = False
        for g in set(gpus):
            pods = self._demand.setdefault((node, g), {})
            for p in [p for p in pods if p not in snap.holdings]:
                del pods[p]  # finished since (dynamic replay): the policy sees no releases
            if whole and pods:
                colocated = True
            mine = req.gpu_milli if req.is_share else MILLI_PER_GPU * gpus.count(g)
            pods[req.key] = mine
            if sum(pods.values()) > MILLI_PER_GPU:
                over = True
        self.events["oversubscribed_gpu_pods"] += int(over)
        self.events["colocated_whole_gpu_pods"] += int(colocated)
