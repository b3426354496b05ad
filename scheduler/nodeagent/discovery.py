"""Discover this node's GPU topology: NVML first, `nvidia-smi topo -m` as the fallback.

NVML is reached through nvidia-ml-py (`import pynvml`), an optional dependency (the `nvml`
extra), imported only when discovery runs. Every function takes the NVML module, the command
runner and the sysfs reader as arguments, so tests drive them with doubles and no GPU.

How the link matrix is built from NVML, pair by pair:
- NVLink: every active link of a GPU (links 0..NVML_NVLINK_MAX_LINKS-1) is followed to its
  remote end. A remote GPU adds one bonded link to that pair; a remote NVSwitch adds one link to
  the GPU's switch port count. Two GPUs on NVSwitches are joined by NV<min of their switch port
  counts>, which is what nvidia-smi prints (NV12 on DGX A100, NV18 on HGX H100).
- Otherwise the PCIe level from nvmlDeviceGetTopologyCommonAncestor: INTERNAL (two GPUs on one
  board) and SINGLE -> PIX, MULTIPLE -> PXB, HOSTBRIDGE -> PHB, NODE -> NODE, SYSTEM -> SYS.
NICs are not discovered through NVML (it does not know them); the nvidia-smi path keeps them.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import subprocess
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from topology.model import GPU, NodeTopology

log = logging.getLogger(__name__)

NVML_MISSING = (
    "NVML bindings are not installed: install the `nvml` extra "
    "(pip install 'gpu-topology-scheduler[nvml]', which brings nvidia-ml-py)"
)
SYSFS_PCI = "/sys/bus/pci/devices"
MIB = 1024 * 1024

# nvml.h values, used when the bindings lack a constant (older nvidia-ml-py).
_TOPOLOGY_DEFAULTS = {
    "NVML_TOPOLOGY_INTERNAL": (0, "PIX"),
    "NVML_TOPOLOGY_SINGLE": (10, "PIX"),
    "NVML_TOPOLOGY_MULTIPLE": (20, "PXB"),
    "NVML_TOPOLOGY_HOSTBRIDGE": (30, "PHB"),
    "NVML_TOPOLOGY_NODE": (40, "NODE"),
    "NVML_TOPOLOGY_SYSTEM": (50, "SYS"),
}
_NVLINK_DEVICE_TYPE_GPU = 0
_NVLINK_DEVICE_TYPE_IBMNPU = 1
_NVLINK_DEVICE_TYPE_SWITCH = 2
_MAX_BONDED_LINKS = 72  # the largest NV<n> the link model accepts

Runner = Callable[[Sequence[str]], str]
FileReader = Callable[[str], str | None]


class DiscoveryError(RuntimeError):
    """The topology could not be discovered; the message says why and what to do."""


def read_file(path: str) -> str | None:
    """The stripped text of a (sysfs) file, or None when it cannot be read."""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def run_command(argv: Sequence[str]) -> str:
    """Run a command and return its stdout; DiscoveryError if it is missing or fails."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DiscoveryError(f"cannot run {' '.join(argv)}: {e}") from None
    if done.returncode != 0:
        raise DiscoveryError(
            f"{' '.join(argv)} exited with {done.returncode}: {done.stderr.strip()[:300]}"
        )
    return done.stdout


def load_nvml(import_module: Callable[[str], Any] = importlib.import_module) -> Any:
    """The pynvml module; DiscoveryError naming the `nvml` extra when it is not installed."""
    try:
        return import_module("pynvml")
    except ImportError:
        raise DiscoveryError(NVML_MISSING) from None


def _text(value: object) -> str:
    # nvidia-ml-py returns str from most getters but bytes from struct fields (busId).
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip("\x00").strip()
    return str(value).strip()


def normalize_bus_id(bus_id: object) -> str:
    """A PCI address as sysfs names it (`0000:07:00.0`) from NVML's `00000000:07:00.0`."""
    text = _text(bus_id).lower()
    parts = text.split(":")
    if len(parts) == 3:
        try:
            return f"{int(parts[0], 16):04x}:{parts[1]}:{parts[2]}"
        except ValueError:
            pass
    if len(parts) == 2:  # no domain: domain 0
        return f"0000:{text}"
    return text


@dataclass(slots=True)
class _Probe:
    handle: Any
    bus: str  # normalized
    direct: Counter[str]  # remote GPU bus -> number of NVLinks to it
    switch_links: int


def _nvml_error(nvml: Any) -> type[BaseException]:
    err = getattr(nvml, "NVMLError", None)
    return err if isinstance(err, type) and issubclass(err, BaseException) else Exception


