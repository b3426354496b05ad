"""Best fit for fractional requests across nodes: how full the share leaves its GPU.

FGD's fragmentation increase is compared in frag_step steps, so filling a 190-thousandth gap
left by a large share and taking a slice of a half-used GPU often land in the same step, and
the node order then decides. Both keep the typical workload's options about equally, but only
the first closes a gap that few later pods can fill. This term rewards the node whose chosen
GPU is left fullest (classic best fit on the GPU), at a weight below one step so that it only
orders nodes FGD leaves tied. Pure, vectorised over nodes.
"""

from __future__ import annotations

import numpy as np

from scheduler.contract.units import MILLI_PER_GPU


def share_fill(free_before: np.ndarray, milli: int) -> np.ndarray:
    """Fraction of the chosen GPU in use after the share takes `milli` of it, per node
    (free_before: thousandths free on that GPU before; 1.0 = the share closes the GPU)."""
    left = np.asarray(free_before, dtype=np.float64) - milli
    out: np.ndarray = 1.0 - np.clip(left, 0.0, MILLI_PER_GPU) / MILLI_PER_GPU
    return out
