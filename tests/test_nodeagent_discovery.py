"""Topology discovery from a fake NVML (injected, no GPU) and from nvidia-smi text."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import pytest
from dgx1_topo_matrix import DGX1_TOPO_ROWS

from scheduler.nodeagent.discovery import (
    NVML_MISSING,
    QUERY_GPU_ARGS,
    TOPO_ARGS,
    DiscoveryError,
    discover,
    discover_nvml,
    discover_smi,
    load_nvml,
    normalize_bus_id,
    parse_gpu_query,
)
from topology.presets import DGX1_NVLINKS, preset

GPU, IBMNPU, SWITCH = 0, 1, 2
INTERNAL, SINGLE, MULTIPLE, HOSTBRIDGE, NODE, SYSTEM = 0, 10, 20, 30, 40, 50


class FakeNVMLError(Exception):
    """Stands for pynvml.NVMLError (the base class of every NVML error)."""


class FakeNvml:
    """The pynvml functions discovery calls, over a scripted machine.

    `nvlinks[i]` lists GPU i's links in link-index order as (remote bus id, remote device
    type, active). Handles are opaque objects, as in pynvml.
    """

    NVMLError = FakeNVMLError
    NVML_FEATURE_DISABLED = 0
    NVML_FEATURE_ENABLED = 1
    NVML_NVLINK_MAX_LINKS = 18
    NVML_NVLINK_DEVICE_TYPE_GPU = GPU
    NVML_NVLINK_DEVICE_TYPE_IBMNPU = IBMNPU
    NVML_NVLINK_DEVICE_TYPE_SWITCH = SWITCH
    NVML_TOPOLOGY_INTERNAL = INTERNAL
    NVML_TOPOLOGY_SINGLE = SINGLE
    NVML_TOPOLOGY_MULTIPLE = MULTIPLE
    NVML_TOPOLOGY_HOSTBRIDGE = HOSTBRIDGE
    NVML_TOPOLOGY_NODE = NODE
    NVML_TOPOLOGY_SYSTEM = SYSTEM

    def __init__(
        self,
        model: str,
        buses: list[str],
        nvlinks: dict[int, list[tuple[str, int, bool]]],
        ancestor: Callable[[int, int], int],
        numa: list[int] | None = None,
        remote_type: bool = True,
    ) -> None:
        self.model = model
        self.buses = buses
        self.nvlinks = nvlinks
        self.ancestor = ancestor
        self.handles = [object() for _ in buses]
        self.calls: list[str] = []
        self.ancestor_pairs: list[tuple[int, int]] = []
        # Functions that older drivers / bindings lack are instance attributes, so a test can
        # leave them out and getattr(nvml, name, None) sees None.
        if numa is not None:
            self.nvmlDeviceGetNumaNodeId = lambda h: numa[self._idx(h)]
        if remote_type:
            self.nvmlDeviceGetNvLinkRemoteDeviceType = self._remote_type

    def _idx(self, h: object) -> int:
        return self.handles.index(h)

    def _link(self, h: object, link: int) -> tuple[str, int, bool]:
        links = self.nvlinks.get(self._idx(h), [])
        if link >= len(links):
            raise FakeNVMLError("Invalid Argument")
        return links[link]

    def nvmlInit(self) -> None:
        self.calls.append("init")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.buses)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> object:
        return self.handles[i]

    def nvmlDeviceGetName(self, h: object) -> str:
        return self.model

    def nvmlDeviceGetUUID(self, h: object) -> str:
        return f"GPU-{self._idx(h):08d}-0000-0000-0000-000000000000"

    def nvmlDeviceGetMemoryInfo(self, h: object) -> Any:
        return type("Mem", (), {"total": 32 * 1024**3, "used": 0})()

    def nvmlDeviceGetPciInfo(self, h: object) -> Any:
        # pynvml returns struct char arrays as bytes
        return type("Pci", (), {"busId": self.buses[self._idx(h)].encode()})()

    def nvmlDeviceGetNvLinkState(self, h: object, link: int) -> int:
        return 1 if self._link(h, link)[2] else 0

    def _remote_type(self, h: object, link: int) -> int:
        return self._link(h, link)[1]

    def nvmlDeviceGetNvLinkRemotePciInfo(self, h: object, link: int) -> Any:
        return type("Pci", (), {"busId": self._link(h, link)[0].encode()})()

    def nvmlDeviceGetTopologyCommonAncestor(self, a: object, b: object) -> int:
        i, j = self._idx(a), self._idx(b)
        self.ancestor_pairs.append((i, j))
        return self.ancestor(i, j)


DGX1_BUSES = [f"00000000:{b}:00.0" for b in ("06", "07", "0A", "0B", "85", "86", "89", "8A")]
# DGX-1 V100 hybrid cube-mesh: pair -> number of bonded NVLinks (the preset's pairs, one
# source of truth).
DGX1_NV = {pair: int(link[2:]) for pair, link in DGX1_NVLINKS.items()}


def _dgx1_links(down: Collection[tuple[int, int]] = ()) -> dict[int, list[tuple[str, int, bool]]]:
    """Per GPU, its links in index order; `down` holds (gpu, link index) pairs that are off."""
    links: dict[int, list[tuple[str, int, bool]]] = {i: [] for i in range(8)}
    for (a, b), n in sorted(DGX1_NV.items()):
        for _ in range(n):
            links[a].append((DGX1_BUSES[b], GPU, (a, len(links[a])) not in down))
            links[b].append((DGX1_BUSES[a], GPU, (b, len(links[b])) not in down))
    return links


def _dgx1_ancestor(i: int, j: int) -> int:
    if i // 2 == j // 2:
        return SINGLE
    return HOSTBRIDGE if i // 4 == j // 4 else SYSTEM


def _rows(topo: Any) -> list[list[str]]:
    return [list(r) for r in topo.links]


def _expected(rows: list[str]) -> list[list[str]]:
    return [r.split() for r in rows]


def test_dgx1_link_matrix_from_nvlink_state_and_remote_pci() -> None:
    sysfs = {f"/sys/bus/pci/devices/0000:{b[9:].lower()}/numa_node": str(i // 4) for i, b in
             enumerate(DGX1_BUSES)}  # fmt: skip
    sysfs["/sys/bus/pci/devices/0000:06:00.0/local_cpulist"] = "0-19,40-59"
    nvml = FakeNvml("Tesla V100-SXM2-32GB", DGX1_BUSES, _dgx1_links(), _dgx1_ancestor)
    topo = discover_nvml(nvml, read=sysfs.get)
    assert _rows(topo) == _expected(DGX1_TOPO_ROWS)
    assert nvml.calls == ["init", "shutdown"]
    # PCIe levels are asked only where there is no NVLink.
    assert all((i, j) not in DGX1_NV for i, j in nvml.ancestor_pairs)
    g0 = topo.gpus[0]
    assert g0.model == "Tesla V100-SXM2-32GB"
    assert g0.uuid == "GPU-00000000-0000-0000-0000-000000000000"
    assert g0.memory_mib == 32768
    assert g0.pci_bus_id == "00000000:06:00.0"
    assert g0.cpu_affinity == "0-19,40-59"
    # NUMA from sysfs here (this fake has no nvmlDeviceGetNumaNodeId), bus id normalised
    assert [g.numa_node for g in topo.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_dgx1_matches_the_preset() -> None:
    nvml = FakeNvml("Tesla V100-SXM2-32GB", DGX1_BUSES, _dgx1_links(), _dgx1_ancestor)
    assert discover_nvml(nvml, read=lambda p: None).links == preset("dgx1-v100").links


def test_a_link_that_is_down_is_not_counted() -> None:
    # GPU0 reaches GPU3 on its link indices 2 and 3, GPU3 reaches GPU0 on its indices 0 and 1
    # (links are numbered in sorted pair order); (0, 2) and (3, 0) are one physical link.
    def link_0_3(down: set[tuple[int, int]]) -> str:
        nvml = FakeNvml("Tesla V100-SXM2-32GB", DGX1_BUSES, _dgx1_links(down), _dgx1_ancestor)
        return discover_nvml(nvml, read=lambda p: None).links[0][3]

    assert link_0_3(set()) == "NV2"
    assert link_0_3({(0, 2), (3, 0)}) == "NV1"
    # one end still reports the link active: a bond counts what either end sees
    assert link_0_3({(0, 2)}) == "NV2"
    # no NVLink left: the PCIe level (same socket, different switches)
    assert link_0_3({(0, 2), (0, 3), (3, 0), (3, 1)}) == "PHB"


def _nvswitch_box(remote_type: bool) -> FakeNvml:
    """DGX A100: 8 GPUs, 12 NVLinks each, two to each of 6 NVSwitches, 2 NUMA nodes."""
    buses = [f"00000000:{b}:00.0" for b in ("07", "0F", "47", "4E", "87", "90", "B7", "BD")]
    switches = [f"00000000:{b}:00.0" for b in ("C4", "C5", "C6", "C7", "C8", "C9")]
    links = {i: [(switches[k // 2], SWITCH, True) for k in range(12)] for i in range(8)}
    return FakeNvml(
        "NVIDIA A100-SXM4-80GB",
        buses,
        links,
        lambda i, j: MULTIPLE if i // 2 == j // 2 else (NODE if i // 4 == j // 4 else SYSTEM),
        numa=[i // 4 for i in range(8)],
        remote_type=remote_type,
    )


@pytest.mark.parametrize("remote_type", [True, False], ids=["typed", "old-driver"])
def test_nvswitch_box_is_nv12_between_every_pair(remote_type: bool) -> None:
    nvml = _nvswitch_box(remote_type)
    topo = discover_nvml(nvml, read=lambda p: None)
    assert all(topo.links[i][j] == ("X" if i == j else "NV12") for i in range(8) for j in range(8))
    assert nvml.ancestor_pairs == []
    assert [g.numa_node for g in topo.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_pcie_levels_map_from_common_ancestor() -> None:
    levels = {(0, 1): INTERNAL, (0, 2): SINGLE, (0, 3): MULTIPLE, (0, 4): HOSTBRIDGE,
              (0, 5): NODE, (0, 6): SYSTEM}  # fmt: skip
    buses = [f"00000000:{10 + i:02X}:00.0" for i in range(7)]
    nvml = FakeNvml(
        "NVIDIA A10", buses, {}, lambda i, j: levels.get((min(i, j), max(i, j)), SYSTEM),
        numa=[-1] * 7,
    )  # fmt: skip
    topo = discover_nvml(nvml, read=lambda p: None)
    assert list(topo.links[0]) == ["X", "PIX", "PIX", "PXB", "PHB", "NODE", "SYS"]
    assert all(g.numa_node is None for g in topo.gpus)  # NVML's -1 means unknown


def test_nvlink_to_an_ibm_npu_is_not_a_gpu_link() -> None:
    buses = ["00000004:04:00.0", "00000004:05:00.0"]
    links = {0: [("00000007:00:01.0", IBMNPU, True), (buses[1], GPU, True)],
             1: [("00000007:00:01.1", IBMNPU, True), (buses[0], GPU, True)]}  # fmt: skip
    topo = discover_nvml(FakeNvml("Tesla V100-SXM2-16GB", buses, links, lambda i, j: SYSTEM),
                         read=lambda p: None)  # fmt: skip
    assert topo.links[0][1] == "NV1"


def test_unknown_ancestor_level_is_a_clear_error() -> None:
    nvml = FakeNvml("T4", ["00000000:01:00.0", "00000000:02:00.0"], {}, lambda i, j: 35)
    with pytest.raises(DiscoveryError, match="common ancestor of GPU0 and GPU1 is 35"):
        discover_nvml(nvml, read=lambda p: None)
    assert nvml.calls == ["init", "shutdown"]


def test_nvml_init_failure_is_a_discovery_error() -> None:
    nvml = FakeNvml("T4", ["00000000:01:00.0"], {}, lambda i, j: SYSTEM)

    def fail() -> None:
        raise FakeNVMLError("Driver Not Loaded")

    nvml.nvmlInit = fail  # type: ignore[method-assign]
    with pytest.raises(DiscoveryError, match="Driver Not Loaded"):
        discover_nvml(nvml)


def test_missing_pynvml_names_the_extra() -> None:
    def no_module(name: str) -> Any:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    with pytest.raises(DiscoveryError) as e:
        load_nvml(no_module)
    assert str(e.value) == NVML_MISSING
    assert "nvml" in NVML_MISSING and "nvidia-ml-py" in NVML_MISSING


def test_bus_id_normalisation() -> None:
    assert normalize_bus_id(b"00000000:8A:00.0\x00") == "0000:8a:00.0"
    assert normalize_bus_id("0000:8a:00.0") == "0000:8a:00.0"
    assert normalize_bus_id("8A:00.0") == "0000:8a:00.0"


QUERY = """0, GPU-aaaaaaaa-0000-0000-0000-000000000000, NVIDIA H100 80GB HBM3, 81559, 00000000:18:00.0
1, GPU-bbbbbbbb-0000-0000-0000-000000000000, NVIDIA H100 80GB HBM3, 81559, 00000000:2A:00.0
"""  # noqa: E501
TOPO = """\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity
GPU0\t X \tNV18\t0-55\t0
GPU1\tNV18\t X \t0-55\t0

