"""What a replay does with a policy's answer: check it against the request, then hold it on
the simulated cluster (`Snapshot`, which refuses any over-commit).

A policy over time-sliced GPUs (`gpu_replicas` R > 1) answers with one entry per replica;
its assignment is held as one share per physical GPU (`replica_parts`).
"""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.gang import release_gang, reserve_gang
from scheduler.policy.gpu_models import accepts
from scheduler.policy.interface import PlacementPolicy
from scheduler.policy.snapshot import AllocationError, Snapshot


class ReplayError(RuntimeError):
    """A policy answered with an assignment that does not match the request or over-commits."""


def gpu_replicas(policy: PlacementPolicy) -> int:
    """R for a policy over time-sliced GPUs (each GPU advertised as R replicas), else 1."""
    return int(getattr(policy, "gpu_replicas", 1))


def check_assignment(req: PodRequest, a: Assignment, snap: Snapshot, policy: str,
                     replicas: int = 1) -> None:
    """Raise ReplayError unless `a` gives `req` exactly what it asked for on an allowed model.

    With `replicas` > 1 (time-sliced GPUs) `a.gpus` lists the physical GPU of each replica
    (repeats allowed) and `a.gpu_milli` is one replica, 1000 / replicas.
    """
    problems: list[str] = []
    if a.pod != req.key:
        problems.append(f"pod {a.pod!r} instead of {req.key!r}")
    if a.cpu_milli != req.cpu_milli or a.memory_mib != req.memory_mib:
        problems.append(f"cpu/memory {a.cpu_milli}/{a.memory_mib} instead of "
                        f"{req.cpu_milli}/{req.memory_mib}")
    if replicas > 1:
        want = req.gpus if req.gpus else (1 if req.gpu_milli else 0)
        if len(a.gpus) != want or (want and a.gpu_milli != MILLI_PER_GPU // replicas):
            problems.append(f"replicas on GPUs {a.gpus} x {a.gpu_milli} instead of {want} "
                            f"replicas of {MILLI_PER_GPU // replicas}")
    elif req.is_share:
        # A scheduler without GPU sharing (kube-scheduler's nvidia.com/gpu) gives a share a
        # whole GPU; it then holds, and is counted as holding, all of it.
        if len(a.gpus) != 1 or a.gpu_milli not in (req.gpu_milli, MILLI_PER_GPU):
            problems.append(f"{a.gpu_milli} thousandths on GPUs {a.gpus} instead of "
                            f"{req.gpu_milli} on one GPU")
        if a.gpu_milli != MILLI_PER_GPU and a.gpu_memory_mib != req.gpu_memory_mib:
            problems.append(f"gpu_memory_mib {a.gpu_memory_mib} instead of {req.gpu_memory_mib}")
    elif len(a.gpus) != req.gpus or (req.gpus and a.gpu_milli != MILLI_PER_GPU):
        problems.append(f"GPUs {a.gpus} x {a.gpu_milli} instead of {req.gpus} whole GPUs")
    node = snap.index.get(a.node)
    if node is None:
        problems.append(f"unknown node {a.node!r}")
    elif req.wants_gpu and req.allowed_models:
        model = snap.specs[node].gpu_model
        if not accepts(req.allowed_models, model):
            problems.append(f"node {a.node!r} has {model!r}, allowed: "
                            f"{'|'.join(sorted(req.allowed_models))}")
    if problems:
        raise ReplayError(f"policy {policy!r} answered pod {req.key!r} wrongly: "
                          + "; ".join(problems))


def replica_parts(a: Assignment) -> list[Assignment]:
    """A time-sliced assignment as Snapshot holdings: one share per physical GPU holding its
    replicas (the first, keyed by the pod, carries CPU and memory; the others `<pod>#<gpu>`)."""
    parts: list[Assignment] = []
    for k, g in enumerate(sorted(set(a.gpus))):
        parts.append(Assignment(pod=a.pod if k == 0 else f"{a.pod}#{g}", node=a.node, gpus=(g,),
                                gpu_milli=a.gpu_milli * a.gpus.count(g), gpu_memory_mib=0,
                                cpu_milli=a.cpu_milli if k == 0 else 0,
                                memory_mib=a.memory_mib if k == 0 else 0))
    return parts or [a]


def holdings(assignments: Sequence[Assignment], replicas: int = 1) -> list[Assignment]:
    """The Snapshot holdings of `assignments` (replica_parts when time-sliced)."""
    if replicas > 1:
        return [part for a in assignments for part in replica_parts(a)]
    return list(assignments)


def hold(snap: Snapshot, assignments: Sequence[Assignment], policy: str,
         replicas: int = 1) -> None:
    """Hold all of `assignments` (one pod's, or a gang's) or none, by the policy's gang
    reserve; an over-commit is the policy's fault: ReplayError."""
    try:
        reserve_gang(snap, holdings(assignments, replicas))
    except AllocationError as e:
        pods = ", ".join(repr(a.pod) for a in assignments)
        raise ReplayError(f"policy {policy!r}: assignment of pod {pods} over-commits: {e}") \
            from None


def release(snap: Snapshot, assignments: Sequence[Assignment], replicas: int = 1) -> None:
    """Give back what `hold` took."""
    release_gang(snap, holdings(assignments, replicas))


def held_milli(a: Assignment) -> int:
    """GPU thousandths the assignment holds (replicas count as what they advertise)."""
    return len(a.gpus) * a.gpu_milli
