"""Presets: round trips through text and JSON, the real DGX-1 matrix, known best sets."""

from __future__ import annotations

import itertools

import pytest
from dgx1_topo_matrix import DGX1_TOPO_ROWS
from topo_m_render import render_topo_m

from topology.annotation import from_json, to_json
from topology.presets import PRESETS, UnknownPresetError, preset, preset_names
from topology.quality import best_gpus, set_quality, tables_for
from topology.smi import parse_topo_m
from topology.tables import build_tables


@pytest.mark.parametrize("name", preset_names())
def test_preset_text_round_trip(name: str) -> None:
    topo = preset(name)
    assert topo.name == name
    mem = topo.gpus[0].memory_mib
    once = parse_topo_m(render_topo_m(topo), model=topo.model, memory_mib=mem, name=name)
    assert once == topo
    twice = parse_topo_m(render_topo_m(once), model=topo.model, memory_mib=mem, name=name)
    assert twice == topo
    assert render_topo_m(twice) == render_topo_m(topo)


@pytest.mark.parametrize("name", preset_names())
def test_preset_json_round_trip(name: str) -> None:
    topo = preset(name)
    back = from_json(to_json(topo))
    assert back == topo
    assert to_json(back) == to_json(topo)


def test_required_presets_and_hardware() -> None:
    for name in ("dgx1-v100", "dgx-a100", "dgx-h100", "pcie-8gpu-2socket", "pcie-4gpu",
                 "pcie-2gpu", "single-gpu", "hgx-2-v100-16"):  # fmt: skip
        assert name in PRESETS
    assert "nvl72-domain" not in PRESETS
    v100, a100, h100 = preset("dgx1-v100"), preset("dgx-a100"), preset("dgx-h100")
    assert (v100.n, v100.gpus[0].memory_mib, "V100" in v100.model) == (8, 32768, True)
    assert (a100.gpus[0].memory_mib, "A100" in a100.model) == (81920, True)
    assert (h100.gpus[0].memory_mib, "H100" in h100.model) == (81920, True)
    for t in (v100, a100, h100):
        assert t.numa_split() == {0: (0, 1, 2, 3), 1: (4, 5, 6, 7)}
    assert a100.nics and h100.nics
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]
    assert {a100.links[i][j] for i, j in pairs} == {"NV12"}
    assert {h100.links[i][j] for i, j in pairs} == {"NV18"}
    hgx2 = preset("hgx-2-v100-16")
    assert hgx2.n == 16 and {hgx2.links[0][j] for j in range(1, 16)} == {"NV6"}
    assert preset("single-gpu").n == 1 and preset("pcie-2gpu").n == 2


def test_dgx1_v100_is_the_hybrid_cube_mesh() -> None:
    topo = preset("dgx1-v100")
    assert [list(r) for r in topo.links] == [r.split() for r in DGX1_TOPO_ROWS]
    # Each V100 uses all six NVLinks; both quads are fully NVLinked.
    for i in range(8):
        assert sum(int(lk[2:]) for lk in topo.links[i] if lk.startswith("NV")) == 6
    for quad in ((0, 1, 2, 3), (4, 5, 6, 7)):
        assert all(topo.links[i][j].startswith("NV") for i, j in itertools.combinations(quad, 2))
    assert [g.numa_node for g in topo.gpus] == [0] * 4 + [1] * 4


def test_pcie_8gpu_2socket_levels() -> None:
    topo = preset("pcie-8gpu-2socket")
    assert topo.links[0][1] == topo.links[2][3] == topo.links[6][7] == "PIX"
    assert topo.links[0][2] == topo.links[5][7] == "PXB"
    assert topo.links[0][4] == topo.links[3][7] == "SYS"


def test_unknown_preset_lists_valid_names() -> None:
    with pytest.raises(KeyError) as info:
        preset("dgx-9000")
    assert isinstance(info.value, UnknownPresetError)
    msg = str(info.value)
    assert "dgx-9000" in msg and all(n in msg for n in preset_names())


def test_model_and_memory_override() -> None:
    topo = preset("pcie-4gpu", model="Tesla T4", memory_mib=15360)
    assert {(g.model, g.memory_mib) for g in topo.gpus} == {("Tesla T4", 15360)}
    assert preset("pcie-4gpu", memory_mib=0).gpus[0].memory_mib == 0
    # Other models change bandwidth estimates, hence the table key.
    assert topo.key() != preset("pcie-4gpu").key()


# Known answers on empty nodes.


def test_dgx1_best_four_is_a_quad() -> None:
    tables = build_tables(preset("dgx1-v100"))
    mask, q = tables.best(0xFF, 4)
    assert mask in (0x0F, 0xF0) and q == 1.0


def test_pcie_8gpu_two_gpus_get_a_pix_pair() -> None:
    topo = preset("pcie-8gpu-2socket")
    tables = build_tables(topo)
    mask, q = tables.best(0xFF, 2)
    i, j = (b for b in range(8) if mask >> b & 1)
    assert topo.links[i][j] == "PIX" and q == 1.0
    # With one GPU of every PIX pair busy, the best pair is PXB (same socket), never SYS.
    mask2, q2 = tables.best(0b10101010, 2)
    i, j = (b for b in range(8) if mask2 >> b & 1)
    assert topo.links[i][j] == "PXB" and 0 < q2 < 1
    assert set_quality(tables, [0, 4]) < q2


def test_dgx_h100_every_set_has_quality_one() -> None:
    tables = tables_for(preset("dgx-h100"))
    assert (tables.set_quality[1:] == 1.0).all()
    assert all(best_gpus(preset("dgx-h100"), None, k) is not None for k in range(1, 9))


def test_single_gpu_pod_keeps_nvlinked_groups_whole() -> None:
    # On DGX-1 with quad {0..3} fully free and GPU 4 alone on the other side, a 1-GPU pod
    # should take GPU 4 rather than break the quad.
    tables = build_tables(preset("dgx1-v100"))
    mask, _ = tables.best(0b00011111, 1)
    assert mask == 0b00010000
