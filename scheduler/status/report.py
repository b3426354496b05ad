"""What `gts status` says about a pod or a node, computed from API objects (pure, no I/O).

A pending pod: its request, why it is pending (the PodScheduled condition kube-scheduler
writes, which carries the reasons the extender gave per node, and the Events of the scheduler
and of the extender's gang coordinator), and its gang's state. A node: its GPUs with the pods
holding them and their shares, read from the signed assignment annotations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scheduler.cluster.nodes import NodeParseError, node_spec_from_k8s
from scheduler.constants import (
    ASSIGNMENT_SIGNATURE_ANNOTATION,
    GANG_MIN_MEMBER_ANNOTATION,
    SCHEDULER_NAME,
)
from scheduler.contract.request import RequestError
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.podcodec.assignment import AssignmentError, assignment_from_pod
from scheduler.podcodec.pod_fields import (
    annotations_of,
    gang_key_of,
    is_terminal,
    node_name_of,
    pod_key,
)
from scheduler.podcodec.resources import pod_resources

Obj = Mapping[str, Any]
# Event reasons the extender and kube-scheduler give for a pod (contracts.md, Events).
GANG_REASONS = ("GangWaiting", "GangTimedOut", "GangBackoff", "GangScheduled")
# A reason is a one-liner for a terminal; kube-scheduler's own messages can be long.
MAX_REASON = 400


@dataclass(frozen=True, slots=True)
class GangState:
    """A gang as the API shows it: members by phase and the minimum it needs."""

    name: str
    min_member: int | None
    min_member_source: str
    members: int
    bound: int
    pending: int
    last_event: str

    def summary(self) -> str:
        """One line: members, bound, minimum and the latest gang event."""
        need = "?" if self.min_member is None else str(self.min_member)
        line = (f"gang {self.name}: {self.members} member pod(s), {self.bound} bound, "
                f"{self.pending} pending; needs {need} ({self.min_member_source})")
        if self.min_member is not None and self.members < self.min_member:
            line += f"; waiting for {self.min_member - self.members} more member pod(s)"
        return line + (f"; last: {self.last_event}" if self.last_event else "")


@dataclass(frozen=True, slots=True)
class PodStatus:
    """Why a pod is where it is."""

    pod: str
    phase: str
    node: str
    request: str
    ours: bool
    reasons: list[str]
    gang: GangState | None
    assignment: str

    def lines(self) -> list[str]:
        """The human-readable report."""
        out = [f"pod {self.pod}: {self.phase}" + (f" on {self.node}" if self.node else ""),
               f"  asks for: {self.request}"]
        if not self.ours:
            out.append(f"  not scheduled by {SCHEDULER_NAME} (spec.schedulerName differs)")
        if self.assignment:
            out.append(f"  assignment: {self.assignment}")
        if self.gang is not None:
            out.append("  " + self.gang.summary())
        if self.reasons:
            out.append("  why:")
            out.extend(f"    {r}" for r in self.reasons)
        elif not self.node:
            out.append("  why: no scheduling attempt recorded yet (no condition, no event)")
        return out


@dataclass(frozen=True, slots=True)
class GPUHolder:
    """One pod's hold on one GPU: its share in thousandths (1000 = the whole GPU)."""

    pod: str
    milli: int
    memory_mib: int
    signed: bool


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """A node's GPUs and who holds them."""

    node: str
    model: str
    gpus: int
    error: str
    holders: dict[int, list[GPUHolder]] = field(default_factory=dict)
    unplaced: list[str] = field(default_factory=list)

    def free_milli(self, gpu: int) -> int:
        """Thousandths of GPU `gpu` no pod holds (negative when over-committed)."""
        return MILLI_PER_GPU - sum(h.milli for h in self.holders.get(gpu, []))

    def lines(self) -> list[str]:
        """The human-readable report: one line per GPU, then pods not placed on a GPU."""
        head = f"node {self.node}: {self.gpus} x {self.model or 'GPU'}"
        out = [head + (f" (kept out of scheduling: {self.error})" if self.error else "")]
        for g in range(self.gpus):
            hs = self.holders.get(g, [])
            free = self.free_milli(g)
            state = "free" if not hs else ("OVER-COMMITTED" if free < 0 else f"{free}/1000 free")
            who = ", ".join(
                f"{h.pod} {'whole' if h.milli == MILLI_PER_GPU else f'{h.milli}/1000'}"
                + (f" {h.memory_mib} MiB" if h.memory_mib else "")
                + ("" if h.signed else " (unsigned)") for h in hs)
            out.append(f"  GPU{g}: {state}" + (f"  {who}" if who else ""))
        out.extend(f"  {u}" for u in self.unplaced)
        return out


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def describe_request(pod: Obj) -> str:
    """`2 GPUs`, `250/1000 of a GPU, 4096 MiB`, or the reason the request does not parse."""
    try:
        r = pod_resources(pod)
    except RequestError as e:
        return f"invalid request: {e}"
    if r.gpus:
        return f"{r.gpus} whole GPU(s)"
    if r.gpu_milli:
        mem = f", {r.gpu_memory_mib} MiB of GPU memory" if r.gpu_memory_mib else ""
        return f"{r.gpu_milli}/1000 of one GPU{mem}"
    return "no GPU"


