"""Kubernetes Pod JSON -> PodRequest and Assignment, parsed once at the edge.

Requests follow kube-scheduler (k8s.io/component-helpers/resource PodRequests): a resource
missing from `requests` defaults to its `limits` (API defaulting); the pod needs
max(sum of app containers + restartable init containers, largest init container step)
plus `spec.overhead`; pod-level `spec.resources.requests` replace the container sum for CPU
and memory. Every error names the JSON path of the offending field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from scheduler.cluster.quantity import MIB, QuantityError, parse_quantity
from scheduler.cluster.signing import Signer
from scheduler.constants import (
    ALLOWED_MODELS_ANNOTATION,
    ASSIGNED_GPUS_ANNOTATION,
    ASSIGNED_MEMORY_ANNOTATION,
    ASSIGNED_MILLI_ANNOTATION,
    ASSIGNED_NODE_ANNOTATION,
    ASSIGNMENT_SIGNATURE_ANNOTATION,
    GANG_MIN_MEMBER_ANNOTATION,
    GPU_MEMORY_RESOURCE,
    GPU_MILLI_RESOURCE,
    GPU_RESOURCE,
    POD_GROUP_LABEL,
    VOLCANO_GROUP_ANNOTATION,
)
from scheduler.policy.request import MAX_GANG, MILLI_PER_GPU, GangRef, PodRequest, RequestError
from scheduler.policy.snapshot import Assignment

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
ASSIGNMENT_ANNOTATIONS = (
    ASSIGNED_NODE_ANNOTATION,
    ASSIGNED_GPUS_ANNOTATION,
    ASSIGNED_MILLI_ANNOTATION,
    ASSIGNED_MEMORY_ANNOTATION,
    ASSIGNMENT_SIGNATURE_ANNOTATION,
)
# Resources we count, and what each is counted in.
_CPU, _MEM = "cpu", "memory"
_WHOLE = (GPU_RESOURCE, GPU_MILLI_RESOURCE, GPU_MEMORY_RESOURCE)
_RESOURCES = (_CPU, _MEM, *_WHOLE)
_CONTAINER_REQ = "spec.containers[*].resources.requests"
_TOTAL_FIELD = {
    "cpu_milli": f"{_CONTAINER_REQ}.{_CPU}",
    "memory_mib": f"{_CONTAINER_REQ}.{_MEM}",
    "gpus": f"{_CONTAINER_REQ}.{GPU_RESOURCE}",
    "gpu_milli": f"{_CONTAINER_REQ}.{GPU_MILLI_RESOURCE}",
    "gpu_memory_mib": f"{_CONTAINER_REQ}.{GPU_MEMORY_RESOURCE}",
}
_INDICES_RE = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:,(?:0|[1-9][0-9]{0,2}))*")
_INT_RE = re.compile(r"0|[1-9][0-9]{0,8}")
MAX_MODELS_CHARS = 4096  # 100 model names of 40 characters


class AssignmentError(ValueError):
    """A pod whose assignment annotations cannot be read; names the annotation and value."""

    def __init__(self, field: str, value: object, message: str) -> None:
        super().__init__(f"{field}={value!r}: {message}")
        self.field = field
        self.value = value


@dataclass(frozen=True, slots=True)
class PodResources:
    """The pod's effective requests in the units the scheduler counts."""

    cpu_milli: int = 0
    memory_mib: int = 0
    gpus: int = 0
    gpu_milli: int = 0
    gpu_memory_mib: int = 0


