"""Render a NodeTopology as the text of `nvidia-smi topo -m`: the inverse of the parser, for
round-trip tests and for writing sample files in tests."""

from __future__ import annotations

from topology.links import link_rank
from topology.model import NIC, NodeTopology
from topology.smi import CPU_AFFINITY, NUMA_AFFINITY

_LEGEND = """Legend:

  X    = Self
  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)
  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node
  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)
  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)
  PIX  = Connection traversing at most a single PCIe bridge
  NV#  = Connection traversing a bonded set of # NVLinks
"""  # noqa: E501  (nvidia-smi's own legend, verbatim)


class TopologyParseError(ValueError):
    """Text that is not a readable `nvidia-smi topo -m` matrix.

    `line` is the 1-based line number and `token` the offending token ("" when there is none).
    """


def _nic_pair_link(a: NIC, b: NIC) -> str:
    """An estimate of the NIC-to-NIC link, which the model does not keep.

    The closest level reachable through a common GPU: for each GPU the worse of the two NIC
    links, then the best over GPUs. Only there so the rendered matrix is complete.
    """
    best = "SYS"
    for la, lb in zip(a.gpu_links, b.gpu_links, strict=True):
        worse = la if link_rank(la) <= link_rank(lb) else lb
        worse = "PIX" if worse.startswith("NV") else worse
        if link_rank(worse) > link_rank(best):
            best = worse
    return best


def render_topo_m(topo: NodeTopology) -> str:
    """The topology as `nvidia-smi topo -m` prints it (tab-separated, with legends).

    NICs are written as NIC0.. with a NIC Legend giving their names, as recent drivers do.
    Empty affinities are written as N/A so the text survives tabs being turned into spaces.
    """
    n = topo.n
    nic_cols = [f"NIC{i}" for i in range(len(topo.nics))]
    cols = [f"GPU{i}" for i in range(n)] + nic_cols
    out = ["\t" + "\t".join([*cols, CPU_AFFINITY, NUMA_AFFINITY])]

    def numa(v: int | None) -> str:
        return "N/A" if v is None else str(v)

    for g in topo.gpus:
        cells = [" X " if j == g.index else topo.links[g.index][j] for j in range(n)]
        cells += [nic.gpu_links[g.index] for nic in topo.nics]
        cells += [g.cpu_affinity or "N/A", numa(g.numa_node)]
        out.append(f"GPU{g.index}\t" + "\t".join(cells))
    for a_i, a in enumerate(topo.nics):
        cells = list(a.gpu_links)
        cells += [" X " if b_i == a_i else _nic_pair_link(a, b) for b_i, b in enumerate(topo.nics)]
        cells += ["N/A", numa(a.numa_node)]
        out.append(f"{nic_cols[a_i]}\t" + "\t".join(cells))
    text = "\n".join(out) + "\n\n" + _LEGEND
    if topo.nics:
        text += "\nNIC Legend:\n\n"
        text += "".join(f"  {c}: {nic.name}\n" for c, nic in zip(nic_cols, topo.nics, strict=True))
    return text
