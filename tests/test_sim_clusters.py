"""Cluster loaders: the Alibaba node CSV with the preset map, YAML specs, the default cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.clusters import (
    DEFAULT_POOLS,
    ClusterError,
    PresetMap,
    cluster_kind,
    cluster_summary,
    default_cluster,
    load_cluster,
    load_preset_map,
    preset_map_from,
)

NODES = "traces/alibaba-gpu-v2023/openb_node_list_gpu_node.csv"


def test_trace_nodes_get_presets_by_model_and_count(shared: Path) -> None:
    nodes = load_cluster(shared / NODES)
    assert len(nodes) == 1213
    assert sum(n.topology.n for n in nodes) == 6212
    by_kind = {(n.gpu_model, n.topology.n): n.topology for n in nodes}
    assert by_kind[("G2", 8)].name == "dgx-a100"
    assert by_kind[("V100M32", 8)].name == "dgx1-v100"
    assert by_kind[("T4", 2)].name == "pcie-2gpu"
    assert by_kind[("V100M16", 4)].name == "pcie-4gpu"
    assert by_kind[("A10", 1)].name == "single-gpu"
    # The trace's model replaces the preset's, so gpu_spec constraints match node models.
    assert all(g.model == "G2" for g in by_kind[("G2", 8)].gpus)
    assert by_kind[("T4", 2)].gpus[0].memory_mib == 15360
    # One topology object per (model, count): subset tables are built once per kind.
    assert len({id(n.topology) for n in nodes}) == len(by_kind)


def test_preset_map_file_overrides_defaults(shared: Path, tmp_path: Path) -> None:
    pm_file = tmp_path / "map.yaml"
    pm_file.write_text("presets:\n  - {model: G2, gpus: 8, preset: pcie-8gpu-2socket}\n"
                       "gpu_memory_mib: {G2: 24576}\n")
    pm = load_preset_map(pm_file)
    nodes = load_cluster(shared / NODES, preset_map=pm)
    g2 = next(n for n in nodes if n.gpu_model == "G2")
    assert g2.topology.name == "pcie-8gpu-2socket"
    assert g2.topology.gpus[0].memory_mib == 24576
    g3 = next(n for n in nodes if n.gpu_model == "G3")
    assert g3.topology.name == "dgx-a100"  # defaults still apply behind the file's rules


def test_preset_map_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"presets\[0\]\.preset"):
        preset_map_from({"presets": [{"model": "G2", "gpus": 8, "preset": "no-such"}]})
    with pytest.raises(ClusterError, match=r"presets\[0\]\.gpus"):
        preset_map_from({"presets": [{"model": "G2", "gpus": 0, "preset": "dgx-a100"}]})
    with pytest.raises(ClusterError, match="unknown key 'rules'"):
        preset_map_from({"rules": []})
    assert PresetMap().preset_for("V100M16", 8) == "dgx1-v100"
    assert PresetMap().preset_for("X", 3) is None


def test_bad_node_rows(tmp_path: Path) -> None:
    path = tmp_path / "nodes.csv"
    path.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,1000,1024,2,T4\nn1,lots,1024,2,T4\n")
    with pytest.raises(ClusterError, match=r"nodes\.csv:3: column 'cpu_milli'"):
        load_cluster(path)
    path.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,1000,1024,3,T4\n")
    with pytest.raises(ClusterError, match=r":2: no preset rule for 3 x T4"):
        load_cluster(path)
    path.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,1000,1024,0,\nn1,8000,4096,1,P100\n")
    nodes = load_cluster(path)
    assert [n.topology.n for n in nodes] == [0, 1]


def test_yaml_cluster_uses_the_shared_schema(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("network: {block: 2}\npools:\n"
                    "  - {name: a, count: 3, preset: dgx-h100, cpu: '224', memory: 2Ti}\n"
                    "  - {name: b, count: 1, gpus: 2, gpu_model: A10, cpu: '32', memory: 128Gi}\n")
    assert cluster_kind(path) == "yaml"
    nodes = load_cluster(path)
    assert [n.topology.n for n in nodes] == [8, 8, 8, 2]
    assert nodes[0].levels[1] == nodes[1].levels[1] != nodes[2].levels[1]
    path.write_text("pools:\n  - {name: a, count: 0, preset: dgx-h100, cpu: '1', memory: 1Gi}\n")
    with pytest.raises(ClusterError, match="count"):
        load_cluster(path)


def test_default_cluster() -> None:
    nodes = default_cluster()
    s = cluster_summary(nodes, "default")
    assert s["nodes"] == sum(p[0] for p in DEFAULT_POOLS) == 64
    assert s["gpus"] == 432
    assert len({n.name for n in nodes}) == 64
    assert all(len(n.levels) == 4 and n.levels[1].startswith("block-") for n in nodes)
    assert len({n.levels[1] for n in nodes}) == 8 and len({n.levels[2] for n in nodes}) == 2
