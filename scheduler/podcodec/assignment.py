"""An Assignment <-> the signed annotations bind writes on its pod.

The cache rebuilds its holdings from these annotations after a restart; the node agent
honours them only when the signature verifies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from scheduler.constants import (
    ASSIGNED_GPUS_ANNOTATION,
    ASSIGNED_MEMORY_ANNOTATION,
    ASSIGNED_MILLI_ANNOTATION,
    ASSIGNED_NODE_ANNOTATION,
    ASSIGNMENT_SIGNATURE_ANNOTATION,
)
from scheduler.contract.assignment import Assignment
from scheduler.contract.request import RequestError
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.podcodec.pod_fields import ANNOTATION_INT_RE, annotations_of, pod_key, pod_uid
from scheduler.podcodec.resources import PodResources, pod_resources
from scheduler.podcodec.signing import Signer

ASSIGNMENT_ANNOTATIONS = (
    ASSIGNED_NODE_ANNOTATION,
    ASSIGNED_GPUS_ANNOTATION,
    ASSIGNED_MILLI_ANNOTATION,
    ASSIGNED_MEMORY_ANNOTATION,
    ASSIGNMENT_SIGNATURE_ANNOTATION,
)
_INDICES_RE = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:,(?:0|[1-9][0-9]{0,2}))*")


class AssignmentError(ValueError):
    """A pod whose assignment annotations cannot be read; names the annotation and value."""

    def __init__(self, field: str, value: object, message: str) -> None:
        super().__init__(f"{field}={value!r}: {message}")
        self.field = field
        self.value = value


def assignment_from_pod(
    pod: object, *, resources: Callable[[Mapping[str, Any]], PodResources] = pod_resources
) -> Assignment | None:
    """The assignment our annotations record on a pod, or None when it carries none.

    CPU and memory come from the pod's requests (immutable, so a rebuild gets the same),
    read by `resources` (the cache passes its memo of them).
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
        res = resources(pod)
    except RequestError as e:
        raise AssignmentError(e.field, e.value, str(e)) from None
    return Assignment(pod=key, node=node, gpus=gpus, gpu_milli=milli, gpu_memory_mib=mem,
                      cpu_milli=res.cpu_milli, memory_mib=res.memory_mib)


def _annotation_int(ann: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = ann.get(name)
    if raw is None:
        return default
    if not ANNOTATION_INT_RE.fullmatch(raw) or not lo <= int(raw) <= hi:
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


def assignment_signature_ok(pod: Mapping[str, Any], a: Assignment, signer: Signer) -> bool:
    """True if the pod's signature annotation matches `a` and the pod's uid under `signer`."""
    sig = annotations_of(pod).get(ASSIGNMENT_SIGNATURE_ANNOTATION, "")
    uid = pod_uid(pod)
    return bool(uid) and signer.verify(sig, uid, a.node, a.gpus, a.gpu_milli, a.gpu_memory_mib)
