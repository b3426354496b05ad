"""FGD's typical pods: the target workload its fragmentation measure is taken against.

pkg/utils/frag.go GetTypicalPods of the artifact (hkust-adsl/kubernetes-scheduler-simulator)
with the experiments' settings from scripts/generate_config_and_run.py (isInvolvedCpuPods true,
popularity 95 %, step 1, gpuResWeight 0): pods are counted by their exact (CPU milli, GPU milli
per GPU, GPU count, GPU model list); the most frequent, in decreasing count, until they cover
95 % of all pods; weights are their counts renormalised to 1. CPU-only pods are part of it.

The FGD baseline scores with these classes and the simulator's fragmentation metric
(bench.metrics) measures with them: one rule for both. Two cases WorkloadClasses has no field
for are encoded so that scheduler.policy.fragmentation yields "all free thousandths": a CPU-only
class needs more GPUs than any node has (the policy's CPU_ONLY_GPUS), and on a node of another
model a class restricted to GPU models is given the same impossible need (`for_model`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from bench.baselines.fgd_artifact import gpu_number, per_gpu_milli
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.gpu_models import accepts
from scheduler.policy.typical_workload import CPU_ONLY_GPUS, WorkloadClasses

POPULARITY_PERCENT = 95.0  # DefaultTypicalPodPopularityThreshold is 60; the experiments use 95
DEFAULT_MILLI_CPU_REQUEST = 100  # GetPodResource counts CPU through GetNonzeroRequests

PodKey = tuple[int, int, int, str]


def pod_key(req: PodRequest) -> PodKey:
    """The artifact's PodResource: (CPU milli, GPU milli per GPU, GPU count, GPU model list)."""
    cpu = req.cpu_milli or DEFAULT_MILLI_CPU_REQUEST
    return (cpu, per_gpu_milli(req), gpu_number(req), "|".join(sorted(req.allowed_models)))


@dataclass(frozen=True, slots=True, eq=False)
class TypicalPods:
    """FGD's target workload: classes for the fragmentation formula, plus what
    WorkloadClasses lacks.

    A CPU-only class sits in `classes` as a pod needing CPU_ONLY_GPUS whole GPUs, more than any
    node has, so that no node "can host" it and all free GPU capacity counts (`cpu_only` marks
    it); `models` are the GPU models a class accepts (empty: any).
    """

    keys: tuple[PodKey, ...]
    classes: WorkloadClasses
    cpu_only: np.ndarray
    models: tuple[frozenset[str], ...]

    @property
    def n(self) -> int:
        """Number of classes."""
        return len(self.keys)

    @property
    def restricted(self) -> bool:
        """True when some class accepts only some GPU models."""
        return any(self.models)

    def for_model(self, model: str) -> WorkloadClasses:
        """The classes as nodes of GPU `model` see them: a class restricted to other models
        can use none of their GPUs, like a CPU-only class."""
        blocked = [not accepts(m, model) for m in self.models]
        if not any(blocked):
            return self.classes
        c = self.classes
        return WorkloadClasses(gpus=np.where(blocked, CPU_ONLY_GPUS, c.gpus), milli=c.milli,
                          cpu=c.cpu, weight=c.weight)


def typical_pods(counts: dict[PodKey, int], popularity: float = POPULARITY_PERCENT) -> TypicalPods:
    """GetTypicalPods: the most frequent pod shapes covering `popularity` percent of all pods."""
    total = float(sum(counts.values()))
    # sort.Reverse over (count, then PodResource.Less on cpu, milli, count, model): descending.
    ordered = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    expected = popularity * total / 100.0
    chosen: list[tuple[PodKey, int]] = []
    cum = 0.0
    for key, n in ordered:
        if cum >= expected:
            break
        chosen.append((key, n))
        cum += n
    rows: list[tuple[int, int, int, float]] = []
    cpu_only: list[bool] = []
    models: list[frozenset[str]] = []
    for (cpu, milli, gpus, spec), n in chosen:
        gpu_pod = gpus > 0 and milli > 0
        rows.append((gpus if gpu_pod else CPU_ONLY_GPUS, milli if gpu_pod else MILLI_PER_GPU, cpu,
                     n / cum if cum else 0.0))
        cpu_only.append(not gpu_pod)
        models.append(frozenset(m for m in spec.split("|") if m))
    return TypicalPods(
        keys=tuple(k for k, _ in chosen),
        classes=WorkloadClasses.of(rows) if rows else WorkloadClasses.of([]),
        cpu_only=np.array(cpu_only, dtype=bool),
        models=tuple(models),
    )


def typical_pods_of(pods: Iterable[PodRequest],
                    popularity: float = POPULARITY_PERCENT) -> TypicalPods:
    """The typical pods of a workload (the artifact: of the trace's original pods)."""
    counts: dict[PodKey, int] = {}
    for p in pods:
        k = pod_key(p)
        counts[k] = counts.get(k, 0) + 1
    return typical_pods(counts, popularity)
