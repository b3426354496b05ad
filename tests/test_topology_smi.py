"""nvidia-smi topo -m parser and renderer: real samples, pasted variants, malformed inputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import require_shared
from topo_m_render import render_topo_m

from topology.model import GPU, NIC, NodeTopology
from topology.smi import TopologyParseError, parse_topo_m

# file -> (GPUs, NIC names, NUMA node per GPU, cpu affinity of GPU0, a link to check)
SAMPLES: dict[str, tuple[int, list[str], Sequence[int | None], str, tuple[int, int, str]]] = {
    "a100x8_nv12_nic_legend.txt": (
        8, [f"mlx5_{i}" for i in range(2, 18)] + ["mlx5_bond_0"], [0] * 8, "0-103", (0, 7, "NV12"),
    ),
    "dgx1_pcie_only_topo_mp.txt": (
        8, [f"mlx5_{i}" for i in range(4)], [0] * 4 + [1] * 4, "0-19,40-59", (0, 2, "PHB"),
    ),
    "dgx_a100_nv12_mlx5.txt": (
        8, [f"mlx5_{i}" for i in range(12)], [3, 3, 1, 1, 7, 7, 5, 5], "48-63,176-191",
        (3, 4, "NV12"),
    ),
    "h100x8_nv18_12nic_hgx.txt": (
        8, [f"mlx5_{i}" for i in range(12)], [0] * 4 + [1] * 4, "0-55,112-167", (1, 6, "NV18"),
    ),
    "h100x8_nv18_thunderkittens-issue167.txt": (
        8, [], [0] * 4 + [1] * 4, "0-47,96-143", (2, 5, "NV18"),
    ),
    "pcie_2x1080ti_phb_consumer.txt": (2, [], [None, None], "0-11", (0, 1, "PHB")),
    "pcie_4xA10_sys_no_nvlink.txt": (4, ["mlx5_0", "mlx5_1"], [0] * 4, "0-127", (0, 3, "SYS")),
    "pcie_8gpu_pix_pxb_sys_vllm-issue11122.txt": (8, [], [None] * 8, "0-95", (0, 1, "PIX")),
    "pcie_8xRTX4090_sys_phb_go-gpuallocator-issue17.txt": (
        8, ["NIC0", "NIC1"], [0] * 4 + [1] * 4, "0-55,112-167", (6, 7, "SYS"),
    ),
}  # fmt: skip


def _samples_dir() -> Path:
    return require_shared("topology-samples")


def test_every_shared_sample_is_listed_and_parses() -> None:
    files = sorted(p.name for p in _samples_dir().glob("*.txt"))
    assert files, "no samples found"
    for name in files:
        topo = parse_topo_m((_samples_dir() / name).read_text())
        assert topo.n >= 1, name
    # New samples should get expectations here too.
    assert set(files) <= set(SAMPLES), set(files) - set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_contents(name: str) -> None:
    n, nics, numa, cpu0, (a, b, link) = SAMPLES[name]
    text = (_samples_dir() / name).read_text()
    topo = parse_topo_m(text, model="NVIDIA A100-SXM4-80GB", memory_mib=81920)
    assert topo.n == n
    assert [nic.name for nic in topo.nics] == nics
    assert [g.numa_node for g in topo.gpus] == list(numa)
    assert topo.gpus[0].cpu_affinity == cpu0
    assert topo.links[a][b] == link == topo.links[b][a]
    assert all(g.model == "NVIDIA A100-SXM4-80GB" and g.memory_mib == 81920 for g in topo.gpus)
    assert all(len(nic.gpu_links) == n for nic in topo.nics)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_round_trips_and_survives_tabs_to_spaces(name: str) -> None:
    topo = parse_topo_m((_samples_dir() / name).read_text())
    text = render_topo_m(topo)
    assert parse_topo_m(text) == topo
    # Pasted from a terminal: tabs expanded to spaces.
    assert parse_topo_m(text.expandtabs(8)) == topo
    assert parse_topo_m(text.replace("\t", "  ")) == topo


def test_sample_nic_links() -> None:
    topo = parse_topo_m((_samples_dir() / "dgx1_pcie_only_topo_mp.txt").read_text())
    assert topo.nics[0].gpu_links == ("PIX", "PIX", "PHB", "PHB", "SYS", "SYS", "SYS", "SYS")
    h100 = parse_topo_m((_samples_dir() / "h100x8_nv18_12nic_hgx.txt").read_text())
    assert h100.nics[0].gpu_links[:2] == ("PIX", "PXB")
    rtx = parse_topo_m(
        (_samples_dir() / "pcie_8xRTX4090_sys_phb_go-gpuallocator-issue17.txt").read_text()
    )
    assert rtx.nics[0].gpu_links[6] == "PHB"


SPACES = """\
user@host:~$ nvidia-smi topo -m
        GPU0    GPU1    GPU2    mlx5_0  CPU Affinity    NUMA Affinity   GPU NUMA ID
