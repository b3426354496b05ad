"""Named topologies of common GPU servers, for nodes that publish a preset label instead of a
measured topology, and for the simulator's clusters.

Link matrices follow what `nvidia-smi topo -m` prints on the real machines:
- dgx1-v100: NVIDIA DGX-1 with Tesla V100 (hybrid cube-mesh; DGX-1 System Architecture white
  paper, WP-08437-002, fig. 4). Matrix as printed on DGX-1 V100 machines: each GPU spends its 6
  NVLinks as NV1, NV1, NV2, NV2; the quads {0,1,2,3} and {4,5,6,7} are fully linked and the
  cross-quad pairs (0,4) (1,5) (2,6) (3,7) are NV2 or NV1; the other cross-quad pairs are SYS.
  NICs and CPU sets as on DGX-1 (2 x E5-2698 v4, one EDR NIC per PCIe switch).
- dgx-a100: DGX A100 (6 NVSwitches, NV12 everywhere; 2 x EPYC 7742, 8 compute + 4 storage
  ConnectX-6 ports), shown with one NUMA node per socket.
- dgx-h100: DGX/HGX H100 (NVSwitch, NV18; 2 x Xeon 8480C, 12 NIC ports), matching
  `../shared/topology-samples/h100x8_nv18_12nic_hgx.txt`.
- hgx-2-v100-16: HGX-2 / DGX-2 (16 x V100 on 12 NVSwitches, NV6 between every pair).
- PCIe boxes: GPUs in pairs under a PCIe switch (PIX), switches of one socket under a common
  bridge (PXB) or host bridge (PHB), sockets joined by UPI (SYS).
"""

from __future__ import annotations

from collections.abc import Callable

from topology.model import GPU, NIC, NodeTopology


