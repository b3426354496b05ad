"""Kubernetes Node JSON -> NodeSpec, parsed once at the edge.

Topology, first that applies: the node agent's JSON annotation (TOPOLOGY_ANNOTATION), the
preset label (TOPOLOGY_PRESET_LABEL), else a generic all-PHB topology for the allocatable GPU
count (nothing is known about the links, so every pair is taken as equally, modestly linked)
with the model from GPU_MODEL_LABELS. The GPU count of the topology must equal
`status.allocatable[nvidia.com/gpu]`: when the device plugin reports fewer healthy GPUs than
the topology lists we cannot tell which one is gone, so the node is kept out rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from scheduler.constants import (
    DEFAULT_NETWORK_LEVEL_LABELS,
    GPU_MEMORY_LABEL,
    GPU_MODEL_LABELS,
    GPU_RESOURCE,
    TOPOLOGY_ANNOTATION,
    TOPOLOGY_PRESET_LABEL,
)
from scheduler.contract.node import NodeSpec
from scheduler.podcodec.quantity import QuantityError, parse_bytes_mib, parse_count, parse_cpu_milli
from topology.annotation import TopologyJSONError, from_json
from topology.model import GPU, NodeTopology
from topology.network import level_names
from topology.presets import UnknownPresetError, preset
from topology.value_repr import short_repr

UNKNOWN_MODEL = "unknown"
MAX_GPUS_PER_NODE = 63  # the Snapshot's free-GPU bitmask is an int64
MAX_ANNOTATION_BYTES = 256 * 1024  # the apiserver caps all annotations of an object at 256 KiB
_EMPTY = NodeTopology(gpus=(), links=())


class NodeParseError(ValueError):
    """A Node object we cannot schedule on; names the node, the field and the value."""

    def __init__(self, node: str, field: str, value: object, message: str) -> None:
        super().__init__(f"node {node or '?'}: {field}={short_repr(value, 120)}: {message}")
        self.node = node
        self.field = field
        self.value = value


def _mapping(value: object, node: str, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise NodeParseError(node, field, value, "expected an object")
    return value


def _str_map(value: object, node: str, field: str) -> Mapping[str, str]:
    m = _mapping(value, node, field)
    for k, v in m.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise NodeParseError(node, f"{field}.{k}", v, "expected a string")
    return m


def node_name(node: object) -> str:
    """metadata.name of a Node object; raises NodeParseError when missing."""
    if not isinstance(node, Mapping):
        raise NodeParseError("", "node", type(node).__name__, "expected a Node object")
    name = _mapping(node.get("metadata"), "", "metadata").get("name")
    if not isinstance(name, str) or not name or len(name) > 253:
        raise NodeParseError("", "metadata.name", name, "expected a non-empty string")
    return name


def generic_topology(n: int, model: str, memory_mib: int = 0) -> NodeTopology:
    """n GPUs of `model`, every pair linked through the host bridge (PHB)."""
    gpus = tuple(GPU(index=i, model=model, memory_mib=memory_mib) for i in range(n))
    links = tuple(tuple("X" if i == j else "PHB" for j in range(n)) for i in range(n))
    return NodeTopology(gpus=gpus, links=links, name=f"generic-{n}gpu")


@lru_cache(maxsize=256)
def _topology_from_annotation(text: str) -> NodeTopology:
    # Nodes of one kind publish the same text; parse it once (NodeTopology is immutable).
    return from_json(text)


@lru_cache(maxsize=256)
def _cached_preset(name: str, model: str | None, memory_mib: int | None) -> NodeTopology:
    return preset(name, model=model, memory_mib=memory_mib)


def _quantity(alloc: Mapping[str, Any], key: str, node: str, kind: str) -> int:
    raw = alloc.get(key)
    if raw is None:
        return 0
    try:
        if kind == "cpu":
            return parse_cpu_milli(raw, round_up=False)
        if kind == "memory":
            return parse_bytes_mib(raw, round_up=False)
        return parse_count(raw)
    except QuantityError as e:
        raise NodeParseError(node, f"status.allocatable.{key}", raw, str(e)) from None


def _topology(
    name: str, labels: Mapping[str, str], annotations: Mapping[str, str], gpus: int
) -> NodeTopology:
    model = next((labels[k] for k in GPU_MODEL_LABELS if labels.get(k)), None)
    raw_mem = labels.get(GPU_MEMORY_LABEL)
    memory: int | None = None
    if raw_mem is not None:
        if not raw_mem.isdigit() or len(raw_mem) > 9:
            raise NodeParseError(name, f"metadata.labels.{GPU_MEMORY_LABEL}", raw_mem,
                                 "expected MiB as a whole number")
        memory = int(raw_mem)
    text = annotations.get(TOPOLOGY_ANNOTATION)
    if text is not None:
        field = f"metadata.annotations.{TOPOLOGY_ANNOTATION}"
        if len(text) > MAX_ANNOTATION_BYTES:
            raise NodeParseError(name, field, text[:40], "annotation too large")
        try:
            return _topology_from_annotation(text)
        except (TopologyJSONError, ValueError, RecursionError) as e:
            raise NodeParseError(name, field, text, str(e) or type(e).__name__) from None
    preset_name = labels.get(TOPOLOGY_PRESET_LABEL)
    if preset_name is not None:
        try:
            return _cached_preset(preset_name, model, memory)
        except (UnknownPresetError, ValueError) as e:
            raise NodeParseError(name, f"metadata.labels.{TOPOLOGY_PRESET_LABEL}", preset_name,
                                 str(e)) from None
    if gpus == 0:
        return _EMPTY
    return generic_topology(gpus, model or UNKNOWN_MODEL, memory or 0)


def node_spec_from_k8s(
    node: object, *, level_keys: Sequence[str] = DEFAULT_NETWORK_LEVEL_LABELS
) -> NodeSpec:
    """The NodeSpec of a Node object; raises NodeParseError naming the field and value."""
    name = node_name(node)
    assert isinstance(node, Mapping)
    meta = _mapping(node.get("metadata"), name, "metadata")
    labels = _str_map(meta.get("labels"), name, "metadata.labels")
    annotations = _str_map(meta.get("annotations"), name, "metadata.annotations")
    status = _mapping(node.get("status"), name, "status")
    alloc_field = "allocatable" if status.get("allocatable") is not None else "capacity"
    alloc = _mapping(status.get(alloc_field), name, f"status.{alloc_field}")
    cpu = _quantity(alloc, "cpu", name, "cpu")
    memory = _quantity(alloc, "memory", name, "memory")
    gpus = _quantity(alloc, GPU_RESOURCE, name, "count")
    if gpus > MAX_GPUS_PER_NODE:
        raise NodeParseError(name, f"status.allocatable.{GPU_RESOURCE}", alloc.get(GPU_RESOURCE),
                             f"at most {MAX_GPUS_PER_NODE} GPUs per node")
    topo = _topology(name, labels, annotations, gpus)
    if topo.n != gpus:
        source = ("annotation " + TOPOLOGY_ANNOTATION if TOPOLOGY_ANNOTATION in annotations
                  else "preset " + labels.get(TOPOLOGY_PRESET_LABEL, ""))
        raise NodeParseError(
            name, f"status.allocatable.{GPU_RESOURCE}", alloc.get(GPU_RESOURCE, "0"),
            f"the topology ({source}) has {topo.n} GPUs; the node is kept out of scheduling "
            f"until the device plugin reports all of them healthy",
        )
    levels = level_names(labels, level_keys)
    return NodeSpec(name=name, cpu_milli=cpu, memory_mib=memory, topology=topo, levels=levels)
