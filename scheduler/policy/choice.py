"""What a score assumed on each node (the GPU set or the GPU of a share), and the Assignment
it stands for: bind gives a pod exactly the GPUs its winning score was computed on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.snapshot import AllocationError, Snapshot
from topology.tables import greedy_best_set


@dataclass(frozen=True, slots=True, eq=False)
class Choice:
    """What the score assumed on each node: the GPU mask (whole GPUs) or GPU (share)."""

    sets: np.ndarray
    share_gpu: np.ndarray


def _mask_gpus(mask: int) -> tuple[int, ...]:
    return tuple(i for i in range(mask.bit_length()) if mask >> i & 1)


def assignment_for(
    req: PodRequest, snap: Snapshot, node: int, choice: Choice, j: int
) -> Assignment:
    """The Assignment a choice (as evaluate made it, entry j) stands for on `node`."""
    name = snap.names[node]
    gpus: tuple[int, ...] = ()
    milli, gmem = MILLI_PER_GPU, 0
    if req.gpus:
        tables = snap.tables_of(node)
        if tables is None:
            free = [g for g in range(int(snap.gpu_count[node]))
                    if int(snap.free_mask[node]) >> g & 1]
            got = greedy_best_set(snap.topology_of(node).bandwidth(), free, req.gpus)
            if got is None:
                raise AllocationError(f"node {name!r}: needs {req.gpus} free GPUs")
            gpus = tuple(got)
        else:
            gpus = _mask_gpus(int(choice.sets[j]))
    elif req.is_share:
        g = int(choice.share_gpu[j])
        if g < 0:
            raise AllocationError(f"node {name!r}: no GPU has room for the share")
        gpus, milli, gmem = (g,), req.gpu_milli, req.gpu_memory_mib
    return Assignment(pod=req.key, node=name, gpus=gpus, gpu_milli=milli, gpu_memory_mib=gmem,
                      cpu_milli=req.cpu_milli, memory_mib=req.memory_mib)