def _ancestor_links(nvml: Any) -> dict[int, str]:
    return {
        int(getattr(nvml, name, value)): link for name, (value, link) in _TOPOLOGY_DEFAULTS.items()
    }


def _numa_node(
    nvml: Any, handle: Any, bus: str, read: FileReader, error: type[BaseException]
) -> int | None:
    fn = getattr(nvml, "nvmlDeviceGetNumaNodeId", None)
    if fn is not None:
        try:
            node = int(fn(handle))
            return node if node >= 0 else None
        except error:
            pass
    text = read(f"{SYSFS_PCI}/{bus}/numa_node")
    if text is None:
        return None
    try:
        node = int(text)
    except ValueError:
        return None
    return node if node >= 0 else None  # sysfs writes -1 on machines without NUMA


def _nvlinks(
    nvml: Any, handle: Any, gpu_buses: set[str], error: type[BaseException]
) -> tuple[Counter[str], int]:
    """(NVLinks per remote GPU bus, links to NVSwitches) of one GPU."""
    enabled = int(getattr(nvml, "NVML_FEATURE_ENABLED", 1))
    max_links = int(getattr(nvml, "NVML_NVLINK_MAX_LINKS", 18))
    switch_type = int(getattr(nvml, "NVML_NVLINK_DEVICE_TYPE_SWITCH", _NVLINK_DEVICE_TYPE_SWITCH))
    gpu_type = int(getattr(nvml, "NVML_NVLINK_DEVICE_TYPE_GPU", _NVLINK_DEVICE_TYPE_GPU))
    remote_type_fn = getattr(nvml, "nvmlDeviceGetNvLinkRemoteDeviceType", None)
    direct: Counter[str] = Counter()
    switch = 0
    for link in range(max_links):
        try:
            if int(nvml.nvmlDeviceGetNvLinkState(handle, link)) != enabled:
                continue
        except error:
            continue  # NOT_SUPPORTED / INVALID_ARGUMENT: no such link on this GPU
        kind: int | None = None
        if remote_type_fn is not None:
            try:
                kind = int(remote_type_fn(handle, link))
            except error:
                kind = None
        if kind == switch_type:
            switch += 1
            continue
        try:
            remote = normalize_bus_id(nvml.nvmlDeviceGetNvLinkRemotePciInfo(handle, link).busId)
        except error:
            continue
        if remote in gpu_buses:
            direct[remote] += 1
        elif kind is None:
            # Without the remote type (older drivers) a remote end that is not one of our GPUs
            # is taken for an NVSwitch; the other non-GPU ends (IBM NPUs) need the type query.
            switch += 1
        elif kind != gpu_type:
            log.debug("NVLink %d of GPU %s goes to device type %d: ignored", link, remote, kind)
    return direct, switch


def discover_nvml(nvml: Any, *, read: FileReader = read_file, name: str = "") -> NodeTopology:
    """The node topology from NVML (the pynvml module or a double with the same functions)."""
    error = _nvml_error(nvml)
    try:
        nvml.nvmlInit()
    except error as e:
        raise DiscoveryError(f"NVML initialisation failed: {e}") from None
    try:
        return _discover(nvml, read, name, error)
    except error as e:
        raise DiscoveryError(f"NVML query failed: {e}") from None
    finally:
        with contextlib.suppress(error):
            nvml.nvmlShutdown()


def _discover(nvml: Any, read: FileReader, name: str, error: type[BaseException]) -> NodeTopology:
    count = int(nvml.nvmlDeviceGetCount())
    if count == 0:
        raise DiscoveryError("NVML reports no GPUs on this node")
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    raw_buses = [_text(nvml.nvmlDeviceGetPciInfo(h).busId) for h in handles]
    buses = [normalize_bus_id(b) for b in raw_buses]
    gpu_buses = set(buses)
    gpus: list[GPU] = []
    probes: list[_Probe] = []
    for i, h in enumerate(handles):
        gpus.append(
            GPU(
                index=i,
                model=_text(nvml.nvmlDeviceGetName(h)),
                uuid=_text(nvml.nvmlDeviceGetUUID(h)),
                memory_mib=int(nvml.nvmlDeviceGetMemoryInfo(h).total) // MIB,
                numa_node=_numa_node(nvml, h, buses[i], read, error),
                pci_bus_id=raw_buses[i],
                cpu_affinity=read(f"{SYSFS_PCI}/{buses[i]}/local_cpulist") or "",
            )
        )
        direct, switch = _nvlinks(nvml, h, gpu_buses - {buses[i]}, error)
        probes.append(_Probe(h, buses[i], direct, switch))
    ancestor = _ancestor_links(nvml)
    links = [["X"] * count for _ in range(count)]
    for i in range(count):
        for j in range(i + 1, count):
            a, b = probes[i], probes[j]
            nv = max(a.direct[b.bus], b.direct[a.bus])
            if a.switch_links and b.switch_links:
                nv += min(a.switch_links, b.switch_links)
            if nv:
                kind = f"NV{min(nv, _MAX_BONDED_LINKS)}"
            else:
                level = int(nvml.nvmlDeviceGetTopologyCommonAncestor(a.handle, b.handle))
                if level not in ancestor:
                    raise DiscoveryError(
                        f"NVML common ancestor of GPU{i} and GPU{j} is {level}, not a known "
                        f"topology level ({sorted(ancestor)})"
                    )
                kind = ancestor[level]
            links[i][j] = links[j][i] = kind
    return NodeTopology(gpus=tuple(gpus), links=tuple(tuple(r) for r in links), name=name)


