"""FGD's typical workload ("typical pods"): a decayed histogram of recent requests by class.

A class is (GPUs, thousandths per GPU, CPU milli or CPU size bucket); its CPU is the decayed
mean of the requests seen in it; CPU-only pods form classes of their own (TypicalWorkload.cpu_only).
Before any request is seen the prior is the Alibaba openb trace's workload.
Pure: `observe` updates counts with a per-request decay; there is no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU

# GPU pods of ../shared/traces/alibaba-gpu-v2023/openb_pod_list_default.csv (7,064 of 8,152;
# CPU-only pods are left out, as FGD's typical pods leave them out): (GPUs, thousandths per GPU,
# mean CPU milli of the class, pods). The 30 largest classes, 99.1% of GPU pods.
ALIBABA_PRIOR: tuple[tuple[int, int, int, int], ...] = (
    (1, 1000, 11989, 2707), (1, 810, 3152, 1047), (1, 1000, 3366, 629), (1, 470, 11908, 388),
    (1, 1000, 19780, 368), (1, 470, 8000, 360), (1, 650, 11908, 237), (1, 320, 4000, 232),
    (1, 1000, 7837, 184), (1, 460, 6033, 122), (1, 230, 4000, 122), (1, 590, 3152, 75),
    (1, 320, 7946, 74), (1, 550, 4152, 72), (1, 160, 4000, 54), (1, 370, 4152, 45),
    (1, 220, 4000, 43), (8, 1000, 81463, 41), (1, 810, 4152, 31), (1, 320, 1000, 22),
    (1, 160, 6000, 20), (1, 220, 8000, 19), (1, 110, 4000, 18), (1, 480, 4000, 18),
    (1, 230, 8000, 18), (1, 1000, 1000, 15), (1, 650, 8000, 12), (2, 1000, 19900, 12),
    (4, 1000, 39200, 12), (1, 1000, 2000, 8),
)  # fmt: skip

ClassKey = tuple[int, int, int]

# A CPU-only pod as a class: it needs more GPUs than a snapshot node can have (at most 63), so
# no node "can host" it and the fragmentation formula counts all free GPU capacity for it.
CPU_ONLY_GPUS = 64


@dataclass(frozen=True, slots=True, eq=False)
class WorkloadClasses:
    """The typical workload as aligned arrays over classes: what the fragmentation measure consumes.

    `milli` is the share of each GPU a pod of the class needs (1000 for whole GPUs), `gpus` how
    many such GPUs, `cpu` its CPU milli, `weight` its frequency (sums to 1).
    """

    gpus: np.ndarray
    milli: np.ndarray
    cpu: np.ndarray
    weight: np.ndarray
    weight32: np.ndarray = field(init=False, repr=False)
    milli16: np.ndarray = field(init=False, repr=False)
    # weight32.sum(), which every fragmentation evaluation needs (summed once here).
    weight32_sum: np.float32 = field(init=False, repr=False)
    # CPU milli per GPU thousandth of the GPU classes, weighted by their demand (0 without
    # any): what a typical pod needs of a node's CPU to use its free GPU (policy.stranding).
    cpu_per_milli: float = field(init=False, repr=False)
    # Derived per-share lookup tables, built on first use: scheduler.policy.shares under the
    # share's thousandths, scheduler.policy.share_patterns under minus them.
    memo: dict[int, tuple[np.ndarray, float]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight32", np.asarray(self.weight, dtype=np.float32))
        object.__setattr__(self, "milli16", np.asarray(self.milli, dtype=np.int16))
        object.__setattr__(self, "weight32_sum", self.weight32.sum())
        object.__setattr__(self, "memo", {})
        gpu = np.asarray(self.gpus) < CPU_ONLY_GPUS
        demand = float((np.asarray(self.gpus) * self.milli * self.weight)[gpu].sum())
        cpu = float((np.asarray(self.cpu) * self.weight)[gpu].sum())
        object.__setattr__(self, "cpu_per_milli", cpu / demand if demand > 0 else 0.0)
        n = len(self.weight)
        for name in ("gpus", "milli", "cpu"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"WorkloadClasses.{name}: {len(getattr(self, name))} for {n} classes")
        if n and ((self.milli < 1).any() or (self.milli > MILLI_PER_GPU).any()):
            raise ValueError(f"WorkloadClasses.milli: outside 1..1000: {self.milli.tolist()}")
        if n and (self.gpus < 1).any():
            raise ValueError(f"WorkloadClasses.gpus: below 1: {self.gpus.tolist()}")

    @staticmethod
    def of(rows: list[tuple[int, int, int, float]]) -> WorkloadClasses:
        """Classes from (gpus, milli per GPU, cpu milli, weight) rows; weights are normalised."""
        arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
        w = arr[:, 3]
        total = w.sum()
        return WorkloadClasses(
            gpus=arr[:, 0].astype(np.int64),
            milli=arr[:, 1].astype(np.int64),
            cpu=arr[:, 2].astype(np.int64),
            weight=w / total if total > 0 else w,
        )

    @property
    def n(self) -> int:
        """Number of classes."""
        return len(self.weight)


def cpu_bucket(cpu_milli: int) -> int:
    """Power-of-two CPU size bucket: <=1 core -> 0, <=2 -> 1, <=4 -> 2, ..."""
    return 0 if cpu_milli <= 1000 else math.ceil(math.log2(cpu_milli / 1000))


class TypicalWorkload:
    """Decayed histogram of recent GPU requests by class, with a prior.

    Each observation weighs 1/decay times the previous one (so after n more requests an old one
    counts decay**n); the prior starts with `prior_weight` observations' worth of mass.
    Only the `max_classes` heaviest classes are reported, like FGD's popularity cut.
    `gpu_weight` weighs whole-GPU classes by 1 + gpu_weight * GPUs (FGD's GpuResWeight; 0 =
    by pod count, as FGD's experiments do).

    The defaults follow FGD's typical pods (its experiments' settings), which measured best:
    CPU-only pods are a class (`cpu_only`; no node can host them, so every free GPU counts as
    fragment for them: FGD's isInvolvedCpuPods), CPU is the exact request, not a power-of-two
    bucket (`exact_cpu`), and the decay is slow (half-life ~7,000 requests). On the Alibaba
    trace (1,213 GPU nodes, fill, 10 seeds, unallocated % at 100%): 4.67 with all three; 5.03
    without CPU-only classes; 5.91 with CPU buckets; 4.70 with no decay; 4.87 with decay 0.999.
    `coverage` keeps only the heaviest classes covering that share of the weight (FGD's
    popularity cut; 1.0 = just `max_classes`).
    """

    def __init__(
        self,
        decay: float = 0.9999,
        prior: tuple[tuple[int, int, int, int], ...] = ALIBABA_PRIOR,
        prior_weight: float = 500.0,
        milli_grid: int = 10,
        max_classes: int = 32,
        refresh_every: int = 256,
        gpu_weight: float = 0.0,
        cpu_only: bool = True,
        exact_cpu: bool = True,
        coverage: float = 1.0,
    ) -> None:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"TypicalWorkload.decay={decay!r}: must be in (0, 1]")
        if prior_weight < 0:
            raise ValueError(f"TypicalWorkload.prior_weight={prior_weight!r}: must be >= 0")
        if not (1 <= milli_grid <= MILLI_PER_GPU and MILLI_PER_GPU % milli_grid == 0):
            raise ValueError(f"TypicalWorkload.milli_grid={milli_grid!r}: must divide 1000")
        if max_classes < 1:
            raise ValueError(f"TypicalWorkload.max_classes={max_classes!r}: must be >= 1")
        if refresh_every < 1:
            raise ValueError(f"TypicalWorkload.refresh_every={refresh_every!r}: must be >= 1")
        if gpu_weight < 0:
            raise ValueError(f"TypicalWorkload.gpu_weight={gpu_weight!r}: must be >= 0")
        if not 0.0 < coverage <= 1.0:
            raise ValueError(f"TypicalWorkload.coverage={coverage!r}: must be in (0, 1]")
        self.cpu_only = cpu_only
        self.exact_cpu = exact_cpu
        self.coverage = coverage
        self.decay = decay
        self.refresh_every = refresh_every
        self.gpu_weight = gpu_weight
        self._built_at = 0
        self.milli_grid = milli_grid
        self.max_classes = max_classes
        self._count: dict[ClassKey, float] = {}
        self._cpu_sum: dict[ClassKey, float] = {}
        self._inc = 1.0
        self._cached: WorkloadClasses | None = None
        self.version = 0
        total = float(sum(r[3] for r in prior))
        for gpus, milli, cpu, n in prior:
            if total <= 0:
                break
            w = prior_weight * n / total
            key = self.key(gpus, milli, cpu)
            self._count[key] = self._count.get(key, 0.0) + w
            self._cpu_sum[key] = self._cpu_sum.get(key, 0.0) + w * cpu

    def key(self, gpus: int, milli: int, cpu_milli: int) -> ClassKey:
        """Class of a request: shares rounded up to the grid, CPU exact or by power-of-two
        bucket; a CPU-only request is a class of CPU_ONLY_GPUS whole GPUs."""
        g = self.milli_grid
        m = MILLI_PER_GPU if milli >= MILLI_PER_GPU else max(g, -(-milli // g) * g)
        return (gpus, m, cpu_milli if self.exact_cpu else cpu_bucket(cpu_milli))

    def observe(self, req: PodRequest) -> None:
        """Count one arrived request (CPU-only pods only with `cpu_only`)."""
        if not req.wants_gpu:
            if not self.cpu_only:
                return
            key = self.key(CPU_ONLY_GPUS, MILLI_PER_GPU, req.cpu_milli)
        elif req.is_share:
            key = self.key(1, req.gpu_milli, req.cpu_milli)
        else:
            key = self.key(req.gpus, MILLI_PER_GPU, req.cpu_milli)
        self._inc /= self.decay
        if self._inc > 1e100:
            # Rescale everything so the growing increment never overflows.
            s = 1.0 / self._inc
            self._count = {k: v * s for k, v in self._count.items()}
            self._cpu_sum = {k: v * s for k, v in self._cpu_sum.items()}
            self._inc = 1.0
        self._count[key] = self._count.get(key, 0.0) + self._inc
        self._cpu_sum[key] = self._cpu_sum.get(key, 0.0) + self._inc * req.cpu_milli
        self.version += 1

    def classes(self) -> WorkloadClasses:
        """The heaviest classes as arrays, weights normalised to 1, in class-key order.

        Rebuilt once per `refresh_every` observations, not on each: over so few requests a
        decayed histogram barely moves, and a stable object lets the fragmentation statistics
        cached per snapshot stay valid (they are keyed on it).
        """
        if self._cached is None or self.version - self._built_at >= self.refresh_every:
            self._built_at = self.version
            items = sorted(self._count.items(), key=lambda kv: (-kv[1], kv[0]))
            items = items[: self.max_classes]
            if self.coverage < 1.0:
                total = sum(w for _, w in items)
                cut, cum = 0, 0.0
                while cut < len(items) and cum < self.coverage * total:
                    cum += items[cut][1]
                    cut += 1
                items = items[:cut]
            items = sorted(kv for kv in items if kv[1] > 0)
            rows: list[tuple[int, int, int, float]] = [
                (k[0], k[1], round(self._cpu_sum[k] / w),
                 w * (1.0 + self.gpu_weight * k[0] if k[1] == MILLI_PER_GPU else 1.0))
                for k, w in items
            ]
            self._cached = WorkloadClasses.of(rows)
        return self._cached
