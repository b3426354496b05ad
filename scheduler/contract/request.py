"""A pod's request as the core sees it: parsed and validated once, at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.contract.units import (
    MAX_CPU_MILLI,
    MAX_GANG,
    MAX_GPUS_PER_POD,
    MAX_MEMORY_MIB,
    MILLI_PER_GPU,
)


class RequestError(ValueError):
    """An invalid pod request; `field` and `value` name what is wrong."""

    def __init__(self, field: str, value: object, message: str) -> None:
        super().__init__(f"{field}={value!r}: {message}")
        self.field = field
        self.value = value


@dataclass(frozen=True, slots=True)
class GangRef:
    """Membership of a gang (PodGroup): its key (`namespace/name`) and minimum member count."""

    key: str
    min_member: int

    def __post_init__(self) -> None:
        if not self.key:
            raise RequestError("gang.key", self.key, "must not be empty")
        if not 1 <= self.min_member <= MAX_GANG:
            raise RequestError("gang.min_member", self.min_member, f"must be 1..{MAX_GANG}")


@dataclass(frozen=True, slots=True)
class PodRequest:
    """What one pod needs: CPU, memory, and either whole GPUs or a share of one GPU.

    `gpu_milli` is a share of one GPU in thousandths (1..999), `gpu_memory_mib` the memory of
    that GPU it needs; `allowed_models` empty means any model.
    """

    key: str
    cpu_milli: int = 0
    memory_mib: int = 0
    gpus: int = 0
    gpu_milli: int = 0
    gpu_memory_mib: int = 0
    allowed_models: frozenset[str] = field(default_factory=frozenset)
    gang: GangRef | None = None
    uid: str = ""
    priority: int = 0

    def __post_init__(self) -> None:
        for name, value, hi in (
            ("cpu_milli", self.cpu_milli, MAX_CPU_MILLI),
            ("memory_mib", self.memory_mib, MAX_MEMORY_MIB),
            ("gpus", self.gpus, MAX_GPUS_PER_POD),
            ("gpu_milli", self.gpu_milli, MILLI_PER_GPU - 1),
            ("gpu_memory_mib", self.gpu_memory_mib, MAX_MEMORY_MIB),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise RequestError(name, value, "must be an integer")
            if value < 0:
                raise RequestError(name, value, "must not be negative")
            if value > hi:
                raise RequestError(name, value, f"must be at most {hi}")
        if self.gpus and self.gpu_milli:
            raise RequestError(
                "gpu_milli", self.gpu_milli, f"a share cannot be combined with gpus={self.gpus}"
            )
        if self.gpu_memory_mib and not self.gpu_milli:
            raise RequestError(
                "gpu_memory_mib", self.gpu_memory_mib, "GPU memory needs a share (gpu_milli)"
            )

    @property
    def wants_gpu(self) -> bool:
        """True if the pod asks for whole GPUs or a share."""
        return self.gpus > 0 or self.gpu_milli > 0

    @property
    def is_share(self) -> bool:
        """True for a fractional request (a share of one GPU)."""
        return self.gpu_milli > 0

    @property
    def gpu_demand_milli(self) -> int:
        """GPU demand in thousandths: 1000 per whole GPU, or the share."""
        return self.gpus * MILLI_PER_GPU + self.gpu_milli
