"""Which pending pod a kubelet allocation is for, and which pods already got their devices.

kubelet's Allocate and GetPreferredAllocation do not say which pod they serve. The plugin
reads the pods bound to this node that are still Pending and carry an assignment signed by the
scheduler, and splits each assignment into the per-container "slots" kubelet will ask for:
kubelet allocates container by container, init containers first (a regular init container's
devices are reused by the containers after it, a sidecar's are kept), then app containers, each
asking for its `limits` of the resource. A request of n devices is served by the oldest pod
whose next unserved slot has size n, preferring the pod whose slot is exactly the devices
kubelet picked (it picks what GetPreferredAllocation proposed). A ClaimBook records the slots
already served under one lock, so two concurrent Allocates never get the same pod's GPUs.

A pod that asks for the resource but has no valid signed assignment never gets devices; and
while one is pending with a container of the requested size, a request of that size is
refused for every pod, because the plugin cannot tell whether kubelet is admitting that pod
(handing it a signed pod's GPUs would be worse than failing the admission once: kubelet marks
the pod it was admitting Failed, the unsigned pod then fails on its own, and the ambiguity
ends).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.constants import (
    ASSIGNMENT_SIGNATURE_ANNOTATION,
    GPU_MEMORY_RESOURCE,
    GPU_MILLI_RESOURCE,
    GPU_RESOURCE,
    SCHEDULER_NAME,
)
from scheduler.contract.assignment import Assignment
from scheduler.contract.request import RequestError
from scheduler.podcodec.assignment import AssignmentError, assignment_from_pod
from scheduler.podcodec.pod_fields import annotations_of, node_name_of, pod_key, pod_uid
from scheduler.podcodec.quantity import QuantityError, parse_count
from scheduler.podcodec.resources import pod_resources

Pod = Mapping[str, Any]
# (pod, its assignment) -> the signature annotation verifies under the shared key
SignatureCheck = Callable[[Pod, Assignment], bool]


class ClaimError(RuntimeError):
    """No signed pending pod can take this allocation; the message says why."""


@dataclass(frozen=True, slots=True)
class Slot:
    """What one container of a pod gets: GPU indices, and the share it holds on them."""

    gpus: tuple[int, ...]
    size: int  # devices kubelet allocates for it: GPUs, or thousandths for a share
    milli: int  # 1000 for whole GPUs
    memory_mib: int = 0  # share memory limit, 0 when none


@dataclass(frozen=True, slots=True)
class PendingPod:
    """A pending pod on this node whose signed assignment the plugin will honour."""

    uid: str
    key: str
    created: str  # metadata.creationTimestamp (RFC 3339 sorts as text)
    resource: str  # GPU_RESOURCE or GPU_MILLI_RESOURCE
    slots: tuple[Slot, ...]


@dataclass(frozen=True, slots=True)
class Refused:
    """A pending pod on this node that asks for devices but will get none, and why."""

    key: str
    reason: str
    # resource -> its containers' request sizes; None when the pod could not be read
    sizes: Mapping[str, tuple[int, ...]] | None

    def blocks(self, resource: str, size: int) -> bool:
        """True if kubelet might be admitting this pod when it asks for `size` x `resource`."""
        return self.sizes is None or size in self.sizes.get(resource, ())


@dataclass(frozen=True, slots=True)
class NodePods:
    """The pending pods of one node, split into those honoured and those refused."""

    pending: tuple[PendingPod, ...]
    refused: tuple[Refused, ...]


@dataclass(frozen=True, slots=True)
class Want:
    """One container's request from kubelet: how many devices, and which GPUs they are on."""

    size: int
    gpus: frozenset[int]


def _container_lists(pod: Pod) -> list[tuple[Mapping[str, Any], str]]:
    """(container, kind) in kubelet's allocation order; kind is init, sidecar or app."""
    spec = pod.get("spec") or {}
    out: list[tuple[Mapping[str, Any], str]] = []
    for c in spec.get("initContainers") or []:
        out.append((c, "sidecar" if c.get("restartPolicy") == "Always" else "init"))
    out.extend((c, "app") for c in spec.get("containers") or [])
    return out