class UnknownPresetError(KeyError):
    """A preset name that is not in PRESETS; the message lists the valid names."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument; a readable message is more useful.
        return str(self.args[0]) if self.args else "unknown preset"


def _build(
    name: str,
    n: int,
    link: Callable[[int, int], str],
    model: str,
    memory_mib: int,
    numa: Callable[[int], int | None],
    cpus: Callable[[int], str],
    nics: tuple[tuple[str, tuple[str, ...], int | None], ...] = (),
) -> NodeTopology:
    gpus = tuple(
        GPU(index=i, model=model, memory_mib=memory_mib, numa_node=numa(i), cpu_affinity=cpus(i))
        for i in range(n)
    )
    links = tuple(tuple("X" if i == j else link(i, j) for j in range(n)) for i in range(n))
    return NodeTopology(
        gpus=gpus,
        links=links,
        nics=tuple(NIC(name=nm, gpu_links=gl, numa_node=nn) for nm, gl, nn in nics),
        name=name,
    )


def _mem(memory_mib: int | None, default: int) -> int:
    return default if memory_mib is None else memory_mib


def _pcie(i: int, j: int, per_switch: int, per_socket: int, same_socket: str) -> str:
    """PCIe level between two GPUs in a regular tree of switches and sockets."""
    if i // per_switch == j // per_switch:
        return "PIX"
    if i // per_socket == j // per_socket:
        return same_socket
    return "SYS"


# DGX-1 V100 NVLink matrix (upper triangle as printed by nvidia-smi; "" = no NVLink).
DGX1_NVLINKS: dict[tuple[int, int], str] = {
    (0, 1): "NV1", (0, 2): "NV1", (0, 3): "NV2", (0, 4): "NV2",
    (1, 2): "NV2", (1, 3): "NV1", (1, 5): "NV2",
    (2, 3): "NV2", (2, 6): "NV1",
    (3, 7): "NV1",
    (4, 5): "NV1", (4, 6): "NV1", (4, 7): "NV2",
    (5, 6): "NV2", (5, 7): "NV1",
    (6, 7): "NV2",
}  # fmt: skip


def dgx1_v100(model: str | None = None, memory_mib: int | None = None) -> NodeTopology:
    """DGX-1 V100: 8 x V100 SXM2 32GB, hybrid cube-mesh NVLink (NV1/NV2), 2 sockets."""

    def link(i: int, j: int) -> str:
        return DGX1_NVLINKS.get((min(i, j), max(i, j))) or ("SYS" if i // 4 != j // 4 else "PHB")

    def nic(k: int) -> tuple[str, tuple[str, ...], int]:
        # One EDR NIC per PCIe switch: PIX to its GPU pair, PHB to the socket's other pair.
        gl = tuple(_pcie(g, 2 * k, 2, 4, "PHB") for g in range(8))
        return (f"mlx5_{k}", gl, k // 2)

    return _build(
        "dgx1-v100", 8, link, model or "Tesla V100-SXM2-32GB", _mem(memory_mib, 32768),
        lambda i: i // 4, lambda i: ("0-19,40-59", "20-39,60-79")[i // 4],
        tuple(nic(k) for k in range(4)),
    )  # fmt: skip


def dgx_a100(model: str | None = None, memory_mib: int | None = None) -> NodeTopology:
    """DGX A100: 8 x A100 SXM4 80GB on NVSwitch (NV12), 12 NIC ports, 2 NUMA nodes."""

    def nic(k: int) -> tuple[str, tuple[str, ...], int]:
        # mlx5_0-3 and 6-9 are compute NICs, two per GPU pair behind its PCIe switch;
        # mlx5_4/5 and 10/11 are storage ports with no GPU on their switch.
        pair = {0: 0, 1: 0, 2: 1, 3: 1, 6: 2, 7: 2, 8: 3, 9: 3}.get(k)
        socket = 0 if k < 6 else 1
        gl: list[str] = []
        for g in range(8):
            if pair is not None and g // 2 == pair:
                gl.append("PXB")
            else:
                gl.append("NODE" if g // 4 == socket else "SYS")
        return (f"mlx5_{k}", tuple(gl), socket)

    return _build(
        "dgx-a100", 8, lambda i, j: "NV12",
        model or "NVIDIA A100-SXM4-80GB", _mem(memory_mib, 81920),
        lambda i: i // 4, lambda i: ("0-63,128-191", "64-127,192-255")[i // 4],
        tuple(nic(k) for k in range(12)),
    )  # fmt: skip


def dgx_h100(model: str | None = None, memory_mib: int | None = None) -> NodeTopology:
    """DGX H100: 8 x H100 SXM5 80GB on NVSwitch (NV18), 12 NIC ports, 2 NUMA nodes."""

    def nic(k: int) -> tuple[str, tuple[str, ...], int]:
        # As in the HGX H100 sample: NIC k<4 sits under GPU k's switch (PIX), with the pair's
        # other GPU one bridge further (PXB); NICs 4/5 (and 10/11) have no GPU on their switch.
        socket = 0 if k < 6 else 1
        local = k - 6 * socket
        gl: list[str] = []
        for g in range(8):
            if g // 4 != socket:
                gl.append("SYS")
            elif local < 4 and g - 4 * socket == local:
                gl.append("PIX")
            elif local < 4 and (g - 4 * socket) // 2 == local // 2:
                gl.append("PXB")
            else:
                gl.append("NODE")
        return (f"mlx5_{k}", tuple(gl), socket)

    return _build(
        "dgx-h100", 8, lambda i, j: "NV18",
        model or "NVIDIA H100 80GB HBM3", _mem(memory_mib, 81920),
        lambda i: i // 4, lambda i: ("0-55,112-167", "56-111,168-223")[i // 4],
        tuple(nic(k) for k in range(12)),
    )  # fmt: skip


def hgx2_v100_16(model: str | None = None, memory_mib: int | None = None) -> NodeTopology:
    """HGX-2 / DGX-2: 16 x V100 SXM3 32GB on NVSwitch (NV6 everywhere), 8 NICs, 2 sockets."""

    def nic(k: int) -> tuple[str, tuple[str, ...], int]:
        # One NIC per GPU pair: PIX to the pair, PXB to the other pair on its switch tray
        # quad, NODE to the socket's other GPUs, SYS across sockets.
        gl: list[str] = []
        for g in range(16):
            if g // 2 == k:
                gl.append("PIX")
            elif g // 4 == k // 2:
                gl.append("PXB")
            else:
                gl.append("NODE" if g // 8 == k // 4 else "SYS")
        return (f"mlx5_{k}", tuple(gl), k // 4)

    return _build(
        "hgx-2-v100-16", 16, lambda i, j: "NV6", model or "Tesla V100-SXM3-32GB",
        _mem(memory_mib, 32768), lambda i: i // 8, lambda i: ("0-23,48-71", "24-47,72-95")[i // 8],
        tuple(nic(k) for k in range(8)),
    )  # fmt: skip


def pcie_8gpu_2socket(model: str | None = None, memory_mib: int | None = None) -> NodeTopology:
    """8 PCIe GPUs, 2 sockets: PIX pairs under PXB per socket quad, SYS across sockets."""
    return _build(
        "pcie-8gpu-2socket", 8, lambda i, j: _pcie(i, j, 2, 4, "PXB"),
        model or "NVIDIA L40S", _mem(memory_mib, 46068),
        lambda i: i // 4, lambda i: ("0-31,64-95", "32-63,96-127")[i // 4],
    )  # fmt: skip


def pcie_4gpu(model: str | None = None, memory_mib: int | None = None) -> NodeTopology:
    """4 PCIe GPUs on one socket: PIX pairs (0,1) and (2,3), PHB between the pairs."""
    return _build(
        "pcie-4gpu", 4, lambda i, j: _pcie(i, j, 2, 4, "PHB"),
        model or "NVIDIA A10", _mem(memory_mib, 23028), lambda i: 0, lambda i: "0-31",
    )  # fmt: skip


def pcie_2gpu(model: str | None = None, memory_mib: int | None = None) -> NodeTopology:
    """2 PCIe GPUs behind the CPU's host bridge (PHB)."""
    return _build(
        "pcie-2gpu", 2, lambda i, j: "PHB",
        model or "NVIDIA A10", _mem(memory_mib, 23028), lambda i: 0, lambda i: "0-15",
    )  # fmt: skip


