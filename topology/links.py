"""Link kinds as `nvidia-smi topo -m` names them, and their estimated bandwidth.

Every figure is a unidirectional GB/s estimate; the sources are cited next to each number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# PCIe levels, best first. nvidia-smi legend: PIX = at most one PCIe bridge, PXB = several
# bridges without the host bridge, PHB = through a host bridge, NODE = across host bridges in
# one NUMA node, SYS = across the SMP interconnect (QPI/UPI). SOC is the pre-2017 name for SYS.
PCIE_LEVELS: tuple[str, ...] = ("PIX", "PXB", "PHB", "NODE", "SYS")
_ALIASES = {"SOC": "SYS"}
_NV_RE = re.compile(r"^NV(\d{1,2})$")

# Per-link NVLink rate, unidirectional GB/s:
# - NVLink 1 (P100): 20 GB/s per link per direction (NVIDIA Tesla P100 whitepaper, 2016, p.9).
# - NVLink 2 (V100): 25 GB/s per link per direction (NVIDIA Tesla V100 whitepaper, 2017, p.15;
#   6 links = 300 GB/s bidirectional).
# - NVLink 3 (A100): 25 GB/s per link per direction, 12 links = 600 GB/s bidirectional
#   (NVIDIA A100 Tensor Core GPU Architecture whitepaper, 2020, p.26).
# - NVLink 4 (H100): 25 GB/s per link per direction, 18 links = 900 GB/s bidirectional
#   (NVIDIA H100 Tensor Core GPU Architecture whitepaper, 2022, "fourth-generation NVLink").
# - NVLink 5 (B200): 50 GB/s per link per direction, 18 links = 1.8 TB/s bidirectional
#   (NVIDIA Blackwell architecture technical brief, 2024).
NVLINK_GBPS_PER_LINK: dict[int, float] = {1: 20.0, 2: 25.0, 3: 25.0, 4: 25.0, 5: 50.0}

# PCIe x16 unidirectional throughput after encoding overhead (PCI-SIG base specifications:
# gen3 8 GT/s 128b/130b = 15.75 GB/s, gen4 16 GT/s = 31.5 GB/s, gen5 32 GT/s = 63 GB/s).
PCIE_X16_GBPS: dict[int, float] = {3: 15.75, 4: 31.5, 5: 63.0}

# Share of the x16 rate that GPU peer-to-peer traffic reaches at each PCIe level. Estimates
# from published p2pBandwidthLatencyTest runs (CUDA samples): through one switch P2P runs near
# line rate; through the CPU root complex it drops, and across sockets (QPI/UPI) it roughly
# halves or worse. Chosen strictly decreasing so the scheduler always prefers the closer level.
PCIE_LEVEL_FACTOR: dict[str, float] = {"PIX": 1.0, "PXB": 0.9, "PHB": 0.75, "NODE": 0.6, "SYS": 0.4}


@dataclass(frozen=True, slots=True)
class Generation:
    """The link generations a GPU model speaks: NVLink version (0 = none) and PCIe gen."""

    nvlink: int
    pcie: int


# Longest prefix wins; matched case-insensitively against the GPU model name.
_MODEL_GENERATIONS: tuple[tuple[str, Generation], ...] = (
    ("GB200", Generation(5, 5)),
    ("B200", Generation(5, 5)),
    ("B100", Generation(5, 5)),
    ("H200", Generation(4, 5)),
    ("H100", Generation(4, 5)),
    ("H800", Generation(4, 5)),
    ("H20", Generation(4, 5)),
    ("L40", Generation(0, 4)),
    ("L4", Generation(0, 4)),
    ("A100", Generation(3, 4)),
    ("A800", Generation(3, 4)),
    ("A40", Generation(3, 4)),
    ("A30", Generation(3, 4)),
    ("A10", Generation(0, 4)),
    ("RTX 4090", Generation(0, 4)),
    ("RTX4090", Generation(0, 4)),
    ("RTX 3090", Generation(3, 4)),
    ("V100", Generation(2, 3)),
    ("T4", Generation(0, 3)),
    ("P100", Generation(1, 3)),
    ("P40", Generation(0, 3)),
    ("GTX 1080", Generation(0, 3)),
    ("1080", Generation(0, 3)),
)
DEFAULT_GENERATION = Generation(3, 4)


def generation_for_model(model: str) -> Generation:
    """The link generations of a GPU model name; unknown models get NVLink 3 / PCIe 4."""
    upper = model.upper().replace("NVIDIA ", "").replace("TESLA ", "").replace("GEFORCE ", "")
    best: tuple[int, Generation] | None = None
    for prefix, gen in _MODEL_GENERATIONS:
        if prefix in upper and (best is None or len(prefix) > best[0]):
            best = (len(prefix), gen)
    return best[1] if best else DEFAULT_GENERATION


class LinkError(ValueError):
    """A link token that is not one of nvidia-smi's link kinds."""


def normalize_link(token: str) -> str:
    """Canonical link kind for a token (`NV12`, `PIX`, ..., `X`); raises LinkError otherwise."""
    tok = token.strip().upper()
    tok = _ALIASES.get(tok, tok)
    if tok == "X" or tok in PCIE_LEVELS:
        return tok
    m = _NV_RE.match(tok)
    if m and 1 <= int(m.group(1)) <= 72:
        return f"NV{int(m.group(1))}"
    raise LinkError(f"unknown link kind {token!r} (expected X, NV<n>, PIX, PXB, PHB, NODE or SYS)")


def nvlink_count(link: str) -> int:
    """Number of bonded NVLinks in a link kind (0 for PCIe levels)."""
    return int(link[2:]) if link.startswith("NV") else 0


def link_bandwidth(link: str, gen: Generation) -> float:
    """Estimated unidirectional GB/s between two GPUs joined by `link`.

    NVLink pairs also share PCIe, so an NV link is never rated below the best PCIe level.
    """
    pcie = PCIE_X16_GBPS.get(gen.pcie, PCIE_X16_GBPS[4])
    n = nvlink_count(link)
    if n:
        per_link = NVLINK_GBPS_PER_LINK.get(gen.nvlink or 3, NVLINK_GBPS_PER_LINK[3])
        return max(n * per_link, pcie)
    if link == "X":
        return 0.0
    return pcie * PCIE_LEVEL_FACTOR[link]


def link_rank(link: str) -> int:
    """An order on link kinds, higher is closer: NV<n> by n above PIX > PXB > PHB > NODE > SYS."""
    n = nvlink_count(link)
    if n:
        return 100 + n
    if link == "X":
        return 1000
    return len(PCIE_LEVELS) - PCIE_LEVELS.index(link)