def _limit(container: Mapping[str, Any], resource: str) -> int:
    # kubelet's device manager reads limits; an extended resource's request equals its limit.
    res = container.get("resources") or {}
    for where in ("limits", "requests"):
        raw = (res.get(where) or {}).get(resource)
        if raw is not None:
            try:
                return parse_count(raw)
            except QuantityError as e:
                name = container.get("name", "?")
                field = f"container {name}.resources.{where}.{resource}"
                raise RequestError(field, raw, str(e)) from None
    return 0


def request_sizes(pod: Pod) -> dict[str, tuple[int, ...]]:
    """Per device resource, the sizes of the allocations kubelet will ask for, in order."""
    out: dict[str, tuple[int, ...]] = {}
    for resource in (GPU_RESOURCE, GPU_MILLI_RESOURCE):
        sizes = tuple(n for c, _ in _container_lists(pod) if (n := _limit(c, resource)) > 0)
        if sizes:
            out[resource] = sizes
    return out


def _whole_slots(pod: Pod, a: Assignment) -> tuple[Slot, ...]:
    """Split a whole-GPU assignment over containers as kubelet hands devices out."""
    held = 0  # GPUs kept by sidecars (and, at the end, by app containers)
    slots: list[Slot] = []
    for c, kind in _container_lists(pod):
        n = _limit(c, GPU_RESOURCE)
        if n <= 0:
            continue
        gpus = a.gpus[held : held + n]
        if len(gpus) != n:
            raise ValueError(
                f"container {c.get('name', '?')} needs {n} GPUs but the assignment "
                f"{list(a.gpus)} has only {len(a.gpus) - held} left for it"
            )
        slots.append(Slot(gpus, n, a.gpu_milli))
        if kind != "init":
            held += n
    return tuple(slots)


def _share_slots(pod: Pod, a: Assignment) -> tuple[Slot, ...]:
    containers = [(c, _limit(c, GPU_MILLI_RESOURCE)) for c, _ in _container_lists(pod)]
    containers = [(c, m) for c, m in containers if m > 0]
    slots = []
    for c, m in containers:
        mem = _limit(c, GPU_MEMORY_RESOURCE)
        if not mem and len(containers) == 1:
            mem = a.gpu_memory_mib
        slots.append(Slot(a.gpus, m, m, mem))
    return tuple(slots)


def _honoured(pod: Pod, node: str, check: SignatureCheck) -> PendingPod | str | None:
    """The pod's honoured assignment, the reason it is refused, or None if it wants no GPU."""
    try:
        a = assignment_from_pod(pod)
    except (AssignmentError, RequestError) as e:
        return f"unreadable assignment annotation: {e}"
    if a is None:
        return f"no assignment by {SCHEDULER_NAME} (bound by another scheduler or by hand?)"
    if a.node != node:
        return f"assigned to node {a.node!r}, but bound to {node!r}"
    if not annotations_of(pod).get(ASSIGNMENT_SIGNATURE_ANNOTATION):
        return "assignment is not signed"
    if not check(pod, a):
        return "assignment signature does not verify (written by hand, or a different key)"
    res = pod_resources(pod)
    meta = pod.get("metadata") or {}
    # Every signed field is checked against what the pod will be given: the devices and
    # the share come from the assignment, so the pod's own limits must agree with it.
    if a.is_share:
        if res.gpu_milli != a.gpu_milli:
            return f"pod asks for {res.gpu_milli} thousandths, the assignment holds {a.gpu_milli}"
        if res.gpu_memory_mib and res.gpu_memory_mib != a.gpu_memory_mib:
            return (f"pod asks for {res.gpu_memory_mib} MiB of GPU memory, the assignment "
                    f"holds {a.gpu_memory_mib} MiB")
        slots, resource = _share_slots(pod, a), GPU_MILLI_RESOURCE
        over = sum(s.memory_mib for s in slots)
        if over > a.gpu_memory_mib:
            return (f"containers' GPU memory limits add up to {over} MiB, the assignment "
                    f"holds {a.gpu_memory_mib} MiB")
    else:
        if res.gpus != len(a.gpus):
            return f"pod asks for {res.gpus} GPUs, the assignment holds {list(a.gpus)}"
        if res.gpu_milli or res.gpu_memory_mib or a.gpu_memory_mib:
            return ("whole-GPU assignment, but the pod or the assignment also names a share "
                    f"(pod: {res.gpu_milli} thousandths, {res.gpu_memory_mib} MiB; "
                    f"assignment: {a.gpu_memory_mib} MiB)")
        try:
            slots = _whole_slots(pod, a)
        except ValueError as e:
            return str(e)
        resource = GPU_RESOURCE
    return PendingPod(pod_uid(pod), pod_key(pod), str(meta.get("creationTimestamp", "")),
                      resource, slots)  # fmt: skip


