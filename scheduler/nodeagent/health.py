"""GPU health for ListAndWatch: a GPU NVML can no longer reach is reported Unhealthy.

A coarse probe (the GPU answers a memory query), polled by PluginRunner. It does not watch
XID error events as NVIDIA's plugin does; a GPU that answers NVML but fails kernels stays
Healthy here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any


def nvml_health_probe(nvml: Any, uuids: Sequence[str]) -> Callable[[], frozenset[int]]:
    """A probe returning the indices of GPUs (by UUID) that NVML cannot query."""
    error: type[BaseException] = getattr(nvml, "NVMLError", Exception)

    def probe() -> frozenset[int]:
        try:
            nvml.nvmlInit()
        except error:
            return frozenset(range(len(uuids)))  # the driver is gone: nothing is usable
        bad: set[int] = set()
        try:
            for i, u in enumerate(uuids):
                try:
                    nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByUUID(u))
                except error:
                    bad.add(i)
        finally:
            with contextlib.suppress(error):
                nvml.nvmlShutdown()
        return frozenset(bad)

    return probe
