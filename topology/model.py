"""The topology of one node: its GPUs, the link between every pair, and its NICs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from topology.links import generation_for_model, link_bandwidth, normalize_link


class TopologyError(ValueError):
    """A topology that is not internally consistent; the message names what is wrong."""


@dataclass(frozen=True, slots=True)
class GPU:
    """One GPU as nvidia-smi / NVML describe it."""

    index: int
    model: str = "unknown"
    uuid: str = ""
    memory_mib: int = 0
    numa_node: int | None = None
    pci_bus_id: str = ""
    cpu_affinity: str = ""


@dataclass(frozen=True, slots=True)
class NIC:
    """A network interface and its PCIe link kind to every GPU (index-aligned with GPUs)."""

    name: str
    gpu_links: tuple[str, ...]
    numa_node: int | None = None


@dataclass(frozen=True, slots=True)
class NodeTopology:
    """GPUs plus a symmetric link matrix (`X` on the diagonal) and NICs.

    `links[i][j]` is the link kind between GPU i and GPU j as `nvidia-smi topo -m` names it.
    """

    gpus: tuple[GPU, ...]
    links: tuple[tuple[str, ...], ...]
    nics: tuple[NIC, ...] = ()
    name: str = ""
    _bw: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.gpus)
        if len(self.links) != n:
            raise TopologyError(f"links: {len(self.links)} rows for {n} GPUs")
        norm: list[tuple[str, ...]] = []
        for i, row in enumerate(self.links):
            if len(row) != n:
                raise TopologyError(f"links[{i}]: {len(row)} entries for {n} GPUs")
            try:
                norm.append(tuple(normalize_link(x) for x in row))
            except ValueError as e:
                raise TopologyError(f"links[{i}]: {e}") from None
        for i in range(n):
            if self.gpus[i].index != i:
                raise TopologyError(f"gpus[{i}].index is {self.gpus[i].index}, expected {i}")
            if norm[i][i] != "X":
                raise TopologyError(f"links[{i}][{i}] is {norm[i][i]!r}, expected 'X'")
            for j in range(i + 1, n):
                if norm[i][j] != norm[j][i]:
                    raise TopologyError(
                        f"links not symmetric: GPU{i}->GPU{j} is {norm[i][j]}, "
                        f"GPU{j}->GPU{i} is {norm[j][i]}"
                    )
                if norm[i][j] == "X":
                    raise TopologyError(f"links[{i}][{j}] is 'X' off the diagonal")
        nics: list[NIC] = []
        for nic in self.nics:
            if len(nic.gpu_links) != n:
                raise TopologyError(
                    f"nic {nic.name}: {len(nic.gpu_links)} GPU links for {n} GPUs"
                )
            # NIC links get the same validation as GPU links, so `pxb` or a typo cannot slip
            # into a topology (and two spellings of one topology compare equal).
            try:
                nic_links = tuple(normalize_link(x) for x in nic.gpu_links)
            except ValueError as e:
                raise TopologyError(f"nic {nic.name}: {e}") from None
            if "X" in nic_links:
                raise TopologyError(f"nic {nic.name}: 'X' is not a link to a GPU")
            nics.append(nic if nic_links == nic.gpu_links else replace(nic, gpu_links=nic_links))
        object.__setattr__(self, "links", tuple(norm))
        object.__setattr__(self, "nics", tuple(nics))
        object.__setattr__(self, "gpus", tuple(self.gpus))  # lists in, hashable out

    @property
    def n(self) -> int:
        """Number of GPUs."""
        return len(self.gpus)

    @property
    def model(self) -> str:
        """The GPU model (of GPU 0; nodes are homogeneous in practice)."""
        return self.gpus[0].model if self.gpus else "none"

    def bandwidth(self) -> np.ndarray:
        """n x n float64 matrix of estimated unidirectional GB/s, 0 on the diagonal."""
        if self._bw is None:
            gen = generation_for_model(self.model)
            bw = np.array(
                [[link_bandwidth(lk, gen) for lk in row] for row in self.links], dtype=np.float64
            ).reshape(self.n, self.n)
            bw.setflags(write=False)
            object.__setattr__(self, "_bw", bw)
        assert self._bw is not None
        return self._bw

    def key(self) -> str:
        """A digest of what decides placement (links and GPU model), shared by equal topologies."""
        h = hashlib.sha1(self.model.encode())
        for row in self.links:
            h.update(("|".join(row) + ";").encode())
        return h.hexdigest()[:16]

    def numa_split(self) -> dict[int | None, tuple[int, ...]]:
        """GPU indices grouped by NUMA node."""
        out: dict[int | None, list[int]] = {}
        for g in self.gpus:
            out.setdefault(g.numa_node, []).append(g.index)
        return {k: tuple(v) for k, v in out.items()}