Legend:
  X    = Self
"""


def test_smi_fallback_merges_query_gpu_into_topo_m() -> None:
    outputs = {tuple(QUERY_GPU_ARGS): QUERY, tuple(TOPO_ARGS): TOPO}
    topo = discover_smi(lambda argv: outputs[tuple(argv)])
    assert _rows(topo) == [["X", "NV18"], ["NV18", "X"]]
    assert [g.uuid for g in topo.gpus] == [
        "GPU-aaaaaaaa-0000-0000-0000-000000000000",
        "GPU-bbbbbbbb-0000-0000-0000-000000000000",
    ]
    assert topo.gpus[1].pci_bus_id == "00000000:2A:00.0"
    assert topo.gpus[0].memory_mib == 81559 and topo.gpus[0].numa_node == 0


def test_auto_falls_back_to_nvidia_smi_when_pynvml_is_missing() -> None:
    outputs = {tuple(QUERY_GPU_ARGS): QUERY, tuple(TOPO_ARGS): TOPO}

    def no_module(name: str) -> Any:
        raise ModuleNotFoundError(name)

    topo = discover("auto", import_module=no_module, run=lambda a: outputs[tuple(a)])
    assert topo.n == 2
    with pytest.raises(DiscoveryError, match="nvml"):
        discover("nvml", import_module=no_module)

    def no_smi(argv: Any) -> str:
        raise DiscoveryError("cannot run nvidia-smi: not found")

    with pytest.raises(DiscoveryError, match=r"NVML: .*; nvidia-smi: cannot run"):
        discover("auto", import_module=no_module, run=no_smi)


def test_auto_uses_the_fake_nvml_module_when_importable() -> None:
    nvml = _nvswitch_box(True)
    topo = discover("auto", import_module=lambda name: nvml, read=lambda p: None)
    assert topo.links[0][7] == "NV12"


def test_gpu_query_errors_name_the_line() -> None:
    with pytest.raises(DiscoveryError, match="line 2: expected 5 fields"):
        parse_gpu_query(QUERY.splitlines()[0] + "\n1, GPU-x, T4\n")
    with pytest.raises(DiscoveryError, match="line 1: index or memory"):
        parse_gpu_query("0, GPU-x, T4, lots, 00:01.0\n")
    with pytest.raises(DiscoveryError, match="no GPUs"):
        parse_gpu_query("\n")
