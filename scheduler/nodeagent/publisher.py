"""Publish the discovered topology on this node's Node object, only when it changed.

The topology JSON (topology.annotation.to_json) goes to the TOPOLOGY_ANNOTATION annotation and
the GPU model to our own model label, both in one JSON merge patch. The NVIDIA label
`nvidia.com/gpu.product` is GPU Feature Discovery's; we read it elsewhere but never write it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from scheduler.constants import GPU_MODEL_LABELS, TOPOLOGY_ANNOTATION
from topology.annotation import to_json
from topology.model import NodeTopology

GPU_MODEL_LABEL = GPU_MODEL_LABELS[1]
MERGE_PATCH = "application/merge-patch+json"
_LABEL_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def model_label_value(model: str) -> str:
    """A GPU model as a label value, the way GPU Feature Discovery writes it.

    "NVIDIA H100 80GB HBM3" -> "NVIDIA-H100-80GB-HBM3"; at most 63 characters, starting and
    ending with an alphanumeric (Kubernetes label value rules).
    """
    value = _LABEL_BAD.sub("-", model.strip())[:63]
    return value.strip("-_.")


def desired_metadata(topo: NodeTopology) -> tuple[dict[str, str], dict[str, str]]:
    """(annotations, labels) this node should carry for `topo`."""
    labels = {GPU_MODEL_LABEL: model_label_value(topo.model)} if topo.n else {}
    return {TOPOLOGY_ANNOTATION: to_json(topo)}, labels


def node_patch(node: Mapping[str, Any], topo: NodeTopology) -> dict[str, Any] | None:
    """The merge patch that brings `node` up to date, or None when it already is."""
    meta = node.get("metadata") or {}
    have_ann = meta.get("annotations") or {}
    have_labels = meta.get("labels") or {}
    want_ann, want_labels = desired_metadata(topo)
    ann = {k: v for k, v in want_ann.items() if have_ann.get(k) != v}
    labels = {k: v for k, v in want_labels.items() if have_labels.get(k) != v}
    if not ann and not labels:
        return None
    patch_meta: dict[str, Any] = {}
    if ann:
        patch_meta["annotations"] = ann
    if labels:
        patch_meta["labels"] = labels
    return {"metadata": patch_meta}


def publish(core_v1: Any, node_name: str, topo: NodeTopology) -> bool:
    """Patch the Node if its topology annotation or model label differ; True if it patched.

    `core_v1` is a kubernetes.client.CoreV1Api (or an object with the same two methods).
    """
    resp = core_v1.read_node(node_name, _preload_content=False)
    node = json.loads(resp.data)
    patch = node_patch(node, topo)
    if patch is None:
        return False
    core_v1.patch_node(node_name, patch, _content_type=MERGE_PATCH, _preload_content=False)
    return True
