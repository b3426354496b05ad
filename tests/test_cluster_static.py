"""The cluster spec file of `gts serve --cluster` and the simulator: schema and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scheduler.cluster.cache import ClusterCache
from scheduler.cluster.nodes import generic_topology
from scheduler.cluster.static import StaticClusterError, cluster_from_dict, load_cluster_file
from topology.presets import preset

SPEC = """
network: {block: 2, spine: 4, datacenter: dc-0}
pools:
  - name: h100
    count: 3
    preset: dgx-h100
    gpu_model: H100-SXM5-80GB
    gpu_memory: 80Gi
    cpu: 224
    memory: 2Ti
  - name: t4
    count: 2
    gpus: 4
    gpu_model: T4
    gpu_memory_mib: 15360
    cpu: 64000m
    memory: 256Gi
    network: {accelerator: nvl-1, block: 1}
  - name: cpu
    count: 1
    gpus: 0
    cpu: "8"
    memory: 32Gi
"""


def test_pools_expand_to_nodes(tmp_path: Path) -> None:
    f = tmp_path / "cluster.yaml"
    f.write_text(SPEC)
    nodes = load_cluster_file(f)
    assert [n.name for n in nodes] == ["h100-00", "h100-01", "h100-02", "t4-00", "t4-01",
                                       "cpu-00"]
    h = nodes[0]
    assert h.topology.links == preset("dgx-h100").links
    assert h.gpu_model == "H100-SXM5-80GB" and h.topology.gpus[0].memory_mib == 81920
    assert (h.cpu_milli, h.memory_mib) == (224_000, 2 * 1024 * 1024)
    t = nodes[3]
    assert t.topology == generic_topology(4, "T4", 15360) and t.cpu_milli == 64_000
    assert nodes[5].topology.n == 0 and nodes[5].gpu_model == ""
    # Levels: accelerator, block, spine, datacenter. Top-level groups count across pools in
    # file order; a pool's own map counts within the pool.
    assert [n.levels for n in nodes] == [
        ("", "block-0", "spine-0", "dc-0"),
        ("", "block-0", "spine-0", "dc-0"),
        ("", "block-1", "spine-0", "dc-0"),
        ("nvl-1", "t4-block-0", "spine-0", "dc-0"),
        ("nvl-1", "t4-block-1", "spine-1", "dc-0"),
        ("", "block-2", "spine-1", "dc-0"),
    ]


def test_json_file_and_custom_levels(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"levels": ["rack"], "network": {"rack": 2}, "pools": [
        {"name": "a", "count": 3, "preset": "pcie-4gpu", "cpu": 16, "memory": "64Gi"}]}))
    nodes = load_cluster_file(f)
    assert [n.levels for n in nodes] == [("rack-0",), ("rack-0",), ("rack-1",)]
    assert nodes[0].topology.links == preset("pcie-4gpu").links


def test_static_cache_serves_the_spec(tmp_path: Path) -> None:
    f = tmp_path / "cluster.yaml"
    f.write_text(SPEC)
    cache = ClusterCache()
    cache.replace_specs(load_cluster_file(f))
    assert cache.snapshot.n_nodes == 6 and int(cache.snapshot.gpu_count.sum()) == 32


BASE: dict[str, Any] = {"name": "p", "count": 1, "gpus": 2, "gpu_model": "X", "cpu": 4,
                        "memory": "8Gi"}


@pytest.mark.parametrize(("doc", "where"), [
    ([], "(document)"),
    ({}, "pools"),
    ({"pools": [], "x": 1}, "x"),
    ({"pools": [{**BASE, "colour": "red"}]}, "pools[0].colour"),
    ({"pools": [{**BASE, "count": 0}]}, "pools[0].count"),
    ({"pools": [{**BASE, "count": True}]}, "pools[0].count"),
    ({"pools": [{**BASE, "name": "a b"}]}, "pools[0].name"),
    ({"pools": [{**BASE, "cpu": "lots"}]}, "pools[0].cpu"),
    ({"pools": [{**BASE, "memory": "-1Gi"}]}, "pools[0].memory"),
    ({"pools": [{**BASE, "gpus": 64}]}, "pools[0].gpus"),
    ({"pools": [{**BASE, "gpu_model": None}]}, "pools[0].gpu_model"),
    ({"pools": [{**BASE, "preset": "dgx-9000", "gpus": None}]}, "pools[0].gpus"),
    ({"pools": [{k: v for k, v in BASE.items() if k != "gpus"} | {"preset": "dgx-9000"}]},
     "pools[0].preset"),
    ({"pools": [{k: v for k, v in BASE.items() if k != "gpus"}]}, "pools[0]"),
    ({"pools": [{**BASE, "gpu_memory": "1Gi", "gpu_memory_mib": 1}]}, "pools[0].gpu_memory"),
    ({"pools": [BASE, BASE]}, "pools[1].name"),
    ({"network": {"rack": 2}, "pools": [BASE]}, "network.rack"),
    ({"network": {"block": 0}, "pools": [BASE]}, "network.block"),
    ({"levels": ["a", "a"], "pools": [BASE]}, "levels"),
    ({"pools": [{**BASE, "network": {"block": ["x"]}}]}, "pools[0].network.block"),
])
def test_errors_name_the_key(doc: object, where: str) -> None:
    with pytest.raises(StaticClusterError) as e:
        cluster_from_dict(doc, "spec.yaml")
    assert str(e.value).startswith(f"spec.yaml: {where}")


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(StaticClusterError, match="cannot read"):
        load_cluster_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("pools: [unclosed")
    with pytest.raises(StaticClusterError, match="not valid YAML"):
        load_cluster_file(bad)