def _mapping(value: object, field: str, *, required: bool = False) -> Mapping[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise RequestError(field, value, "expected an object")
    return value


def _list(value: object, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RequestError(field, value, "expected a list")
    return value


def _str_map(value: object, field: str) -> Mapping[str, str]:
    m = _mapping(value, field)
    for k, v in m.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise RequestError(f"{field}.{k}", v, "expected a string")
    return m


def pod_key(pod: object) -> str:
    """`namespace/name` of a Pod object (namespace "default" when absent)."""
    meta = _mapping(_mapping(pod, "pod", required=True).get("metadata"), "metadata",
                    required=True)
    name, ns = meta.get("name"), meta.get("namespace", "default")
    if not isinstance(name, str) or not name:
        raise RequestError("metadata.name", name, "expected a non-empty string")
    if not isinstance(ns, str) or not ns or "/" in ns:
        raise RequestError("metadata.namespace", ns, "expected a non-empty string without '/'")
    return f"{ns}/{name}"


def pod_uid(pod: Mapping[str, Any]) -> str:
    """metadata.uid, "" when absent."""
    uid = _mapping(pod.get("metadata"), "metadata").get("uid", "")
    if not isinstance(uid, str):
        raise RequestError("metadata.uid", uid, "expected a string")
    return uid


def node_name_of(pod: Mapping[str, Any]) -> str:
    """spec.nodeName, "" while the pod is not bound."""
    name = _mapping(pod.get("spec"), "spec").get("nodeName") or ""
    if not isinstance(name, str):
        raise RequestError("spec.nodeName", name, "expected a string")
    return name


def is_terminal(pod: Mapping[str, Any]) -> bool:
    """True once the pod Succeeded or Failed: its resources are free again."""
    phase = _mapping(pod.get("status"), "status").get("phase")
    return isinstance(phase, str) and phase in TERMINAL_PHASES


def annotations_of(pod: Mapping[str, Any]) -> Mapping[str, str]:
    """metadata.annotations, validated as a string map."""
    meta = _mapping(pod.get("metadata"), "metadata")
    return _str_map(meta.get("annotations"), "metadata.annotations")


def _add(total: dict[str, Fraction], req: Mapping[str, Fraction], sign: int = 1) -> None:
    for r, v in req.items():
        total[r] = total.get(r, Fraction(0)) + sign * v


def _container_requests(c: object, field: str) -> dict[str, Fraction]:
    cm = _mapping(c, field, required=True)
    res = _mapping(cm.get("resources"), f"{field}.resources")
    requests = _mapping(res.get("requests"), f"{field}.resources.requests")
    limits = _mapping(res.get("limits"), f"{field}.resources.limits")
    out: dict[str, Fraction] = {}
    for r in _RESOURCES:
        # API defaulting: a request left out equals the limit.
        where, raw = ("requests", requests[r]) if r in requests else ("limits", limits.get(r))
        if raw is None:
            continue
        out[r] = _quantity(raw, f"{field}.resources.{where}.{r}", whole=r in _WHOLE)
    return out


def _quantity(raw: object, field: str, *, whole: bool) -> Fraction:
    try:
        q = parse_quantity(raw)
    except QuantityError as e:
        raise RequestError(field, raw, str(e)) from None
    if whole and q.denominator != 1:
        raise RequestError(field, raw, "must be a whole number")
    return q


def _max(a: dict[str, Fraction], b: Mapping[str, Fraction]) -> None:
    for r, v in b.items():
        a[r] = max(a.get(r, Fraction(0)), v)


def pod_resources(pod: object) -> PodResources:
    """Effective requests of a pod, computed as kube-scheduler does."""
    spec = _mapping(_mapping(pod, "pod", required=True).get("spec"), "spec", required=True)
    total: dict[str, Fraction] = {}
    containers = spec.get("containers")
    if not isinstance(containers, list):
        raise RequestError("spec.containers", containers, "expected a list")
    for i, c in enumerate(containers):
        _add(total, _container_requests(c, f"spec.containers[{i}]"))
    sidecars: dict[str, Fraction] = {}
    init_peak: dict[str, Fraction] = {}
    for i, c in enumerate(_list(spec.get("initContainers"), "spec.initContainers")):
        field = f"spec.initContainers[{i}]"
        req = _container_requests(c, field)
        if _mapping(c, field).get("restartPolicy") == "Always":
            # A sidecar runs alongside the app containers and every later init container.
            _add(total, req)
            _add(sidecars, req)
            step = dict(sidecars)
        else:
            step = dict(req)
            _add(step, sidecars)
        _max(init_peak, step)
    _max(total, init_peak)
    pod_res = _mapping(spec.get("resources"), "spec.resources")
    pod_req = _mapping(pod_res.get("requests"), "spec.resources.requests")
    for r in (_CPU, _MEM):
        if r in pod_req:
            total[r] = _quantity(pod_req[r], f"spec.resources.requests.{r}", whole=False)
    overhead = _mapping(spec.get("overhead"), "spec.overhead")
    for r in (_CPU, _MEM):
        if r in overhead:
            _add(total, {r: _quantity(overhead[r], f"spec.overhead.{r}", whole=False)})
    cpu = total.get(_CPU, Fraction(0)) * 1000
    mem = total.get(_MEM, Fraction(0)) / MIB
    return PodResources(
        cpu_milli=-((-cpu.numerator) // cpu.denominator),
        memory_mib=-((-mem.numerator) // mem.denominator),
        gpus=int(total.get(GPU_RESOURCE, 0)),
        gpu_milli=int(total.get(GPU_MILLI_RESOURCE, 0)),
        gpu_memory_mib=int(total.get(GPU_MEMORY_RESOURCE, 0)),
    )


def gang_key_of(pod: Mapping[str, Any]) -> str | None:
    """`namespace/group` of the pod's gang (Coscheduling label or Volcano annotation), or None.

    The service looks the PodGroup's minMember up by this key before parsing the request.
    """
    meta = _mapping(pod.get("metadata"), "metadata")
    labels = _str_map(meta.get("labels"), "metadata.labels")
    group = labels.get(POD_GROUP_LABEL) or annotations_of(pod).get(VOLCANO_GROUP_ANNOTATION)
    if not group:
        return None
    ns = meta.get("namespace") or "default"
    return f"{ns}/{group}"


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
    if not _INT_RE.fullmatch(raw) or not 1 <= int(raw) <= MAX_GANG:
        raise RequestError(field, raw, f"must be an integer 1..{MAX_GANG}")
    return GangRef(key, int(raw))


def pod_request_from_k8s(
    pod: object, *, known_gang_sizes: Mapping[str, int] | None = None
) -> PodRequest:
    """The PodRequest of a Pod object; raises RequestError naming the field path."""
    key = pod_key(pod)
    assert isinstance(pod, Mapping)
    res = pod_resources(pod)
    ann = annotations_of(pod)
    priority = _mapping(pod.get("spec"), "spec").get("priority", 0)
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


def assignment_from_pod(pod: object) -> Assignment | None:
    """The assignment our annotations record on a pod, or None when it carries none.

    CPU and memory come from the pod's requests (immutable, so a rebuild gets the same).
    Raises AssignmentError naming the annotation when one is malformed.
    """
    key = pod_key(pod)
    assert isinstance(pod, Mapping)
    try:
        ann = annotations_of(pod)
    except RequestError as e:
        raise AssignmentError(e.field, e.value, "annotations must be strings") from None
    node = ann.get(ASSIGNED_NODE_ANNOTATION)
    if node is None:
        return None
    if not node or len(node) > 253:
        raise AssignmentError(ASSIGNED_NODE_ANNOTATION, node, "expected a node name")
    raw_gpus = ann.get(ASSIGNED_GPUS_ANNOTATION, "")
    if raw_gpus and not _INDICES_RE.fullmatch(raw_gpus):
        raise AssignmentError(ASSIGNED_GPUS_ANNOTATION, raw_gpus,
                              "expected comma-separated GPU indices such as '0,1'")
    gpus = tuple(int(g) for g in raw_gpus.split(",")) if raw_gpus else ()
    if len(set(gpus)) != len(gpus):
        raise AssignmentError(ASSIGNED_GPUS_ANNOTATION, raw_gpus, "GPU indices repeat")
    milli = _annotation_int(ann, ASSIGNED_MILLI_ANNOTATION, MILLI_PER_GPU, 1, MILLI_PER_GPU)
    mem = _annotation_int(ann, ASSIGNED_MEMORY_ANNOTATION, 0, 0, 1 << 30)
    if milli < MILLI_PER_GPU and len(gpus) != 1:
        raise AssignmentError(ASSIGNED_GPUS_ANNOTATION, raw_gpus,
                              f"a share ({milli} thousandths) is held on exactly one GPU")
    try:
        res = pod_resources(pod)
    except RequestError as e:
        raise AssignmentError(e.field, e.value, str(e)) from None
    return Assignment(pod=key, node=node, gpus=gpus, gpu_milli=milli, gpu_memory_mib=mem,
                      cpu_milli=res.cpu_milli, memory_mib=res.memory_mib)


def _annotation_int(ann: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = ann.get(name)
    if raw is None:
        return default
    if not _INT_RE.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise AssignmentError(name, raw, f"expected an integer {lo}..{hi}")
    return int(raw)


def assignment_annotations(a: Assignment, signer: Signer, *, uid: str) -> dict[str, str]:
    """Our annotations for assignment `a` of the pod with `uid`, signed for the node agent."""
    return {
        ASSIGNED_NODE_ANNOTATION: a.node,
        ASSIGNED_GPUS_ANNOTATION: ",".join(str(g) for g in a.gpus),
        ASSIGNED_MILLI_ANNOTATION: str(a.gpu_milli),
        ASSIGNED_MEMORY_ANNOTATION: str(a.gpu_memory_mib),
        ASSIGNMENT_SIGNATURE_ANNOTATION: signer.sign(uid, a.node, a.gpus, a.gpu_milli,
                                                     a.gpu_memory_mib),
    }


def cleared_assignment_annotations() -> dict[str, None]:
    """A merge-patch annotations map that removes our assignment (after a rollback)."""
    return dict.fromkeys(ASSIGNMENT_ANNOTATIONS)


def assignment_signature_ok(pod: Mapping[str, Any], a: Assignment, signer: Signer) -> bool:
    """True if the pod's signature annotation matches `a` and the pod's uid under `signer`."""
    sig = annotations_of(pod).get(ASSIGNMENT_SIGNATURE_ANNOTATION, "")
    uid = pod_uid(pod)
    return bool(uid) and signer.verify(sig, uid, a.node, a.gpus, a.gpu_milli, a.gpu_memory_mib)
