"""Whether a job of the dynamic replay could fit: cheap necessary conditions that spare the
policy a call, never a placement.

`may_fit` asks it of the cluster as it is now (skip a queued job that cannot fit yet);
`never_fits` of the cluster if it were empty, by the policy's own bounds (gang.max_members,
which agrees with the failure codes no release can change, and gang_admission).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.workloads import Job
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MAX_GANG, MILLI_PER_GPU
from scheduler.policy.gang_admission import gang_admission, max_members
from scheduler.policy.snapshot import Snapshot

Shape = tuple[object, ...]


def shape(p: PodRequest) -> Shape:
    """What of a pod decides where it fits: pods of one shape fit the same nodes."""
    return (p.cpu_milli, p.memory_mib, p.gpus, p.gpu_milli, p.gpu_memory_mib, p.allowed_models)


def _by_shape(pods: Sequence[PodRequest]) -> list[tuple[PodRequest, int]]:
    """One pod of each distinct shape and how many pods have it, in first-seen order."""
    need: dict[Shape, tuple[PodRequest, int]] = {}
    for p in pods:
        k = shape(p)
        need[k] = (p, need.get(k, (p, 0))[1] + 1)
    return list(need.values())


def _room(snap: Snapshot, p: PodRequest, replicas: int = 1) -> np.ndarray:
    """How many pods like p each node could still take, counting each resource on its own
    (an upper bound: a necessary condition, never a placement)."""
    big = np.int64(1 << 40)
    c = snap.cpu_free // p.cpu_milli if p.cpu_milli else np.full(snap.n_nodes, big)
    m = snap.mem_free // p.memory_mib if p.memory_mib else np.full(snap.n_nodes, big)
    r: np.ndarray = np.minimum(c, m)
    if replicas > 1 and p.wants_gpu:
        free = (snap.milli_free // (MILLI_PER_GPU // replicas)).sum(axis=1)
        r = np.minimum(r, free // max(p.gpus, 1))
    elif p.is_share:
        fits = (snap.milli_free >= p.gpu_milli) & (snap.gpu_mem_free >= p.gpu_memory_mib)
        per = np.where(fits, (snap.milli_free // p.gpu_milli), 0).sum(axis=1)
        r = np.minimum(r, per)
    elif p.gpus:
        r = np.minimum(r, np.bitwise_count(snap.free_mask).astype(np.int64) // p.gpus)
    return r


def may_fit(snap: Snapshot, pods: Sequence[PodRequest], replicas: int = 1) -> bool:
    """A necessary condition for placing all `pods` at once: for every distinct pod shape,
    the nodes have room for as many such pods as there are."""
    return all(int(_room(snap, p, replicas).sum()) >= cnt for p, cnt in _by_shape(pods))


def never_fits(snap: Snapshot, job: Job) -> str | None:
    """Why `job` cannot fit even in the empty cluster, or None (necessary conditions only).

    By the policy's own bounds: `max_members` (how many such pods the empty cluster could
    hold: zero exactly when the policy's unresolvable failure codes rule out every node) and,
    for a gang, the extender's `gang_admission`.
    """
    total_gpus = int(snap.gpu_count.sum())
    if sum(p.gpus for p in job.pods) > total_gpus:
        return f"needs {sum(p.gpus for p in job.pods)} GPUs, the cluster has {total_gpus}"
    for p, count in _by_shape(job.pods):
        room = max_members(p, snap)
        if job.is_gang:
            # A job's members all exist at arrival here, so only its size bounds (the cap,
            # the empty cluster) can refuse it.
            why = gang_admission(count, count, room, cap=MAX_GANG)
            if why is not None:
                return f"gang of {len(job.pods)} pods: {why}"
        if room == 0:
            return (f"pod {p.key!r} ({p.gpus or p.gpu_milli / MILLI_PER_GPU:g} GPU, "
                    f"{p.cpu_milli} mCPU, {p.memory_mib} MiB) fits no node")
    return None