def single_gpu(model: str | None = None, memory_mib: int | None = None) -> NodeTopology:
    """One GPU."""
    return _build(
        "single-gpu", 1, lambda i, j: "X",
        model or "Tesla T4", _mem(memory_mib, 15360), lambda i: 0, lambda i: "0-7",
    )  # fmt: skip


PresetBuilder = Callable[[str | None, int | None], NodeTopology]

PRESETS: dict[str, PresetBuilder] = {
    "dgx1-v100": dgx1_v100,
    "dgx-a100": dgx_a100,
    "dgx-h100": dgx_h100,
    "hgx-2-v100-16": hgx2_v100_16,
    "pcie-8gpu-2socket": pcie_8gpu_2socket,
    "pcie-4gpu": pcie_4gpu,
    "pcie-2gpu": pcie_2gpu,
    "single-gpu": single_gpu,
}


def preset_names() -> list[str]:
    """The preset names, in PRESETS order."""
    return list(PRESETS)


def preset_description(name: str) -> str:
    """One line describing a preset (its builder's docstring)."""
    doc = PRESETS[name].__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else name


def preset(name: str, model: str | None = None, memory_mib: int | None = None) -> NodeTopology:
    """The preset topology `name`, optionally with another GPU model or memory size.

    Raises UnknownPresetError (a KeyError) listing the valid names.
    """
    try:
        builder = PRESETS[name]
    except KeyError:
        raise UnknownPresetError(
            f"unknown topology preset {name!r}; valid presets: {', '.join(PRESETS)}"
        ) from None
    if memory_mib is not None and memory_mib < 0:
        raise ValueError(f"memory_mib must be >= 0, got {memory_mib}")
    return builder(model, memory_mib)
