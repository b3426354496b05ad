"""A pod's effective requests, computed as kube-scheduler does, in the units we count.

Requests follow kube-scheduler (k8s.io/component-helpers/resource PodRequests): a resource
missing from `requests` defaults to its `limits` (API defaulting); the pod needs
max(sum of app containers + restartable init containers, largest init container step)
plus `spec.overhead`; pod-level `spec.resources.requests` replace the container sum for CPU
and memory. Every error is a RequestError naming the JSON path of the offending field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from scheduler.constants import GPU_MEMORY_RESOURCE, GPU_MILLI_RESOURCE, GPU_RESOURCE
from scheduler.contract.request import RequestError
from scheduler.podcodec.pod_fields import as_list, as_mapping
from scheduler.podcodec.quantity import MIB, QuantityError, parse_quantity

# Resources we count, and what each is counted in.
_CPU, _MEM = "cpu", "memory"
_WHOLE = (GPU_RESOURCE, GPU_MILLI_RESOURCE, GPU_MEMORY_RESOURCE)
_RESOURCES = (_CPU, _MEM, *_WHOLE)


@dataclass(frozen=True, slots=True)
class PodResources:
    """The pod's effective requests in the units the scheduler counts."""

    cpu_milli: int = 0
    memory_mib: int = 0
    gpus: int = 0
    gpu_milli: int = 0
    gpu_memory_mib: int = 0


def _add(total: dict[str, Fraction], req: Mapping[str, Fraction], sign: int = 1) -> None:
    for r, v in req.items():
        total[r] = total.get(r, Fraction(0)) + sign * v


def _container_requests(c: object, field: str) -> dict[str, Fraction]:
    cm = as_mapping(c, field, required=True)
    res = as_mapping(cm.get("resources"), f"{field}.resources")
    requests = as_mapping(res.get("requests"), f"{field}.resources.requests")
    limits = as_mapping(res.get("limits"), f"{field}.resources.limits")
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
    spec = as_mapping(as_mapping(pod, "pod", required=True).get("spec"), "spec", required=True)
    total: dict[str, Fraction] = {}
    containers = spec.get("containers")
    if not isinstance(containers, list):
        raise RequestError("spec.containers", containers, "expected a list")
    for i, c in enumerate(containers):
        _add(total, _container_requests(c, f"spec.containers[{i}]"))
    sidecars: dict[str, Fraction] = {}
    init_peak: dict[str, Fraction] = {}
    for i, c in enumerate(as_list(spec.get("initContainers"), "spec.initContainers")):
        field = f"spec.initContainers[{i}]"
        req = _container_requests(c, field)
        if as_mapping(c, field).get("restartPolicy") == "Always":
            # A sidecar runs alongside the app containers and every later init container.
            _add(total, req)
            _add(sidecars, req)
            step = dict(sidecars)
        else:
            step = dict(req)
            _add(step, sidecars)
        _max(init_peak, step)
    _max(total, init_peak)
    pod_res = as_mapping(spec.get("resources"), "spec.resources")
    pod_req = as_mapping(pod_res.get("requests"), "spec.resources.requests")
    for r in (_CPU, _MEM):
        if r in pod_req:
            total[r] = _quantity(pod_req[r], f"spec.resources.requests.{r}", whole=False)
    overhead = as_mapping(spec.get("overhead"), "spec.overhead")
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
