"""The devices the plugin advertises to kubelet, one list per resource.

- `nvidia.com/gpu`: one device per GPU, its id the GPU UUID (as NVIDIA's plugin does), so
  NVIDIA_VISIBLE_DEVICES can name exactly the GPUs a pod was given.
- `gts.dev/gpu-milli`: 1000 devices per GPU (`<uuid>::<k>`), so a pod asking for 250
  thousandths makes kubelet allocate 250 of them. They only let kubelet admit and account for
  share pods; which GPU a share pod runs on comes from its signed assignment, not from the ids.
Each device carries its GPU's NUMA node, for kubelet's Topology Manager.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scheduler.constants import GPU_MILLI_RESOURCE, GPU_RESOURCE
from scheduler.contract.units import MILLI_PER_GPU
from topology.model import NodeTopology

SHARE_SEPARATOR = "::"
MAX_DEVICE_ID = 63  # kubelet's limit on a device id


@dataclass(frozen=True, slots=True)
class DeviceSet:
    """Device ids of one resource and the GPU index behind each."""

    resource: str
    ids: tuple[str, ...]
    gpu_of: Mapping[str, int]
    uuids: tuple[str, ...]  # by GPU index
    numa: tuple[int | None, ...]  # by GPU index

    def gpus(self, ids: list[str] | tuple[str, ...]) -> frozenset[int]:
        """GPU indices behind device ids; KeyError naming the first unknown id."""
        out = set()
        for i in ids:
            if i not in self.gpu_of:
                raise KeyError(f"unknown {self.resource} device id {i!r}")
            out.add(self.gpu_of[i])
        return frozenset(out)


def _uuids(topo: NodeTopology) -> tuple[str, ...]:
    missing = [g.index for g in topo.gpus if not g.uuid]
    if missing:
        raise ValueError(f"GPUs {missing} have no UUID; the device plugin needs discovered UUIDs")
    uuids = tuple(g.uuid for g in topo.gpus)
    if len(set(uuids)) != len(uuids):
        raise ValueError(f"GPU UUIDs repeat: {list(uuids)}")
    too_long = [u for u in uuids if len(u) + len(SHARE_SEPARATOR) + 3 > MAX_DEVICE_ID]
    if too_long:
        raise ValueError(f"GPU UUIDs too long for a device id: {too_long}")
    return uuids


def whole_gpu_devices(topo: NodeTopology) -> DeviceSet:
    """One `nvidia.com/gpu` device per GPU, named by UUID."""
    uuids = _uuids(topo)
    numa = tuple(g.numa_node for g in topo.gpus)
    return DeviceSet(GPU_RESOURCE, uuids, {u: i for i, u in enumerate(uuids)}, uuids, numa)


def share_device_id(uuid: str, unit: int) -> str:
    """The id of share unit `unit` (0..999) of the GPU `uuid`."""
    return f"{uuid}{SHARE_SEPARATOR}{unit:03d}"


def share_devices(topo: NodeTopology) -> DeviceSet:
    """MILLI_PER_GPU `gts.dev/gpu-milli` devices per GPU."""
    uuids = _uuids(topo)
    ids = tuple(share_device_id(u, k) for u in uuids for k in range(MILLI_PER_GPU))
    gpu_of = {d: i // MILLI_PER_GPU for i, d in enumerate(ids)}
    numa = tuple(g.numa_node for g in topo.gpus)
    return DeviceSet(GPU_MILLI_RESOURCE, ids, gpu_of, uuids, numa)