GPU0     X      NV2     SYS     PIX     0-19,40-59      0               N/A
GPU1    NV2      X      SYS     PIX     0-19,40-59      0               N/A
GPU2    SYS     SYS      X      SYS     20-39           1               N/A
mlx5_0  PIX     PIX     SYS      X

Legend:

  X    = Self
"""


def test_spaces_prompt_and_nic_rows() -> None:
    topo = parse_topo_m(SPACES, model="Tesla V100-SXM2-32GB", memory_mib=32768)
    assert topo.links[0][1] == "NV2"
    assert topo.links[0][2] == "SYS"
    assert [g.numa_node for g in topo.gpus] == [0, 0, 1]
    assert topo.gpus[2].cpu_affinity == "20-39"
    assert topo.nics == (NIC("mlx5_0", ("PIX", "PIX", "SYS"), None),)


def test_minimal_forms() -> None:
    # No affinity columns, no legend, lowercase x, SOC alias.
    topo = parse_topo_m("GPU0 GPU1\nGPU0 x SOC\nGPU1 SOC x\n")
    assert topo.links[0][1] == "SYS"
    assert topo.gpus[0].numa_node is None and topo.gpus[0].cpu_affinity == ""
    # A single GPU.
    one = parse_topo_m("\tGPU0\tCPU Affinity\tNUMA Affinity\nGPU0\t X \t0-7\t0\n")
    assert one.n == 1 and one.gpus[0].numa_node == 0
    # NIC columns without NIC rows: links come from the GPU rows.
    nic_cols = parse_topo_m("GPU0 GPU1 NIC0\nGPU0 X PIX PXB\nGPU1 PIX X SYS\n")
    assert nic_cols.nics == (NIC("NIC0", ("PXB", "SYS")),)
    # Empty cells in a tab-separated row keep the columns aligned.
    tabs = "\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\nGPU0\t X \tPHB\t\t1\nGPU1\tPHB\t X \t\t1\n"
    t = parse_topo_m(tabs)
    assert [g.numa_node for g in t.gpus] == [1, 1] and t.gpus[0].cpu_affinity == ""


def _topo(links: list[list[str]], **kw: object) -> NodeTopology:
    n = len(links)
    return NodeTopology(
        gpus=tuple(GPU(index=i, model="NVIDIA H100 80GB HBM3", **kw) for i in range(n)),  # type: ignore[arg-type]
        links=tuple(tuple(r) for r in links),
    )


def test_render_round_trip_with_nics_and_numa() -> None:
    base = _topo([["X", "NV4", "SYS"], ["NV4", "X", "NODE"], ["SYS", "NODE", "X"]])
    topo = NodeTopology(
        gpus=tuple(
            GPU(index=i, model=base.model, numa_node=[0, None, 1][i],
                cpu_affinity=["0-3", "", "4-7"][i]) for i in range(3)
        ),
        links=base.links,
        nics=(NIC("ib0", ("PIX", "PXB", "SYS"), 0), NIC("bond_0", ("SYS", "SYS", "PIX"), None)),
        name="t",
    )  # fmt: skip
    text = render_topo_m(topo)
    assert "NIC Legend" in text
    assert parse_topo_m(text, model=base.model, name="t") == topo


# (text, line, token, words expected in the message)
MALFORMED: list[tuple[str, str, int, str, str]] = [
    ("empty", "", 1, "", "empty"),
    ("blank lines", "\n  \n\t\n", 1, "", "empty"),
    ("no header", "$ nvidia-smi topo -m\nNVIDIA-SMI has failed\n", 1, "$", "no header"),
    ("rows without header", "hello\nGPU0 X NV1\nGPU1 NV1 X\n", 2, "GPU0", "before any header"),
    ("unknown token", "GPU0 GPU1\nGPU0 X FOO\nGPU1 FOO X\n", 2, "FOO", "unknown link"),
    ("unknown NV count", "GPU0 GPU1\nGPU0 X NV99\nGPU1 NV99 X\n", 2, "NV99", "unknown link"),
    (
        "truncated: missing GPU row",
        "\tGPU0\tGPU1\tGPU2\nGPU0\t X \tNV1\tNV1\nGPU1\tNV1\t X \tNV1\n\nLegend:\n",
        4, "GPU2", "truncated",
    ),
    ("truncated: missing row at EOF", "GPU0 GPU1\nGPU0 X PIX\n", 3, "GPU1", "truncated"),
    ("short row", "GPU0 GPU1 GPU2\nGPU0 X PIX PIX\nGPU1 PIX X\n", 3, "GPU1", "short row"),
    (
        "short row into affinity",
        "GPU0 GPU1 GPU2 CPU Affinity\nGPU0 X PIX PIX 0-7\nGPU1 PIX X 0-7\n",
        3, "0-7", "short row",
    ),
    ("asymmetric", "GPU0 GPU1\nGPU0 X NV1\nGPU1 NV2 X\n", 3, "NV2", "asymmetric"),
    (
        "asymmetric NIC",
        "GPU0 GPU1 NIC0\nGPU0 X PIX PIX\nGPU1 PIX X SYS\nNIC0 PIX PXB X\n",
        4, "PXB", "asymmetric",
    ),
    ("duplicate row", "GPU0 GPU1\nGPU0 X PIX\nGPU0 X PIX\n", 3, "GPU0", "duplicate row"),
    ("non-X diagonal", "GPU0 GPU1\nGPU0 NV1 NV1\nGPU1 NV1 X\n", 2, "NV1", "diagonal"),
    ("X off the diagonal", "GPU0 GPU1\nGPU0 X X\nGPU1 X X\n", 2, "X", "off the diagonal"),
    ("row not in header", "GPU0 GPU1\nGPU0 X PIX\nGPU1 PIX X\nGPU2 SYS SYS X\n", 4, "GPU2",
     "no column"),
    ("header out of order", "GPU0 GPU2\nGPU0 X PIX\nGPU2 PIX X\n", 1, "GPU2", "out of order"),
    ("duplicate header", "GPU0 GPU1 GPU1\n", 1, "GPU1", "duplicate column"),
    (
        "extra token",
        "GPU0 GPU1 NUMA Affinity\nGPU0 X PIX 0 7\nGPU1 PIX X 0\n",
        2, "7", "unexpected token",
    ),
    (
        "bad NUMA",
        "GPU0 GPU1 NUMA Affinity\nGPU0 X PIX zero\nGPU1 PIX X 0\n",
        2, "zero", "NUMA Affinity",
    ),
    (
        "truncated inside NIC rows",
        "GPU0 GPU1 NIC0 NIC1\nGPU0 X PIX PIX SYS\nGPU1 PIX X SYS PIX\nNIC0 PIX SYS X SYS\n",
        5, "NIC1", "truncated",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "token", "words"),
    [pytest.param(t, ln, tok, w, id=i) for i, t, ln, tok, w in MALFORMED],
)
def test_malformed(text: str, line: int, token: str, words: str) -> None:
    with pytest.raises(TopologyParseError) as info:
        parse_topo_m(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.line, err.token) == (line, token), str(err)
    assert words in str(err)
    assert f"line {line}" in str(err) and repr(token) in str(err)


def test_truncated_real_sample() -> None:
    text = (_samples_dir() / "dgx_a100_nv12_mlx5.txt").read_text()
    lines = text.splitlines()
    # Cut GPU5's row in the middle: a short row.
    cut = "\n".join([*lines[:7], lines[7][: len(lines[7]) // 3]])
    with pytest.raises(TopologyParseError) as info:
        parse_topo_m(cut)
    assert info.value.line == 8
    # Drop the last GPU row: truncated matrix naming GPU7.
    with pytest.raises(TopologyParseError) as info2:
        parse_topo_m("\n".join(lines[:9]))
    assert (info2.value.line, info2.value.token) == (10, "GPU7")
