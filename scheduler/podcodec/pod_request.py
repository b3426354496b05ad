"""A Pod object -> the PodRequest the policy reads: resources, allowed GPU models, gang.

Every error is a RequestError naming the JSON path (or annotation) of the offending field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from scheduler.constants import (
    ALLOWED_MODELS_ANNOTATION,
    GANG_MIN_MEMBER_ANNOTATION,
    GPU_MEMORY_RESOURCE,
    GPU_MILLI_RESOURCE,
    GPU_RESOURCE,
    POD_GROUP_LABEL,
)
from scheduler.contract.request import GangRef, PodRequest, RequestError
from scheduler.contract.units import MAX_GANG
from scheduler.podcodec.pod_fields import (
    ANNOTATION_INT_RE,
    annotations_of,
    as_mapping,
    gang_key_of,
    pod_key,
    pod_uid,
)
from scheduler.podcodec.resources import PodResources, pod_resources

_CONTAINER_REQ = "spec.containers[*].resources.requests"
# PodRequest's field -> where in the pod its total comes from, for error messages.
_TOTAL_FIELD = {
    "cpu_milli": f"{_CONTAINER_REQ}.cpu",
    "memory_mib": f"{_CONTAINER_REQ}.memory",
    "gpus": f"{_CONTAINER_REQ}.{GPU_RESOURCE}",
    "gpu_milli": f"{_CONTAINER_REQ}.{GPU_MILLI_RESOURCE}",
    "gpu_memory_mib": f"{_CONTAINER_REQ}.{GPU_MEMORY_RESOURCE}",
}
MAX_MODELS_CHARS = 4096  # 100 model names of 40 characters


def _allowed_models(ann: Mapping[str, str]) -> frozenset[str]:
    raw = ann.get(ALLOWED_MODELS_ANNOTATION)
    if raw is None:
        return frozenset()
    if len(raw) > MAX_MODELS_CHARS:
        # Refused before it is split: a hostile 250 KB value must cost microseconds.
        raise RequestError(f"metadata.annotations.{ALLOWED_MODELS_ANNOTATION}",
                           raw[:40] + "...", f"{len(raw)} characters; at most "
                           f"{MAX_MODELS_CHARS} (a list of GPU model names)")
    models = frozenset(m.strip() for m in re.split(r"[|,]", raw) if m.strip())
    if not models:
        raise RequestError(f"metadata.annotations.{ALLOWED_MODELS_ANNOTATION}", raw,
                           "lists no GPU model (separate models with '|' or ',')")
    return models


def _gang(pod: Mapping[str, Any], known: Mapping[str, int] | None) -> GangRef | None:
    key = gang_key_of(pod)
    if key is None:
        return None
    if known is not None and key in known:
        return GangRef(key, known[key])
    raw = annotations_of(pod).get(GANG_MIN_MEMBER_ANNOTATION)
    field = f"metadata.annotations.{GANG_MIN_MEMBER_ANNOTATION}"
    if raw is None:
        raise RequestError(
            f"metadata.labels.{POD_GROUP_LABEL}", key.split("/", 1)[1],
            f"gang size unknown: no PodGroup {key} with spec.minMember and no annotation "
            f"{GANG_MIN_MEMBER_ANNOTATION}",
        )
    if not ANNOTATION_INT_RE.fullmatch(raw) or not 1 <= int(raw) <= MAX_GANG:
        raise RequestError(field, raw, f"must be an integer 1..{MAX_GANG}")
    return GangRef(key, int(raw))


def pod_request_from_k8s(
    pod: object, *, known_gang_sizes: Mapping[str, int] | None = None,
    resources: Callable[[Mapping[str, Any]], PodResources] = pod_resources,
) -> PodRequest:
    """The PodRequest of a Pod object; raises RequestError naming the field path.

    `resources` reads the pod's effective requests (the cache passes its memo of them).
    """
    key = pod_key(pod)
    assert isinstance(pod, Mapping)
    res = resources(pod)
    ann = annotations_of(pod)
    priority = as_mapping(pod.get("spec"), "spec").get("priority", 0)
    if priority is None:
        priority = 0
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise RequestError("spec.priority", priority, "expected an integer")
    try:
        return PodRequest(
            key=key,
            cpu_milli=res.cpu_milli,
            memory_mib=res.memory_mib,
            gpus=res.gpus,
            gpu_milli=res.gpu_milli,
            gpu_memory_mib=res.gpu_memory_mib,
            allowed_models=_allowed_models(ann),
            gang=_gang(pod, known_gang_sizes),
            uid=pod_uid(pod),
            priority=priority,
        )
    except RequestError as e:
        if e.field in _TOTAL_FIELD:
            message = str(e)[len(f"{e.field}={e.value!r}: "):]
            raise RequestError(_TOTAL_FIELD[e.field], e.value,
                               f"{message} (pod total)") from None
        raise
