"""GPU capacity stranded by CPU: free GPU thousandths a node's remaining CPU cannot feed.

The typical pod mix asks for `kappa` CPU milli per GPU thousandth (its demand-weighted mean).
A node with `total` thousandths free and `cpu` CPU milli free can feed at most cpu / kappa of
them, so max(0, total - cpu / kappa) of its free GPU capacity is stranded for a typical pod.
FGD's measure sees the same loss only class by class, once a class's CPU no longer fits; this
term sees it coming (CPU eaten by share and CPU-only pods on nodes that still have GPUs free)
and is linear, so it survives the frag_step rounding. Pure, vectorised over nodes.
"""

from __future__ import annotations

import numpy as np

from scheduler.policy.mix import CPU_ONLY_GPUS, MixClasses


def cpu_per_milli(classes: MixClasses) -> float:
    """kappa: CPU milli per GPU thousandth of the GPU classes, weighted by their demand
    (0 when the mix has no GPU class)."""
    gpu = classes.gpus < CPU_ONLY_GPUS
    demand = (classes.gpus * classes.milli * classes.weight)[gpu].sum()
    cpu = (classes.cpu * classes.weight)[gpu].sum()
    return float(cpu / demand) if demand > 0 else 0.0


def stranded_delta(
    total_free: np.ndarray, cpu_free: np.ndarray, taken_milli: np.ndarray | int, cpu: int,
    kappa: float,
) -> np.ndarray:
    """Increase of stranded GPU thousandths per node when a pod takes `taken_milli` of GPU
    and `cpu` CPU milli (arrays aligned over the nodes; 0 everywhere when kappa is 0)."""
    t0 = np.asarray(total_free, dtype=np.float64)
    if kappa <= 0:
        return np.zeros_like(t0)
    c0 = np.asarray(cpu_free, dtype=np.float64)
    before = np.maximum(0.0, t0 - c0 / kappa)
    after = np.maximum(0.0, t0 - taken_milli - (c0 - cpu) / kappa)
    out: np.ndarray = after - before
    return out
