"""Node JSON -> NodeSpec: every Node kube-scheduler sent us, topology sources, clear errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.cluster.nodes import NodeParseError, generic_topology, node_spec_from_k8s
from scheduler.constants import (
    DEFAULT_NETWORK_LEVEL_LABELS,
    GPU_MEMORY_LABEL,
    GPU_MODEL_LABELS,
    GPU_RESOURCE,
    TOPOLOGY_ANNOTATION,
    TOPOLOGY_PRESET_LABEL,
)
from topology.annotation import to_json
from topology.presets import preset


def fixture_nodes(shared: Path) -> list[dict[str, Any]]:
    """Every Node object in the captured extender requests (ncc-false carries NodeLists)."""
    out: list[dict[str, Any]] = []
    for f in sorted((shared / "fixtures" / "extender").glob("*/all/*.request.json")):
        body = json.loads(f.read_text())
        out.extend((body.get("Nodes") or {}).get("items") or [])
    return out


def node(name: str = "n1", *, gpus: str | None = "8", labels: dict[str, str] | None = None,
         annotations: dict[str, str] | None = None, cpu: Any = "32",
         memory: Any = "256Gi") -> dict[str, Any]:
    alloc: dict[str, Any] = {"cpu": cpu, "memory": memory, "pods": "110"}
    if gpus is not None:
        alloc[GPU_RESOURCE] = gpus
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "status": {"capacity": dict(alloc), "allocatable": alloc}}


def test_every_fixture_node_parses(shared: Path) -> None:
    nodes = fixture_nodes(shared)
    assert len(nodes) >= 6
    gpus_by_name = {"gpu-node-1": 8, "gpu-node-2": 8, "gpu-node-3": 4}
    for obj in nodes:
        spec = node_spec_from_k8s(obj, level_keys=DEFAULT_NETWORK_LEVEL_LABELS)
        assert spec.cpu_milli == 32_000
        assert spec.memory_mib == 256 * 1024
        assert spec.topology.n == gpus_by_name[spec.name]
        # No annotation, preset or model label: a generic topology of unknown GPUs.
        assert spec.gpu_model == "unknown"
        assert {lk for row in spec.topology.links for lk in row} == {"X", "PHB"}
        assert spec.levels == ("",) * len(DEFAULT_NETWORK_LEVEL_LABELS)


def test_topology_from_annotation() -> None:
    topo = preset("dgx-h100")
    spec = node_spec_from_k8s(node(annotations={TOPOLOGY_ANNOTATION: to_json(topo)}))
    assert spec.topology == topo
    assert spec.gpu_model == topo.model


def test_topology_from_preset_label_with_model_and_memory() -> None:
    labels = {TOPOLOGY_PRESET_LABEL: "dgx-a100", GPU_MODEL_LABELS[0]: "A100-SXM4-40GB",
              GPU_MEMORY_LABEL: "40960"}
    spec = node_spec_from_k8s(node(labels=labels))
    assert spec.topology.links == preset("dgx-a100").links
    assert spec.gpu_model == "A100-SXM4-40GB"
    assert {g.memory_mib for g in spec.topology.gpus} == {40960}


def test_generic_topology_uses_model_labels() -> None:
    spec = node_spec_from_k8s(node(gpus="4", labels={GPU_MODEL_LABELS[1]: "L4",
                                                     GPU_MEMORY_LABEL: "23034"}))
    assert spec.topology == generic_topology(4, "L4", 23034)
    assert spec.gpu_model == "L4"


def test_cpu_node_has_no_gpus() -> None:
    spec = node_spec_from_k8s(node(gpus=None, cpu="3500m", memory="1048576Ki"))
    assert spec.topology.n == 0 and spec.gpu_model == ""
    assert spec.cpu_milli == 3500 and spec.memory_mib == 1024


def test_capacity_when_allocatable_is_missing() -> None:
    obj = node()
    del obj["status"]["allocatable"]
    assert node_spec_from_k8s(obj).topology.n == 8


def test_capacity_rounds_down() -> None:
    spec = node_spec_from_k8s(node(cpu="1.9999", memory="1G"))
    assert spec.cpu_milli == 1999 and spec.memory_mib == 953


def test_network_levels_from_labels() -> None:
    keys = ("rack", "zone")
    spec = node_spec_from_k8s(node(labels={"rack": "r7", "zone": "z1", "other": "x"}),
                              level_keys=keys)
    assert spec.levels == ("r7", "z1")
    spec = node_spec_from_k8s(node(labels={"zone": "z1"}), level_keys=keys)
    assert spec.levels == ("", "z1")


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda n: n["status"]["allocatable"].update(cpu="lots"), "status.allocatable.cpu"),
    (lambda n: n["status"]["allocatable"].update(memory="-1Gi"), "status.allocatable.memory"),
    (lambda n: n["status"]["allocatable"].update({GPU_RESOURCE: "1.5"}),
     f"status.allocatable.{GPU_RESOURCE}"),
    (lambda n: n["status"]["allocatable"].update({GPU_RESOURCE: "64"}),
     f"status.allocatable.{GPU_RESOURCE}"),
    (lambda n: n["metadata"].update(annotations={TOPOLOGY_ANNOTATION: "{not json"}),
     f"metadata.annotations.{TOPOLOGY_ANNOTATION}"),
    (lambda n: n["metadata"].update(annotations={TOPOLOGY_ANNOTATION: '{"v": 99}'}),
     f"metadata.annotations.{TOPOLOGY_ANNOTATION}"),
    (lambda n: n["metadata"]["labels"].update({TOPOLOGY_PRESET_LABEL: "dgx-9000"}),
     f"metadata.labels.{TOPOLOGY_PRESET_LABEL}"),
    (lambda n: n["metadata"]["labels"].update({GPU_MEMORY_LABEL: "80GB"}),
     f"metadata.labels.{GPU_MEMORY_LABEL}"),
    (lambda n: n["metadata"]["labels"].update(x=5), "metadata.labels.x"),
    (lambda n: n["metadata"].update(name=""), "metadata.name"),
    (lambda n: n.update(status=[]), "status"),
])
def test_bad_nodes_name_the_field(mutate: Any, field: str) -> None:
    obj = node()
    mutate(obj)
    with pytest.raises(NodeParseError) as e:
        node_spec_from_k8s(obj)
    assert e.value.field == field
    assert field in str(e.value)


def test_topology_gpu_count_must_match_allocatable() -> None:
    # The device plugin reports 7 healthy GPUs of 8: which one is gone is unknown.
    obj = node(gpus="7", labels={TOPOLOGY_PRESET_LABEL: "dgx-h100"})
    with pytest.raises(NodeParseError, match="has 8 GPUs") as e:
        node_spec_from_k8s(obj)
    assert e.value.node == "n1"


def test_parsing_does_not_mutate_the_object(shared: Path) -> None:
    for obj in fixture_nodes(shared):
        before = copy.deepcopy(obj)
        node_spec_from_k8s(obj)
        assert obj == before


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 100) | st.text(max_size=8)
    | st.sampled_from(["NV18", "PHB", "X", "SYS", "A100"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["v", "gpus", "links", "nics", "model", "memory_mib", "name", "numa"]),
        inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_topology_annotation_parses_or_names_the_annotation(data: st.DataObject) -> None:
    doc = json.loads(to_json(preset("pcie-4gpu")))
    # Replace one part of a real annotation with arbitrary JSON, or send arbitrary text.
    if data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(doc)))
        doc[key] = data.draw(JSON)
        text = json.dumps(doc)
    else:
        text = data.draw(st.text(max_size=40) | JSON.map(json.dumps))
    try:
        spec = node_spec_from_k8s(node(gpus="4", annotations={TOPOLOGY_ANNOTATION: text}))
    except NodeParseError as e:
        assert e.field in (f"metadata.annotations.{TOPOLOGY_ANNOTATION}",
                           f"status.allocatable.{GPU_RESOURCE}")
    else:
        assert spec.topology.n == 4
