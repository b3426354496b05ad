"""GPU capacity stranded by CPU: free GPU thousandths a node's remaining CPU cannot feed.

The typical workload asks for kappa CPU milli per GPU thousandth (WorkloadClasses.cpu_per_milli,
its demand-weighted mean). A node with `total` thousandths free and `cpu` CPU milli free can
feed at most cpu / kappa of them, so max(0, total - cpu / kappa) of its free GPU capacity is
stranded for typical pods. FGD's measure sees that loss only class by class, once a class's
CPU no longer fits; this term sees it coming (CPU eaten by share and CPU-only pods on nodes
that still have GPUs free) and is linear, so it survives the frag_step rounding. Pure,
vectorised over nodes.
"""

from __future__ import annotations

import numpy as np


def stranded_delta(
    total_free: np.ndarray, cpu_free: np.ndarray, taken_milli: int, cpu: int, kappa: float,
) -> np.ndarray:
    """Increase of stranded GPU thousandths per node when a pod takes `taken_milli` of GPU
    and `cpu` CPU milli (arrays aligned over the nodes; 0 everywhere when kappa is 0).

    Only increases count (a decrease is 0): taking GPUs from a node whose CPU is short does
    not earn a bonus, which would otherwise spread multi-GPU pods and gangs over fresh nodes
    instead of packing them (the FGD and topology terms decide those)."""
    if kappa <= 0:
        return np.zeros(np.shape(total_free), dtype=np.float32)
    inv = np.float32(1.0 / kappa)
    # x = total - cpu_free / kappa before; after, the pod shifts it by cpu / kappa - taken.
    x = np.asarray(total_free, dtype=np.float32) - np.asarray(cpu_free, dtype=np.float32) * inv
    after = np.maximum(x + np.float32(cpu * inv - taken_milli), np.float32(0.0))
    out: np.ndarray = np.maximum(after - np.maximum(x, np.float32(0.0)), np.float32(0.0))
    return out
