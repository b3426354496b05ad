"""The live cluster: nodes and the pods that hold GPUs, as one Snapshot behind one lock.

Source of truth is the API. What a pod holds is derived from its object alone:
- our assignment annotations (signed) and bound: held until the pod finishes or is deleted;
- our annotations but not bound yet: held as an assumption with a time to live, so a bind that
  never lands does not leak GPUs;
- bound with our annotations whose signature no key of the ring verifies (signed with a key
  since removed, say): still held, as annotated, because the pod may well be using those GPUs;
  counted in `unverified`, reported (log, metric, Warning Event AssignmentUnverifiable);
- bound, requesting nvidia.com/gpu, without our annotations (another scheduler's pod): held on
  the lowest-indexed wholly free GPUs, since which ones the device plugin gave it is unknown.
  When too few are wholly free (kube-scheduler ignores shares), it is counted conservatively:
  the remaining capacity of the fullest-free partly used GPUs is taken for it too, the node
  is marked in `overcommitted`, and it is reported (NodeOvercommitted on the node;
  ForeignPodNotCounted on the pod for GPUs that could not be counted at all).
The only in-memory state is an assumption made by `assume` whose Binding has not reached the
API yet; it is the one thing a restart loses. The extender binds with one write (the Binding
carries the signed assignment, copied onto the pod with spec.nodeName), so a pod is either
bound and annotated, or neither: a restart never sees a bound pod without its assignment,
and a Binding that lands after the restart arrives as a bound, annotated pod and is held.

FGD's typical workload (`typical_workload`) observes each pod once, when it first appears
here; a re-list rebuilds it from the listed pods in creation order (then key), so a restart
recovers the same typical workload as long as no observed pod has left since the last list (the
API forgets those).

Placement on a node is recomputed from these desired holdings in a fixed order (annotated pods
by key, then in-memory assumptions by key, then other schedulers' pods by key), so the
Snapshot is a function of the API objects and the order events arrived in does not matter: a
cache rebuilt after a restart equals the old one.

An annotated but unbound pod (written by hand, or by an older extender that annotated before
binding) is held as an assumption with a time to live; after `expire` or `forget` releases
it, the stale annotation is ignored here until it is removed (KubeSource removes it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from scheduler.cluster.events import Event, EventSink, NoEvents, ObjectRef
from scheduler.cluster.gang_members import GangMembers, GangView
from scheduler.cluster.nodes import NodeParseError, node_name, node_spec_from_k8s
from scheduler.constants import DEFAULT_NETWORK_LEVEL_LABELS, SCHEDULER_NAME
from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import RequestError
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.podcodec.assignment import (
    ASSIGNMENT_ANNOTATIONS,
    AssignmentError,
    assignment_from_pod,
    assignment_signature_ok,
)
from scheduler.podcodec.pod_fields import (
    annotations_of,
    is_terminal,
    node_name_of,
    pod_key,
    pod_uid,
)
from scheduler.podcodec.pod_request import pod_request_from_k8s
from scheduler.podcodec.resource_memo import ResourceMemo
from scheduler.podcodec.resources import PodResources
from scheduler.podcodec.signing import Signer
from scheduler.policy.snapshot import AllocationError, Snapshot, TopologyIndex, build_snapshot
from scheduler.policy.typical_workload import TypicalWorkload

DEFAULT_ASSUME_TTL_S = 30.0
_POD_REASONS = ("AssignmentUnverifiable", "NodeOvercommitted")
log = logging.getLogger(__name__)


@dataclass(slots=True)
class PodHolding:
    """What one pod should hold, derived from its API object (or from `assume`).

    `assignment` names exact GPUs; a foreign pod (no annotation of ours) has `foreign_gpus`
    instead and its GPUs are chosen at placement. `durable` is True when the API object carries
    this holding (it survives a restart); `deadline` is set while it is an assumption.
    """

    node: str
    assignment: Assignment | None
    durable: bool
    deadline: float | None = None
    foreign_gpus: int = 0
    cpu_milli: int = 0
    memory_mib: int = 0
    uid: str = ""
    # Our annotations exactly as the object carries them (durable holdings), so a stale
    # one can be removed only if it is still the same (a compare-and-remove patch).
    annotations: tuple[tuple[str, str], ...] = ()
    # Why the signature did not verify ("" = it did, or there is none to check).
    unverified: str = ""

    @property
    def rank(self) -> int:
        """Placement order on a node: annotated, then in-memory assumptions, then foreign."""
        if self.assignment is None:
            return 2
        return 0 if self.durable else 1


# Endings of the pod errors _place and _place_conservatively record for one node.
_PLACEMENT_ERRORS = ("not counted", "node overcommitted")

class ClusterCache:
    """Thread-safe cache of nodes and GPU holdings; read or change `snapshot` only under `lock`."""

    def __init__(
        self,
        level_keys: Sequence[str] = DEFAULT_NETWORK_LEVEL_LABELS,
        assume_ttl_s: float = DEFAULT_ASSUME_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        signer: Signer | None = None,
        typical_workload_factory: Callable[[], TypicalWorkload] = TypicalWorkload,
        events: EventSink | None = None,
    ) -> None:
        if not assume_ttl_s > 0:
            raise ValueError(f"assume_ttl_s={assume_ttl_s!r}: must be > 0")
        self.lock = threading.RLock()
        self.level_keys = tuple(level_keys)
        self.assume_ttl_s = assume_ttl_s
        self.clock = clock
        self.signer = signer
        self.events: EventSink = events if events is not None else NoEvents()
        # node -> {pod key: why} for pods that could not be counted exactly there.
        self._overcommitted: dict[str, dict[str, str]] = {}
        # (reason, object) already reported, so an event is emitted once per occurrence.
        self._reported: set[tuple[str, str]] = set()
        self.synced = False
        self.errors: dict[str, str] = {}
        self._pod_errors: dict[str, str] = {}
        self._typical_workload_factory = typical_workload_factory
        self.typical_workload = typical_workload_factory()
        # Keys of current pods already counted in `typical_workload` (each pod is counted once).
        self._observed: set[str] = set()
        self._specs: dict[str, NodeSpec] = {}
        self._pods: dict[str, PodHolding] = {}
        self._by_node: dict[str, set[str]] = {}
        # Annotations released by expire/forget while the pod was unbound: not held again
        # unless the pod turns out bound with them.
        self._stale: dict[str, PodHolding] = {}
        self._topo_index = TopologyIndex()
        # Keys held in `snapshot` per node, so a node is re-placed without scanning all pods.
        self._placed: dict[str, set[str]] = {}
        self._snapshot: Snapshot = build_snapshot([], topo_index=self._topo_index)
        # Nodes added, changed or removed since `_snapshot` was built: applied in one rebuild
        # on the next read, so a burst of node events (a scale-up or scale-down of hundreds
        # of nodes) costs one rebuild, not one per node.
        self._pending_nodes: set[str] = set()
        # Existing pods of each gang and the PodGroup objects: what gang admission counts.
        self.gang_members = GangMembers()
        # Each pod's effective requests, parsed again only when its spec's requests change
        # (most events of a pod, our own Binding's among them, carry the same spec).
        self._resources = ResourceMemo()

    # ---- queries -------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        """The nodes and holdings now (node events since the last read applied first)."""
        with self.lock:
            self._flush()
            return self._snapshot

    @property
    def pod_errors(self) -> dict[str, str]:
        """Pods that could not be read or counted exactly: key -> why."""
        with self.lock:
            self._flush()  # pending node events decide which pods conflict
            return self._pod_errors

    def holding(self, key: str) -> PodHolding | None:
        """What pod `key` should hold (held in the snapshot unless it conflicts)."""
        with self.lock:
            h = self._pods.get(key)
            return None if h is None else replace(h)

    @property
    def unverified(self) -> dict[str, str]:
        """Bound pods held although their signature does not verify: key -> why."""
        with self.lock:
            return {k: h.unverified for k, h in self._pods.items() if h.unverified}

    @property
    def overcommitted(self) -> dict[str, str]:
        """Nodes where a pod could not be counted exactly: node -> why (one of them)."""
        with self.lock:
            self._flush()  # pending node events decide what is overcommitted
            return {n: next(iter(sorted(m.values()))) for n, m in self._overcommitted.items()
                    if m}

    def stale_annotations(self) -> list[tuple[str, str, dict[str, str]]]:
        """(pod key, uid, our annotations as last seen) of pods whose assignment was released
        (expired or forgotten) while the API still shows it: to be removed, if unchanged."""
        with self.lock:
            return sorted((k, h.uid, dict(h.annotations)) for k, h in self._stale.items())

    # ---- nodes ---------------------------------------------------------------------------

    def upsert_node(self, node: Mapping[str, Any]) -> str | None:
        """Add or update a node (watch ADDED/MODIFIED). Returns the parse error, if any.

        A node that does not parse is kept out of scheduling with its error in `errors`.
        Raises NodeParseError only for an object without a usable metadata.name.
        """
        name = node_name(node)
        with self.lock:
            try:
                spec = node_spec_from_k8s(node, level_keys=self.level_keys)
            except (NodeParseError, ValueError, RecursionError) as e:
                self.errors[name] = str(e)
                self._report_node_error(name, str(e))
                if self._specs.pop(name, None) is not None:
                    self._pending_nodes.add(name)
                return str(e)
            self.errors.pop(name, None)
            self._reported.discard(("InvalidTopology", name))
            if self._specs.get(name) == spec:
                return None  # status heartbeats and label churn that change nothing we use
            self._specs[name] = spec
            self._pending_nodes.add(name)
            return None

    def delete_node(self, name: str) -> None:
        """Remove a node (watch DELETED); its pods' holdings leave the snapshot with it."""
        with self.lock:
            self.errors.pop(name, None)
            if self._specs.pop(name, None) is not None:
                self._pending_nodes.add(name)

    def replace_specs(self, specs: Iterable[NodeSpec]) -> None:
        """Set the nodes from ready NodeSpecs (static mode: `gts serve --cluster FILE`)."""
        with self.lock:
            new: dict[str, NodeSpec] = {}
            for s in specs:
                if s.name in new:
                    raise ValueError(f"node {s.name!r} appears twice")
                new[s.name] = s
            self._specs = new
            self.errors = {}
            self._rebuild()

    def replace_nodes(self, nodes: Iterable[Mapping[str, Any]]) -> None:
        """Re-list of nodes: every node not in `nodes` is gone."""
        with self.lock:
            self._load_nodes(nodes)
            self._rebuild()

    def _load_nodes(self, nodes: Iterable[Mapping[str, Any]]) -> None:
        specs: dict[str, NodeSpec] = {}
        errors: dict[str, str] = {}
        for obj in nodes:
            try:
                name = node_name(obj)
            except NodeParseError:
                continue  # nothing to key it by; the apiserver never sends one
            try:
                specs[name] = node_spec_from_k8s(obj, level_keys=self.level_keys)
            except (NodeParseError, ValueError, RecursionError) as e:
                errors[name] = str(e)
                self._report_node_error(name, str(e))
        self._specs = specs
        self.errors = errors

    def _report_node_error(self, name: str, err: str) -> None:
        if ("InvalidTopology", name) in self._reported:
            return
        self._reported.add(("InvalidTopology", name))
        self._emit(Event(ObjectRef("Node", name), "InvalidTopology",
                         f"{SCHEDULER_NAME} keeps this node out of scheduling: {err}"[:1000],
                         "Warning"))

    def _emit(self, event: Event) -> None:
        try:
            self.events.emit(event)
        except Exception:  # a sink must not raise; if one does, the cache goes on
            log.exception("event sink failed")

    # ---- pods ----------------------------------------------------------------------------

    def upsert_pod(self, pod: Mapping[str, Any]) -> str | None:
        """Apply a pod's current object (watch ADDED/MODIFIED). Returns its error, if any.

        Raises RequestError only for an object without metadata.name.
        """
        key = pod_key(pod)
        with self.lock:
            self._flush()  # node events first, as if each was applied when it came
            self.gang_members.pod_changed(pod)
            old = self._pods.get(key)
            try:
                new = self._desired(pod, key, old)
            except (RequestError, AssignmentError) as e:
                # An object we cannot read changes nothing we hold for it.
                self._pod_errors[key] = str(e)
                return str(e)
            self._set(key, new)
            self._observe(key, pod)
            return self._pod_errors.get(key)

    def delete_pod(self, pod: Mapping[str, Any]) -> None:
        """The pod is gone (watch DELETED): release whatever it held."""
        key = pod_key(pod)
        with self.lock:
            self._flush()  # node events first, as if each was applied when it came
            self.gang_members.pod_deleted(key)
            self._resources.drop(key)
            self._stale.pop(key, None)
            self._pod_errors.pop(key, None)
            self._observed.discard(key)
            self._reported -= {(r, key) for r in _POD_REASONS}
            self._set(key, None)

    def replace_pods(self, pods: Iterable[Mapping[str, Any]]) -> None:
        """Re-list of pods: rebuild every holding from the objects, keeping live assumptions."""
        with self.lock:
            self._flush()  # node events first, as if each was applied when it came
            self._load_pods(pods)
            self._rebuild()

    def _load_pods(self, pods: Iterable[Mapping[str, Any]]) -> None:
        old_pods, old_stale = self._pods, self._stale
        self._pods, self._by_node, self._pod_errors, self._stale = {}, {}, {}, {}
        self.typical_workload, self._observed = self._typical_workload_factory(), set()
        self._resources.clear()
        keyed: list[tuple[str, str, Mapping[str, Any]]] = []
        self.gang_members.replace_pods(())
        for obj in pods:
            self.gang_members.pod_changed(obj)
            try:
                key = pod_key(obj)
            except RequestError:
                continue  # nothing to key it by; the apiserver never sends one
            keyed.append((_created(obj), key, obj))
        # Creation order, as the watch would have shown them; the key breaks ties (the API
        # stamps whole seconds), so the typical workload never depends on the list's order.
        keyed.sort(key=lambda t: (t[0], t[1]))
        for _, key, obj in keyed:
            if key in old_stale:
                self._stale[key] = old_stale[key]
            try:
                new = self._desired(obj, key, old_pods.get(key))
            except (RequestError, AssignmentError) as e:
                self._pod_errors[key] = str(e)
                continue
            self._observe(key, obj)
            if new is not None:
                self._pods[key] = new
                self._by_node.setdefault(new.node, set()).add(key)

    # ---- gangs ---------------------------------------------------------------------------

    def upsert_podgroup(self, obj: Mapping[str, Any]) -> None:
        """Apply a scheduling.x-k8s.io PodGroup object (watch ADDED/MODIFIED)."""
        with self.lock:
            self.gang_members.podgroup_changed(obj)

    def delete_podgroup(self, obj: Mapping[str, Any]) -> None:
        """A PodGroup is gone (watch DELETED)."""
        with self.lock:
            self.gang_members.podgroup_deleted(obj)

    def replace_podgroups(self, objs: Iterable[Mapping[str, Any]]) -> None:
        """Re-list of PodGroups."""
        with self.lock:
            self.gang_members.replace_podgroups(objs)

    def note_gang_member(self, pod: Mapping[str, Any]) -> None:
        """Count a gang pod seen at filter (static mode only: no pod watch feeds the cache)."""
        with self.lock:
            self.gang_members.note(pod, self.clock())

    def gang_view(self, gang_key: str) -> GangView | None:
        """The gang `namespace/group` as it exists now (identity, members), or None."""
        with self.lock:
            return self.gang_members.view(gang_key, self.clock())

    def gang_views(self) -> list[GangView]:
        """Every gang with at least one existing pod."""
        with self.lock:
            return list(self.gang_members.views(self.clock()))

    # ---- assumptions ---------------------------------------------------------------------

    def assume(self, a: Assignment) -> None:
        """Hold `a` now, before its annotation is written; expires after assume_ttl_s.

        Raises AllocationError if it does not fit or the pod already holds something else.
        """
        with self.lock:
            self._flush()  # node events first, as if each was applied when it came
            old = self._pods.get(a.pod)
            if old is not None and old.assignment == a and old.deadline is not None:
                old.deadline = self.clock() + self.assume_ttl_s
                return
            if old is not None:
                raise AllocationError(f"pod {a.pod!r} already holds resources on {old.node!r}; "
                                      "forget it first")
            # Fit check against the current holdings; then place canonically with the rest.
            self.snapshot.allocate(a)
            self.snapshot.release(a.pod)
            h = PodHolding(node=a.node, assignment=a, durable=False,
                           deadline=self.clock() + self.assume_ttl_s)
            self._set(a.pod, h)
            if a.pod not in self.snapshot.holdings:  # pragma: no cover - see module docstring
                why = self._pod_errors.pop(a.pod, "conflict")
                self._set(a.pod, None)
                raise AllocationError(why)

    def confirm(self, key: str) -> bool:
        """The pod's Binding was posted: keep its holding until it finishes or is deleted."""
        with self.lock:
            self._flush()  # node events first, as if each was applied when it came
            h = self._pods.get(key)
            if h is None or h.assignment is None:
                return False
            h.deadline = None
            return True

    def forget(self, key: str) -> bool:
        """Release what the pod holds (a failed bind or a gang that timed out).

        A pod the API shows bound with our annotations keeps its holding (it does use the GPUs);
        returns whether something was released.
        """
        with self.lock:
            self._flush()  # node events first, as if each was applied when it came
            h = self._pods.get(key)
            if h is None or (h.durable and h.deadline is None):
                return False
            if h.durable and h.assignment is not None:
                self._stale[key] = h
            self._set(key, None)
            return True

    def expire(self) -> list[str]:
        """Release assumptions whose time to live has passed; returns their pod keys."""
        with self.lock:
            self._flush()  # node events first, as if each was applied when it came
            now = self.clock()
            gone = sorted(k for k, h in self._pods.items()
                          if h.deadline is not None and h.deadline <= now)
            nodes: set[str] = set()
            for k in gone:
                h = self._pods.pop(k)
                if h.durable and h.assignment is not None:
                    self._stale[k] = h
                self._by_node.get(h.node, set()).discard(k)
                nodes.add(h.node)
            for n in sorted(nodes):
                self._resync(n)
            return gone

    # ---- internals -----------------------------------------------------------------------

    def _observe(self, key: str, pod: Mapping[str, Any]) -> None:
        """Count a pod's request in `typical_workload` the first time the pod is seen (and not
        finished).

        Every pod is observed, CPU-only ones too: the typical workload decides what it counts
        (the simulator's policy counts CPU-only pods as a class, and the service must match it).
        """
        if is_terminal(pod):
            self._observed.discard(key)
            return
        if key in self._observed:
            return
        try:
            req = pod_request_from_k8s(pod, resources=self._resources_of(key))
        except RequestError:
            return  # counted once it can be read (the filter rejects it until then)
        self._observed.add(key)
        self.typical_workload.observe(req)

    def _desired(
        self, pod: Mapping[str, Any], key: str, old: PodHolding | None
    ) -> PodHolding | None:
        """What the pod should hold given its object and what we knew before."""
        if is_terminal(pod):
            self._stale.pop(key, None)
            self._pod_errors.pop(key, None)
            return None
        bound_to = node_name_of(pod)
        uid = pod_uid(pod)
        self._pod_errors.pop(key, None)
        try:
            a = assignment_from_pod(pod, resources=self._resources_of(key))
        except AssignmentError as e:
            self._pod_errors[key] = str(e)
            a = None
        if a is not None and self.signer is not None and not assignment_signature_ok(
                pod, a, self.signer):
            if bound_to and a.node == bound_to:
                # Bound with an assignment we cannot verify (signed with a key no longer in
                # the ring, or written by hand): the pod may be using those GPUs, so they
                # are held, never free, and it is reported.
                why = (f"pod {key}: bound to {bound_to} with an assignment (GPUs "
                       f"{','.join(map(str, a.gpus))}) whose signature no key of this "
                       f"scheduler verifies (keys: {', '.join(self.signer.key_ids)}); its GPUs "
                       f"are counted as held")
                self._pod_errors[key] = why
                self._report_unverified(key, uid, why)
                ours = tuple(sorted((k, v) for k, v in annotations_of(pod).items()
                                    if k in ASSIGNMENT_ANNOTATIONS))
                self._stale.pop(key, None)
                return PodHolding(node=a.node, assignment=a, durable=True, uid=uid,
                                  annotations=ours, unverified=why)
            self._pod_errors[key] = (f"pod {key}: assignment annotations are not signed by this "
                                    "scheduler; ignored")
            a = None
        if a is not None and bound_to and a.node != bound_to:
            self._pod_errors[key] = (f"pod {key}: annotated for node {a.node} but bound to "
                                    f"{bound_to}; annotation ignored")
            a = None
        if a is not None:
            ours = tuple(sorted((k, v) for k, v in annotations_of(pod).items()
                                if k in ASSIGNMENT_ANNOTATIONS))
            if bound_to:
                self._stale.pop(key, None)
                return PodHolding(node=a.node, assignment=a, durable=True, uid=uid,
                                  annotations=ours)
            stale = self._stale.get(key)
            if stale is not None and stale.assignment == a:
                # Released earlier and not yet removed from the pod. A newer assumption of
                # ours for the same pod (kube-scheduler retried it) keeps holding.
                if old is not None and not old.durable and old.assignment is not None:
                    return old
                return None
            self._stale.pop(key, None)
            if old is not None and old.assignment == a:
                deadline = old.deadline
            else:
                deadline = self.clock() + self.assume_ttl_s
            return PodHolding(node=a.node, assignment=a, durable=True, deadline=deadline,
                              uid=uid, annotations=ours)
        if key in self._stale and key not in self._pod_errors:
            del self._stale[key]  # the annotation is gone: nothing stale to ignore any more
        if (old is not None and not old.durable and old.assignment is not None
                and bound_to in ("", old.node)):
            return old  # our own assumption; its annotation is not visible yet
        if bound_to:
            res = self._resources.resources(key, pod)
            if res.gpus > 0:
                return PodHolding(node=bound_to, assignment=None, durable=True,
                                  foreign_gpus=res.gpus, cpu_milli=res.cpu_milli,
                                  memory_mib=res.memory_mib, uid=uid)
        return None

    def _resources_of(self, key: str) -> Callable[[Mapping[str, Any]], PodResources]:
        memo = self._resources
        return lambda pod: memo.resources(key, pod)

    def _report_unverified(self, key: str, uid: str, why: str) -> None:
        if ("AssignmentUnverifiable", key) in self._reported:
            return
        self._reported.add(("AssignmentUnverifiable", key))
        log.warning("unverifiable assignment counted as held", extra={"pod": key,
                                                                       "reason": why})
        ns, name = key.split("/", 1)
        self._emit(Event(ObjectRef("Pod", name, ns, uid), "AssignmentUnverifiable", why,
                         "Warning"))

    def _flush(self) -> None:
        """Apply the node events held back since the last read (one rebuild for them all)."""
        if self._pending_nodes:
            changed, self._pending_nodes = self._pending_nodes, set()
            self._rebuild(changed)

    def _set(self, key: str, new: PodHolding | None) -> None:
        # Node events first, as if each had been applied when it came.
        self._flush()
        if new is not None and self._set_in_place(key, new):
            return
        old = self._pods.pop(key, None)
        if old is not None:
            self._by_node.get(old.node, set()).discard(key)
        if new is not None:
            self._pods[key] = new
            self._by_node.setdefault(new.node, set()).add(key)
        # The old node first: a holding that moves must leave it before it can be placed again.
        for n in dict.fromkeys(h.node for h in (old, new) if h is not None):
            self._resync(n)

    def _set_in_place(self, key: str, new: PodHolding) -> bool:
        """Apply `new` without re-placing its node when that would give the same snapshot.

        Re-placing a node releases and allocates every holding on it in the canonical order;
        it only matters when something there conflicts, since holdings that all fit
        together fit in any order. So when every holding on the node is placed (no conflict,
        nothing overcommitted): a pod whose exact assignment is unchanged (our Binding
        arriving as a bound, annotated pod) keeps its place, and a new assignment that fits
        beside them is allocated on its own (other schedulers' pods, placed last on the
        lowest wholly free GPUs, keep theirs: the new one is on none of those). Returns False
        when the full re-placement is needed.
        """
        a = new.assignment
        if a is None or self._overcommitted.get(a.node):
            return False
        holders = self._by_node.get(a.node, set())
        placed = self._placed.get(a.node, set())
        if len(placed) != len(holders) or not placed >= holders:
            return False
        old = self._pods.get(key)
        if old is not None:
            if old.assignment != a:
                return False
            self._pods[key] = new
            return True
        try:
            self._snapshot.allocate(a)
        except AllocationError:
            return False  # the full re-placement records why
        self._pods[key] = new
        holders.add(key)
        self._by_node[a.node] = holders
        self._placed[a.node] = placed | {key}
        if self._pod_errors.get(key, "").endswith("not counted"):
            del self._pod_errors[key]
        return True

    def _sorted_specs(self) -> list[NodeSpec]:
        # Sorted so that node order (and so the snapshot) never depends on event order.
        return [self._specs[n] for n in sorted(self._specs)]

    def _rebuild(self, changed: set[str] | None = None) -> None:
        """New arrays for the current nodes; holdings placed again on the `changed` nodes only
        (every node when None). A node's row depends only on its spec and its pods, so rows
        of unchanged nodes are copied from the old snapshot: a node joining a 5,000-node
        cluster costs a copy, not a re-placement of every pod."""
        if changed is None:
            self._pending_nodes = set()  # a full rebuild covers them
        old, old_placed = self._snapshot, self._placed
        snap = build_snapshot(self._sorted_specs(), topo_index=self._topo_index)
        self._placed = {}
        todo = set(snap.names) if changed is None else set(changed) & set(snap.index)
        keep = [n for n in snap.names if n not in todo and n in old.index]
        if keep:
            ni = np.fromiter((snap.index[n] for n in keep), dtype=np.int64, count=len(keep))
            oi = np.fromiter((old.index[n] for n in keep), dtype=np.int64, count=len(keep))
            g = min(old.max_gpus, snap.max_gpus)  # a kept node's GPUs fit in both
            for f in ("cpu_free", "mem_free", "free_mask"):
                getattr(snap, f)[ni] = getattr(old, f)[oi]
            for f in ("milli_free", "gpu_mem_free"):
                getattr(snap, f)[ni, :g] = getattr(old, f)[oi, :g]
            kept = set(keep)
            snap.holdings = {k: a for k, a in old.holdings.items() if a.node in kept}
            self._placed = {n: old_placed[n] for n in keep if n in old_placed}
        self._snapshot = snap
        # Pods on a node that is gone are held nowhere: what was said about counting them
        # there (a conflict, an overcommitted node) no longer holds.
        for n in (set(old.index) | (changed or set())) - set(snap.index):
            self._overcommitted.pop(n, None)
            for k in self._by_node.get(n, ()):
                if self._pod_errors.get(k, "").endswith(_PLACEMENT_ERRORS):
                    del self._pod_errors[k]
        for n in sorted(todo & set(self._by_node)):
            self._place(snap, n, self._holders(n), record=True)

    def _holders(self, node: str) -> dict[str, PodHolding]:
        return {k: self._pods[k] for k in self._by_node.get(node, ())}

    def _resync(self, node: str) -> None:
        """Release every holding on `node` and place them again in the canonical order."""
        snap = self.snapshot
        for k in sorted(self._placed.pop(node, ())):
            snap.release(k)
        if node in snap.index:
            self._place(snap, node, self._holders(node), record=True)

    def _place(
        self, snap: Snapshot, node: str, holders: Mapping[str, PodHolding], *, record: bool
    ) -> None:
        i = snap.index[node]
        if record:
            self._overcommitted.pop(node, None)
        for key in sorted(holders, key=lambda k: (holders[k].rank, k)):
            h = holders[key]
            a = h.assignment
            if a is None:
                free = [g for g in range(int(snap.gpu_count[i]))
                        if snap.milli_free[i, g] == MILLI_PER_GPU]
                a = Assignment(pod=key, node=node, gpus=tuple(free[:h.foreign_gpus]),
                               gpu_milli=MILLI_PER_GPU, cpu_milli=h.cpu_milli,
                               memory_mib=h.memory_mib)
                if len(free) < h.foreign_gpus:
                    self._place_conservatively(snap, i, key, h, a, record=record)
                    continue
            try:
                snap.allocate(a)
            except AllocationError as e:
                if record:
                    self._pod_errors[key] = f"pod {key}: conflicts on {node}: {e}; not counted"
                continue
            if record:
                self._placed.setdefault(node, set()).add(key)
                if self._pod_errors.get(key, "").endswith("not counted"):
                    del self._pod_errors[key]

    def _place_conservatively(self, snap: Snapshot, i: int, key: str, h: PodHolding,
                              whole: Assignment, *, record: bool) -> None:
        """Another scheduler's pod asks more GPUs than are wholly free on its node (kube-
        scheduler does not see shares): count the free GPUs, then what is left of the most
        free partly used ones, each as its own holding `key#gpuN`; report what was done."""
        node = snap.names[i]
        want = h.foreign_gpus
        partly = sorted((g for g in range(int(snap.gpu_count[i]))
                         if 0 < snap.milli_free[i, g] < MILLI_PER_GPU),
                        key=lambda g: (-int(snap.milli_free[i, g]), g))[: want - len(whole.gpus)]
        parts = [whole] + [
            Assignment(pod=f"{key}#gpu{g}", node=node, gpus=(g,),
                       gpu_milli=int(snap.milli_free[i, g]),
                       gpu_memory_mib=int(snap.gpu_mem_free[i, g]))
            for g in partly]
        counted = 0
        for part in parts:
            try:
                snap.allocate(part)
            except AllocationError:
                continue
            counted += len(part.gpus)
            if record:
                self._placed.setdefault(node, set()).add(part.pod)
        if not record:
            return
        why = (f"pod {key}: bound to {node} asking {want} GPUs, {len(whole.gpus)} wholly free; "
               f"counted on GPUs {','.join(map(str, [*whole.gpus, *partly])) or 'none'} "
               f"(those holding shares are taken whole)")
        if counted < want:
            why += f"; {want - counted} GPU(s) not counted: the node has no capacity left"
        self._pod_errors[key] = why + "; node overcommitted"
        self._overcommitted.setdefault(node, {})[key] = why
        if ("NodeOvercommitted", key) not in self._reported:
            self._reported.add(("NodeOvercommitted", key))
            log.warning("node overcommitted by another scheduler's pod",
                        extra={"node": node, "pod": key, "reason": why})
            self._emit(Event(ObjectRef("Node", node), "NodeOvercommitted", why, "Warning"))
            if counted < want:
                ns, name = key.split("/", 1)
                self._emit(Event(ObjectRef("Pod", name, ns, h.uid), "ForeignPodNotCounted",
                                 why, "Warning"))


def _created(pod: Mapping[str, Any]) -> str:
    # RFC 3339 in UTC as the API writes it: sorting the strings sorts the times.
    meta = pod.get("metadata")
    ts = meta.get("creationTimestamp") if isinstance(meta, Mapping) else None
    return ts if isinstance(ts, str) else ""
