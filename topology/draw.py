"""Draw a node's GPU link graph to a PNG (networkx layout, matplotlib Agg canvas).

NVLink edges are green and thick (width grows with the number of links); PCIe levels get
thinner, lighter edges the farther they go, so the well-linked groups stand out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import networkx as nx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from topology.links import link_rank, nvlink_count
from topology.model import NodeTopology

# PCIe level -> (colour, width, line style); farther levels are lighter and thinner.
LineStyle = Literal["solid", "dashed", "dotted"]
_PCIE_STYLE: dict[str, tuple[str, float, LineStyle]] = {
    "PIX": ("#1f5fbf", 2.4, "solid"),
    "PXB": ("#5b8fd9", 1.8, "solid"),
    "PHB": ("#e08a1e", 1.4, "dashed"),
    "NODE": ("#9a9a9a", 1.0, "dashed"),
    "SYS": ("#cfcfcf", 0.6, "dotted"),
}
_NUMA_COLOURS = ("#cde4ff", "#ffe1c4", "#d8f5d0", "#f3d6f5", "#fff4b8", "#d9d9d9")


def _edge_style(link: str) -> tuple[str, float, LineStyle]:
    n = nvlink_count(link)
    if n:
        # Darker green and wider with more bonded links; capped so NV18 stays drawable.
        shade = "#8fd68f" if n == 1 else "#3aa63a" if n < 4 else "#1b7a1b" if n < 12 else "#0b4f0b"
        return shade, min(9.0, 2.0 + 1.6 * math.log2(n)), "solid"
    return _PCIE_STYLE[link]


def _layout(topo: NodeTopology) -> dict[int | str, tuple[float, float]]:
    """GPUs on a circle, NUMA nodes on contiguous arcs (GPU order within each)."""
    order = [
        g
        for _, members in sorted(
            topo.numa_split().items(),
            key=lambda kv: (kv[0] is None, kv[0] if kv[0] is not None else 0),
        )
        for g in members
    ]
    n = len(order)
    pos: dict[int | str, tuple[float, float]] = {}
    for k, g in enumerate(order):
        a = math.pi / 2 - 2 * math.pi * k / max(n, 1)
        pos[g] = (math.cos(a), math.sin(a))
    return pos


def _uniform_nvlink(topo: NodeTopology) -> str | None:
    """The NV kind linking every pair, if all pairs share one (an NVSwitch system)."""
    kinds = {topo.links[i][j] for i in range(topo.n) for j in range(i + 1, topo.n)}
    if topo.n >= 3 and len(kinds) == 1:
        (kind,) = kinds
        return kind if nvlink_count(kind) else None
    return None


def draw_topology(topo: NodeTopology, path: str | Path, *, dpi: int = 110) -> Path:
    """Write a PNG of the GPU link graph of `topo` to `path`; returns the path.

    An NVSwitch system (the same NV<n> between every pair) is drawn as a star through an
    NVSwitch hub, since its all-pairs graph would be a solid blob.
    """
    graph = nx.Graph()
    graph.add_nodes_from(range(topo.n))
    pos = _layout(topo)
    switch = _uniform_nvlink(topo)
    if switch:
        graph.add_node("NVSwitch")
        pos["NVSwitch"] = (0.0, 0.0)
        for i in range(topo.n):
            graph.add_edge(i, "NVSwitch", link=switch)
    else:
        for i in range(topo.n):
            for j in range(i + 1, topo.n):
                graph.add_edge(i, j, link=topo.links[i][j])
    size = 6.5 if topo.n <= 8 else 8.5
    fig = Figure(figsize=(size + 2.5, size), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()

    # Thinner lines when many edges cross the circle, so the picture does not fill in.
    thin = min(1.0, math.sqrt(28 / max(graph.number_of_edges(), 1)))
    # Weakest links first so NVLink is drawn on top.
    edges = sorted(graph.edges(data="link"), key=lambda e: link_rank(str(e[2])))
    for u, v, link in edges:
        colour, width, style = _edge_style(str(link))
        nx.draw_networkx_edges(
            graph, pos, edgelist=[(u, v)], ax=ax, edge_color=colour, width=width * thin,
            style=style, node_size=0,
        )  # fmt: skip
    if switch:
        nx.draw_networkx_nodes(
            graph, pos, nodelist=["NVSwitch"], ax=ax, node_shape="s", node_size=2600,
            node_color="#0b4f0b",
        )  # fmt: skip
        nx.draw_networkx_labels(
            graph, pos, labels={"NVSwitch": f"NVSwitch\n{switch}\nevery pair"}, ax=ax,
            font_size=8, font_color="white",
        )  # fmt: skip
    numa_ids = sorted({g.numa_node for g in topo.gpus}, key=lambda x: (x is None, x or 0))
    colour_of = {nid: _NUMA_COLOURS[k % len(_NUMA_COLOURS)] for k, nid in enumerate(numa_ids)}
    nx.draw_networkx_nodes(
        graph,
        pos,
        nodelist=list(range(topo.n)),
        ax=ax,
        node_size=1100 if topo.n <= 8 else 800,
        node_color=[colour_of[g.numa_node] for g in topo.gpus],
        edgecolors="#333333",
        linewidths=1.2,
    )
    nx.draw_networkx_labels(
        graph,
        pos,
        labels={g.index: f"GPU{g.index}" for g in topo.gpus},
        ax=ax,
        font_size=9 if topo.n <= 8 else 7,
    )
    if topo.n <= 8 and not switch:
        # Label the NVLink edges with their kind; PCIe edges are told apart by style.
        nv = {(u, v): str(lk) for u, v, lk in edges if nvlink_count(str(lk))}
        nx.draw_networkx_edge_labels(graph, pos, edge_labels=nv, ax=ax, font_size=7)

    kinds = sorted({lk for row in topo.links for lk in row if lk != "X"}, key=link_rank,
                   reverse=True)  # fmt: skip
    handles = [
        Line2D([0], [0], color=_edge_style(k)[0], lw=_edge_style(k)[1],
               linestyle=_edge_style(k)[2], label=k)
        for k in kinds
    ]  # fmt: skip
    handles += [
        Line2D([0], [0], marker="o", color="w", markerfacecolor=colour_of[nid],
               markeredgecolor="#333333", markersize=11,
               label=f"NUMA {nid}" if nid is not None else "NUMA n/a")
        for nid in numa_ids
    ]  # fmt: skip
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    title = topo.name or "topology"
    ax.set_title(f"{title}: {topo.n} x {topo.model}", fontsize=11)
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.3, 1.3)
    ax.set_aspect("equal")
    out = Path(path)
    fig.savefig(out, format="png", bbox_inches="tight")
    return out
