"""What one pod holds on one node: the scheduler decides it, the cache counts it, the
annotations carry it, the node agent honours it."""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.contract.units import MILLI_PER_GPU


@dataclass(frozen=True, slots=True)
class Assignment:
    """What one pod holds on one node.

    `gpu_milli` is held on each GPU in `gpus`: 1000 for whole GPUs, 1..999 for a share.
    `gpu_memory_mib` is held on each GPU for a share; whole GPUs hold all their memory.
    """

    pod: str
    node: str
    gpus: tuple[int, ...] = ()
    gpu_milli: int = MILLI_PER_GPU
    gpu_memory_mib: int = 0
    cpu_milli: int = 0
    memory_mib: int = 0

    @property
    def is_share(self) -> bool:
        """True when the pod holds a share of one GPU."""
        return 0 < self.gpu_milli < MILLI_PER_GPU