def _reasons(pod: Obj, events: Sequence[Obj]) -> list[str]:
    out: list[str] = []
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            out.append(_clip(f"{c.get('reason', 'Unschedulable')}: {c.get('message', '')}"))
    for ev in sorted(events, key=_event_time):
        if ev.get("type") == "Normal" and ev.get("reason") not in GANG_REASONS:
            continue
        count = ev.get("count") or 1
        times = f" (x{count})" if count > 1 else ""
        src = (ev.get("source") or {}).get("component") or ev.get("reportingComponent") or ""
        out.append(_clip(f"{ev.get('reason', '')}{times}"
                         + (f" [{src}]" if src else "") + f": {ev.get('message', '')}"))
    return out


def _event_time(ev: Obj) -> str:
    return str(ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp") or "")


def gang_state(pod: Obj, members: Sequence[Obj], podgroup: Obj | None,
               events: Sequence[Obj]) -> GangState | None:
    """The pod's gang: its members (pods with the same group) and its minMember."""
    key = gang_key_of(pod)
    if key is None:
        return None
    live = [m for m in members if not is_terminal(m)]
    bound = sum(1 for m in live if node_name_of(m))
    min_member: int | None = None
    source = "no PodGroup and no annotation"
    spec = (podgroup or {}).get("spec") or {}
    if isinstance(spec.get("minMember"), int):
        min_member, source = spec["minMember"], "PodGroup minMember"
    else:
        raw = annotations_of(pod).get(GANG_MIN_MEMBER_ANNOTATION)
        if raw is not None and raw.isdigit():
            min_member, source = int(raw), f"annotation {GANG_MIN_MEMBER_ANNOTATION}"
    gang_events = sorted((e for e in events if e.get("reason") in GANG_REASONS), key=_event_time)
    last = ""
    if gang_events:
        e = gang_events[-1]
        last = _clip(f"{e.get('reason')}: {e.get('message', '')}")
    return GangState(name=key, min_member=min_member, min_member_source=source,
                     members=len(live), bound=bound, pending=len(live) - bound, last_event=last)


def pod_status(pod: Obj, events: Sequence[Obj], members: Sequence[Obj] = (),
               podgroup: Obj | None = None) -> PodStatus:
    """The report for one pod, from the pod, its Events and (for a gang) its fellow members."""
    spec = pod.get("spec") or {}
    phase = str((pod.get("status") or {}).get("phase") or "Pending")
    node = node_name_of(pod)
    assignment = ""
    try:
        a = assignment_from_pod(pod)
    except AssignmentError as e:
        assignment = f"invalid: {e}"
    else:
        if a is not None:
            share = "" if a.gpu_milli == MILLI_PER_GPU else f", {a.gpu_milli}/1000"
            signed = ("signed" if annotations_of(pod).get(ASSIGNMENT_SIGNATURE_ANNOTATION)
                      else "NOT signed: the node agent will refuse it")
            assignment = (f"node {a.node}, GPUs {','.join(map(str, a.gpus)) or '-'}{share} "
                          f"({signed})")
    return PodStatus(pod=pod_key(pod), phase=phase, node=node, request=describe_request(pod),
                     ours=spec.get("schedulerName") == SCHEDULER_NAME,
                     reasons=_reasons(pod, events) if not node else [],
                     gang=gang_state(pod, members, podgroup, events), assignment=assignment)


def node_status(node: Obj, pods: Sequence[Obj]) -> NodeStatus:
    """The report for one node: every GPU with the pods holding it (from their annotations)."""
    name = str((node.get("metadata") or {}).get("name") or "?")
    error = ""
    try:
        ns = node_spec_from_k8s(node)
        n, model = ns.topology.n, ns.gpu_model
    except NodeParseError as e:
        error, n, model = str(e), 0, ""
    holders: dict[int, list[GPUHolder]] = {}
    unplaced: list[str] = []
    for p in pods:
        if is_terminal(p) or node_name_of(p) != name:
            continue
        key = pod_key(p)
        try:
            a = assignment_from_pod(p)
        except AssignmentError as e:
            unplaced.append(f"{key}: assignment annotations invalid ({e}); counted nowhere")
            continue
        if a is None:
            req = describe_request(p)
            if req != "no GPU":
                unplaced.append(f"{key}: {req} without an assignment from {SCHEDULER_NAME} "
                                "(another scheduler placed it; its GPUs are unknown)")
            continue
        if a.node != name:
            unplaced.append(f"{key}: assignment names node {a.node}, but it runs here")
            continue
        signed = bool(annotations_of(p).get(ASSIGNMENT_SIGNATURE_ANNOTATION))
        for g in a.gpus:
            holders.setdefault(g, []).append(GPUHolder(key, a.gpu_milli, a.gpu_memory_mib,
                                                       signed))
            if g >= n:
                unplaced.append(f"{key}: holds GPU{g}, which the node does not have")
    return NodeStatus(node=name, model=model, gpus=n, error=error, holders=holders,
                      unplaced=unplaced)
