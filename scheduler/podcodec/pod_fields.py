"""Typed reads of a Pod object's fields: key, uid, node, phase, annotations, gang key.

Every error is a RequestError naming the JSON path of the offending field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from scheduler.constants import POD_GROUP_LABEL, VOLCANO_GROUP_ANNOTATION
from scheduler.contract.request import RequestError

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
# A non-negative integer as an annotation value: canonical decimal, at most 9 digits.
ANNOTATION_INT_RE = re.compile(r"0|[1-9][0-9]{0,8}")


def as_mapping(value: object, field: str, *, required: bool = False) -> Mapping[str, Any]:
    """`value` as a JSON object ({} for an absent optional one)."""
    if type(value) is dict:
        # Decoded JSON is always a plain dict: skip the ABC check (several per watch event).
        return value
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise RequestError(field, value, "expected an object")
    return value


def as_list(value: object, field: str) -> list[Any]:
    """`value` as a JSON list ([] when absent)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise RequestError(field, value, "expected a list")
    return value


def as_str_map(value: object, field: str) -> Mapping[str, str]:
    """`value` as a JSON object of strings (labels, annotations)."""
    m = as_mapping(value, field)
    for k, v in m.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise RequestError(f"{field}.{k}", v, "expected a string")
    return m


def pod_key(pod: object) -> str:
    """`namespace/name` of a Pod object (namespace "default" when absent)."""
    meta = as_mapping(as_mapping(pod, "pod", required=True).get("metadata"), "metadata",
                      required=True)
    name, ns = meta.get("name"), meta.get("namespace", "default")
    if not isinstance(name, str) or not name:
        raise RequestError("metadata.name", name, "expected a non-empty string")
    if not isinstance(ns, str) or not ns or "/" in ns:
        raise RequestError("metadata.namespace", ns, "expected a non-empty string without '/'")
    return f"{ns}/{name}"


def pod_uid(pod: Mapping[str, Any]) -> str:
    """metadata.uid, "" when absent."""
    uid = as_mapping(pod.get("metadata"), "metadata").get("uid", "")
    if not isinstance(uid, str):
        raise RequestError("metadata.uid", uid, "expected a string")
    return uid


def node_name_of(pod: Mapping[str, Any]) -> str:
    """spec.nodeName, "" while the pod is not bound."""
    name = as_mapping(pod.get("spec"), "spec").get("nodeName") or ""
    if not isinstance(name, str):
        raise RequestError("spec.nodeName", name, "expected a string")
    return name


def is_terminal(pod: Mapping[str, Any]) -> bool:
    """True once the pod Succeeded or Failed: its resources are free again."""
    phase = as_mapping(pod.get("status"), "status").get("phase")
    return isinstance(phase, str) and phase in TERMINAL_PHASES


def annotations_of(pod: Mapping[str, Any]) -> Mapping[str, str]:
    """metadata.annotations, validated as a string map."""
    meta = as_mapping(pod.get("metadata"), "metadata")
    return as_str_map(meta.get("annotations"), "metadata.annotations")


def gang_key_of(pod: Mapping[str, Any]) -> str | None:
    """`namespace/group` of the pod's gang (Coscheduling label or Volcano annotation), or None.

    The service looks the PodGroup's minMember up by this key before parsing the request.
    """
    meta = as_mapping(pod.get("metadata"), "metadata")
    labels = as_str_map(meta.get("labels"), "metadata.labels")
    group = labels.get(POD_GROUP_LABEL) or annotations_of(pod).get(VOLCANO_GROUP_ANNOTATION)
    if not group:
        return None
    ns = meta.get("namespace") or "default"
    return f"{ns}/{group}"