def read_node_pods(pods: Iterable[Pod], node: str, check: SignatureCheck) -> NodePods:
    """The pending pods bound to `node` that ask for GPUs: honoured, or refused with a reason."""
    pending: list[PendingPod] = []
    refused: list[Refused] = []
    for pod in pods:
        name = "?"
        try:
            meta = pod.get("metadata") or {}
            name = f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}"
            status = pod.get("status") or {}
            if node_name_of(pod) != node or status.get("phase", "Pending") != "Pending":
                continue
            if meta.get("deletionTimestamp"):
                continue
            sizes = request_sizes(pod)
            if not sizes:
                continue
            got = _honoured(pod, node, check)
        except (RequestError, AttributeError, TypeError, ValueError) as e:
            # A pod we cannot read may ask for anything: it blocks every request size.
            refused.append(Refused(name, f"unreadable pod: {e}", None))
            continue
        if isinstance(got, PendingPod):
            pending.append(got)
        elif got is not None:
            refused.append(Refused(name, got, sizes))
    pending.sort(key=lambda p: (p.created, p.key))
    return NodePods(tuple(pending), tuple(refused))


def _next_slot(p: PendingPod, used: Mapping[tuple[str, str], int]) -> Slot | None:
    i = used.get((p.uid, p.resource), 0)
    return p.slots[i] if i < len(p.slots) else None


def choose(
    pods: Sequence[PendingPod], used: Mapping[tuple[str, str], int], resource: str, want: Want
) -> PendingPod | None:
    """The pod to serve `want`: an exact GPU match first, else the oldest of the right size."""
    fitting = [
        p
        for p in pods
        if p.resource == resource and (s := _next_slot(p, used)) is not None and s.size == want.size
    ]
    for p in fitting:
        slot = _next_slot(p, used)
        if slot is not None and frozenset(slot.gpus) == want.gpus:
            return p
    return fitting[0] if fitting else None


class ClaimBook:
    """The slots already handed out, per (pod uid, resource), behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[tuple[str, str], int] = {}

    def _prune(self, pods: NodePods) -> None:
        live = {p.uid for p in pods.pending}
        for k in [k for k in self._used if k[0] not in live]:
            del self._used[k]

    def claim(self, resource: str, wants: Sequence[Want], pods: NodePods) -> list[Slot]:
        """Serve every want (one per container) or none; ClaimError says why not."""
        with self._lock:
            self._prune(pods)
            taken: list[tuple[str, str]] = []
            slots: list[Slot] = []
            try:
                for want in wants:
                    slots.append(self._claim_one(resource, want, pods, taken))
            except ClaimError:
                for k in taken:
                    self._used[k] -= 1
                raise
            return slots

    def _claim_one(
        self, resource: str, want: Want, pods: NodePods, taken: list[tuple[str, str]]
    ) -> Slot:
        blockers = [r for r in pods.refused if r.blocks(resource, want.size)]
        if blockers:
            raise ClaimError(
                f"refusing {want.size} x {resource}: cannot tell which pod kubelet is admitting "
                "while these pending pods ask for the same amount without a valid assignment: "
                + "; ".join(f"{r.key}: {r.reason}" for r in blockers)
            )
        pod = choose(pods.pending, self._used, resource, want)
        if pod is None:
            why = "; ".join(f"{r.key}: {r.reason}" for r in pods.refused)
            raise ClaimError(
                f"no pending pod on this node holds a signed {SCHEDULER_NAME} assignment of "
                f"{want.size} x {resource}" + (f" (refused: {why})" if why else "")
            )
        k = (pod.uid, pod.resource)
        slot = pod.slots[self._used.get(k, 0)]
        self._used[k] = self._used.get(k, 0) + 1
        taken.append(k)
        return slot

    def preferred(
        self, resource: str, size: int, fits: Callable[[Slot], bool], pods: NodePods
    ) -> Slot | None:
        """The next slot of the oldest pod that `fits` the offered devices, without claiming."""
        with self._lock:
            for p in pods.pending:
                slot = _next_slot(p, self._used)
                if p.resource == resource and slot is not None and slot.size == size and fits(slot):
                    return slot
        return None
