"""`gts topo` through the real dispatcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from topo_m_render import render_topo_m

from scheduler.cli import main
from topology.annotation import from_dict, to_json
from topology.presets import preset, preset_names


def test_presets_lists_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topo", "presets"]) == 0
    out = capsys.readouterr().out
    for name in preset_names():
        assert name in out
    assert "NV2x8 NV1x8 SYSx12" in out  # dgx1-v100 link summary


def test_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topo", "show", "dgx-h100", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["v"] == 1 and len(obj["gpus"]) == 8
    assert obj["links"] == ["NV18"] * 28
    assert set(obj["best_sets"]) == {str(k) for k in range(1, 9)}
    for k, best in obj["best_sets"].items():
        assert len(best["gpus"]) == int(k) and best["quality"] == 1.0
    best_sets = obj.pop("best_sets")
    assert from_dict(obj) == preset("dgx-h100")
    assert best_sets["8"]["gpus"] == list(range(8))


def test_show_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topo", "show", "dgx1-v100"]) == 0
    out = capsys.readouterr().out
    assert "NUMA" in out and "node 0: GPUs 0, 1, 2, 3" in out
    assert "k= 4  GPUs {0, 1, 2, 3}  quality 1.000" in out
    assert "NV1" in out and "mlx5_0" in out


def test_show_file_with_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "node.txt"
    f.write_text("$ nvidia-smi topo -m\n" + render_topo_m(preset("pcie-4gpu")))
    assert main(["topo", "show", str(f), "--json", "--model", "Tesla T4",
                 "--memory-mib", "15360"]) == 0  # fmt: skip
    obj = json.loads(capsys.readouterr().out)
    assert obj["gpus"][0]["model"] == "Tesla T4" and obj["gpus"][0]["memory_mib"] == 15360
    assert obj["best_sets"]["2"]["gpus"] in ([0, 1], [2, 3])
    j = tmp_path / "node.json"
    j.write_text(to_json(preset("dgx-a100")))
    assert main(["topo", "show", str(j)]) == 0
    assert "NV12" in capsys.readouterr().out


def test_show_malformed_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.txt"
    f.write_text("GPU0 GPU1\nGPU0 X NV1\nGPU1 NV3 X\n")
    assert main(["topo", "show", str(f)]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "'NV3'" in err and "Traceback" not in err
    j = tmp_path / "bad.json"
    j.write_text('{"v": 9, "gpus": [], "links": []}')
    assert main(["topo", "show", str(j)]) == 2
    assert "v" in capsys.readouterr().err
    assert main(["topo", "show", "no-such-thing"]) == 2
    assert "dgx1-v100" in capsys.readouterr().err


def test_show_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "dgx1.png"
    assert main(["topo", "show", "dgx1-v100", "--png", str(png), "--json"]) == 0
    json.loads(capsys.readouterr().out)  # stdout stays pure JSON
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    big = tmp_path / "hgx2.png"
    assert main(["topo", "show", "hgx-2-v100-16", "--png", str(big)]) == 0
    assert big.read_bytes()[:4] == b"\x89PNG"


def test_parse_prints_annotation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "n.txt"
    f.write_text(render_topo_m(preset("dgx-h100")))
    assert main(["topo", "parse", str(f), "--model", "NVIDIA H100 80GB HBM3",
                 "--memory-mib", "81920"]) == 0  # fmt: skip
    obj = json.loads(capsys.readouterr().out)
    assert from_dict(obj).links == preset("dgx-h100").links


def test_topo_without_subcommand() -> None:
    assert main(["topo"]) == 2