def parse_gpu_query(text: str) -> list[GPU]:
    """GPUs from `nvidia-smi --query-gpu=index,uuid,name,memory.total,pci.bus_id
    --format=csv,noheader,nounits`; DiscoveryError naming the line on bad input."""
    gpus: list[GPU] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 5:
            raise DiscoveryError(
                f"nvidia-smi --query-gpu line {lineno}: expected 5 fields, got {line!r}"
            )
        index, uuid, model, mem, bus = cells
        try:
            gpu = GPU(
                index=int(index),
                uuid=uuid,
                model=model,
                memory_mib=int(float(mem)),
                pci_bus_id=bus,
            )
        except ValueError:
            raise DiscoveryError(
                f"nvidia-smi --query-gpu line {lineno}: index or memory not a number: {line!r}"
            ) from None
        if gpu.index != len(gpus):
            raise DiscoveryError(
                f"nvidia-smi --query-gpu line {lineno}: index {gpu.index}, expected {len(gpus)}"
            )
        gpus.append(gpu)
    if not gpus:
        raise DiscoveryError("nvidia-smi --query-gpu printed no GPUs")
    return gpus


QUERY_GPU_ARGS = (
    "nvidia-smi",
    "--query-gpu=index,uuid,name,memory.total,pci.bus_id",
    "--format=csv,noheader,nounits",
)
TOPO_ARGS = ("nvidia-smi", "topo", "-m")


def discover_smi(run: Runner = run_command, *, name: str = "") -> NodeTopology:
    """The node topology from `nvidia-smi topo -m` plus `nvidia-smi --query-gpu`."""
    try:
        from topology.smi import parse_topo_m
    except ImportError:
        raise DiscoveryError("topology.smi (the nvidia-smi parser) is not available") from None
    listed = parse_gpu_query(run(QUERY_GPU_ARGS))
    try:
        topo = parse_topo_m(run(TOPO_ARGS), listed[0].model, listed[0].memory_mib, name=name)
    except ValueError as e:
        raise DiscoveryError(f"cannot parse nvidia-smi topo -m: {e}") from None
    if topo.n != len(listed):
        raise DiscoveryError(
            f"nvidia-smi topo -m shows {topo.n} GPUs but --query-gpu lists {len(listed)}"
        )
    gpus = tuple(
        replace(
            g,
            uuid=q.uuid,
            model=q.model,
            memory_mib=q.memory_mib,
            pci_bus_id=q.pci_bus_id,
        )
        for g, q in zip(topo.gpus, listed, strict=True)
    )
    return replace(topo, gpus=gpus)


def discover(
    source: str = "auto",
    *,
    import_module: Callable[[str], Any] = importlib.import_module,
    run: Runner = run_command,
    read: FileReader = read_file,
    name: str = "",
) -> NodeTopology:
    """Discover the topology from `source`: "nvml", "smi", or "auto" (NVML, else nvidia-smi)."""
    if source not in ("auto", "nvml", "smi"):
        raise ValueError(f"source must be auto, nvml or smi, got {source!r}")
    nvml_error: DiscoveryError | None = None
    if source in ("auto", "nvml"):
        try:
            return discover_nvml(load_nvml(import_module), read=read, name=name)
        except DiscoveryError as e:
            if source == "nvml":
                raise
            nvml_error = e
            log.warning("NVML discovery failed (%s); trying nvidia-smi", e)
    try:
        return discover_smi(run, name=name)
    except DiscoveryError as e:
        if nvml_error is not None:
            raise DiscoveryError(f"NVML: {nvml_error}; nvidia-smi: {e}") from None
        raise
