"""`gts cluster export`: Node objects -> a cluster spec the simulator and the planner read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cluster_export import export_spec, main_args, read_node_list
from bench.clusters import load_cluster


def _node(name: str, cpu: str, mem: str, gpus: str | None = None,
          labels: dict[str, str] | None = None) -> dict[str, object]:
    alloc = {"cpu": cpu, "memory": mem}
    if gpus is not None:
        alloc["nvidia.com/gpu"] = gpus
    return {"kind": "Node", "metadata": {"name": name, "labels": labels or {}},
            "status": {"allocatable": alloc}}


A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "gts.dev/topology-preset": "dgx-a100"}
NODES = [_node("a1", "255", "2000Gi", "8", A100), _node("a2", "255", "2000Gi", "8", A100),
         _node("t4", "63500m", "250Gi", "4", {"nvidia.com/gpu.product": "Tesla-T4"}),
         _node("c1", "32", "128Gi"), _node("bad", "many", "1Gi")]


def test_export_groups_equal_nodes_and_round_trips(tmp_path: Path) -> None:
    text, skipped = export_spec(NODES)
    assert len(skipped) == 1 and "node bad" in skipped[0] and "allocatable.cpu" in skipped[0]
    spec = tmp_path / "c.yaml"
    spec.write_text(text)
    nodes = load_cluster(spec)
    assert len(nodes) == 4
    assert sorted(n.topology.n for n in nodes) == [0, 4, 8, 8]
    a100 = [n for n in nodes if n.topology.n == 8]
    assert a100[0].topology.name == "dgx-a100"  # the preset, not a generic node
    assert {n.cpu_milli for n in a100} == {255_000}
    assert "preset: dgx-a100" in text and "count: 2" in text


def test_reads_kubectl_output_and_refuses_other_documents(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    doc = {"kind": "List", "apiVersion": "v1", "items": NODES}
    assert len(read_node_list(json.dumps(doc), "x")) == 5
    with pytest.raises(ValueError, match="expected a NodeList"):
        read_node_list(json.dumps({"kind": "PodList", "items": []}), "x")
    f = tmp_path / "nodes.json"
    f.write_text(json.dumps(doc))
    out = tmp_path / "cluster.yaml"

    class Args:
        source = str(f)
        kubeconfig = None
        context = None

    Args.out = str(out)  # type: ignore[attr-defined]
    assert main_args(Args()) == 0  # type: ignore[arg-type]
    assert "skipped node bad" in capsys.readouterr().err
    assert out.read_text().startswith("# Exported by `gts cluster export`")
