"""Failure codes: why a node cannot take a pod, one small integer per node.

The filter works on every node at once, so it leaves a code per node (uint8 array), not a
sentence; `reasons.reason_text` turns a code into words only when someone reads it.
"""

from __future__ import annotations

from enum import IntEnum


class Failure(IntEnum):
    """Why a node cannot take a pod; the first five can never change while the node exists."""

    OK = 0
    MODEL = 1
    TOO_FEW_GPUS = 2
    CPU_TOTAL = 3
    MEMORY_TOTAL = 4
    GPU_MEMORY_TOTAL = 5
    CPU = 6
    MEMORY = 7
    FREE_GPUS = 8
    QUALITY = 9
    SHARE = 10
    SHARE_MEMORY = 11


# Failures no release of resources can cure (kube-scheduler's "unresolvable").
UNRESOLVABLE = frozenset(
    {Failure.MODEL, Failure.TOO_FEW_GPUS, Failure.CPU_TOTAL, Failure.MEMORY_TOTAL,
     Failure.GPU_MEMORY_TOTAL}
)
