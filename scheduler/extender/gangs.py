"""Gang admission, reservations and the bind barrier: a gang is bound whole, or holds no GPU.

Life of a gang (keyed by its PodGroup, `namespace/name`; its identity is the PodGroup's UID,
or the name plus its oldest pod's creation time, so a name reused later is a new gang):
1. Admission. Until at least minMember of its pods exist in the cache (the pod watch; in
   static mode, the pods seen at filter), its members are turned away with "waiting for N
   more members" and nothing is held, as the Coscheduling plugin does. A minMember above
   what the cluster could ever hold, or above MAX_GANG, is refused with that reason. After a
   timeout the gang backs off (doubling, capped) before it may reserve again.
2. Plan and reserve. The first member filtered once the gang is admitted plans the whole gang
   from the core, for `min_member` copies of its request (members of a gang are assumed
   homogeneous, as Kubeflow and Volcano gangs are). The plan is made on a copy of the
   snapshot outside every lock (the cache lock is held only to copy it), then every slot is
   reserved in the cache (assume) in one locked step that re-checks each fit, all or none.
   The gang's deadline is now + timeout.
3. Each member at filter claims a slot (its reservation is re-keyed to the pod); filter then
   passes only that slot's node. A member that asks for something else is refused.
4. Each member's bind waits until every slot's member has reached bind. The last one to
   arrive binds all: it annotates every member first and posts the Bindings only if all
   annotations succeeded, then wakes the others with their results.
5. At the deadline, unless every member reached bind, all reservations are released, every
   waiting bind fails and the gang backs off. A member deleted meanwhile frees its slot; if
   fewer than minMember pods are left, the whole reservation is released and the gang waits
   for members again (then is planned anew).

Members beyond min_member, and members arriving after their gang was bound, are scheduled
as single pods (the gang's all-or-nothing guarantee covers min_member pods, as in
Coscheduling). Events (GangWaiting, GangBackoff, GangTimedOut, GangScheduled) go to the
EventSink, at most one per gang and reason per `event_interval_s`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import enum
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from scheduler.cluster.events import Event, EventSink, EventType, NoEvents, ObjectRef
from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MAX_GANG
from scheduler.extender.ports import CacheLike
from scheduler.policy.gang_admission import gang_admission, gang_backoff_s, max_members
from scheduler.policy.memo_copy import copy_memo
from scheduler.policy.snapshot import AllocationError, Snapshot
from scheduler.policy.typical_workload import TypicalWorkload

if TYPE_CHECKING:
    from scheduler.cluster.gang_members import GangView

PLACEHOLDER_PREFIX = "gang:"  # ':' never occurs in a namespace name, so no pod key collides
DONE_MEMORY = 10_000  # bound gangs remembered, so a late extra member is not taken for a new gang
BACKOFF_MEMORY = 10_000
EVENT_MEMORY = 10_000
BACKOFF_MAX_S = 300.0
PLANNING_WAIT_S = 1.0  # a member whose gang is being planned waits this long, this often
PLANNING_WAITS = 10

log = logging.getLogger("gts.extender.gangs")


class GangState(enum.Enum):
    """Where a gang is in its life."""

    RESERVED = "reserved"  # planned and held; members arriving at filter and bind
    BINDING = "binding"  # every member reached bind; the last one is posting Bindings
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class GangMember:
    """A member ready to be bound: who, and the reservation it holds."""

    namespace: str
    name: str
    uid: str
    assignment: Assignment


@dataclass(slots=True)
class _Slot:
    held: Assignment  # as held in the cache now (placeholder key until claimed)
    member: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""
    at_bind: bool = False
    result: str | None = None


@dataclass(slots=True)
class _Gang:
    key: str
    identity: str
    template: PodRequest
    slots: list[_Slot]
    created: float
    deadline: float
    state: GangState = GangState.RESERVED
    failure: str = ""
    members: dict[str, _Slot] = field(default_factory=dict)

    def gpus(self) -> int:
        return sum(len(s.held.gpus) for s in self.slots)


@dataclass(slots=True)
class _Backoff:
    failures: int
    until: float


@dataclass(frozen=True, slots=True)
class BindResult:
    """How binding one member went: "" bound; `in_doubt` when the Binding may still land."""

    error: str = ""
    in_doubt: bool = False


# (members, private copies of the snapshot and the typical workload, candidate node indices
# or None)
PlanFn = Callable[[list[PodRequest], Snapshot, "TypicalWorkload | None", "np.ndarray | None"],
                  "list[Assignment] | str"]
BindAllFn = Callable[[Sequence[GangMember]], dict[str, BindResult]]


def _shape(req: PodRequest) -> tuple[object, ...]:
    return (req.gpus, req.gpu_milli, req.gpu_memory_mib, req.cpu_milli, req.memory_mib,
            req.allowed_models)


def _describe(req: PodRequest) -> str:
    what = f"{req.gpus} GPU(s)" if req.gpus else f"{req.gpu_milli}/1000 of a GPU"
    return f"{what}, cpu {req.cpu_milli}m, memory {req.memory_mib}Mi"


def _pod_ref(pod_key: str, uid: str = "") -> ObjectRef:
    ns, _, name = pod_key.partition("/")
    return ObjectRef("Pod", name, ns, uid)


class GangObserver(Protocol):
    """Where the coordinator reports what became of gangs (ExtenderMetrics in the service).

    Declared here, not imported from the metrics module, which reads the coordinator's
    gauges: one direction of import between the two.
    """

    def gang_event(self, event: str) -> None:
        """One gang outcome: planned, unplannable, bound, bind_failed or timeout."""
        ...

    def gang_wait(self, seconds: float, outcome: str) -> None:
        """A member's bind returned after waiting `seconds` for its gang."""
        ...


class GangCoordinator:
    """Admits, plans, reserves, and binds gangs all-or-nothing; thread-safe.

    Lock order: this coordinator's lock, then the cache's lock; never the reverse, and
    neither is held while the Kubernetes API is called or a gang is planned.
    """

    def __init__(
        self,
        cache: CacheLike,
        plan: PlanFn,
        *,
        timeout_s: float,
        clock: Callable[[], float],
        bind_grace_s: float = 10.0,
        metrics: GangObserver | None = None,
        events: EventSink | None = None,
        backoff_initial_s: float | None = None,
        backoff_max_s: float = BACKOFF_MAX_S,
        members_from_filter: bool = False,
        event_interval_s: float = 30.0,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"gang timeout_s={timeout_s}: must be positive")
        initial = timeout_s if backoff_initial_s is None else backoff_initial_s
        if initial <= 0 or backoff_max_s < initial:
            raise ValueError(f"gang backoff {initial}..{backoff_max_s}s: must be positive and "
                             f"the cap at least the initial backoff")
        self._cache = cache
        self._plan = plan
        self.timeout_s = timeout_s
        self.bind_grace_s = bind_grace_s
        # A gang that timed out waits at least as long as it held its GPUs, so an
        # incomplete gang holds them at most half the time, and less with every failure.
        self.backoff_initial_s = initial
        self.backoff_max_s = backoff_max_s
        self.members_from_filter = members_from_filter
        self.event_interval_s = event_interval_s
        self.events: EventSink = events if events is not None else NoEvents()
        self._clock = clock
        self._metrics = metrics
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._gangs: dict[str, _Gang] = {}
        self._planning: set[str] = set()
        self._done: OrderedDict[str, float] = OrderedDict()
        self._backoff: OrderedDict[str, _Backoff] = OrderedDict()
        self._singles: OrderedDict[str, float] = OrderedDict()
        self._emitted: OrderedDict[tuple[str, str], float] = OrderedDict()

    # ---- filter side -------------------------------------------------------------------

    def claim(self, req: PodRequest, namespace: str, name: str, uid: str,
              plan_candidates: Sequence[str] | None = None,
              pod: Mapping[str, Any] | None = None) -> Assignment | str | None:
        """This member's reserved placement, planning and reserving the gang once admitted.

        Returns the Assignment to steer filter to, a reason (str) when the gang cannot be
        placed now (waiting for members, backing off, no room), or None when the pod is to be
        scheduled as a single pod (its gang is already bound, or all slots are taken).
        `plan_candidates` are the nodes kube-scheduler's own filters passed for this pod;
        a new plan uses only those (selectors, taints and affinity are the same for every
        member of a homogeneous gang). `pod` is the Pod object, noted as an existing member
        when no pod watch feeds the cache (static mode).
        """
        assert req.gang is not None
        gkey = req.gang.key
        with self._lock:
            if self.members_from_filter and pod is not None:
                self._cache.note_gang_member(pod)
            waited = 0
            while True:
                now = self._clock()
                self._expire_locked(now, only=gkey)
                g = self._gangs.get(gkey)
                if g is not None:
                    return self._claim_live(g, req, namespace, name, uid)
                view = self._cache.gang_view(gkey)
                if view is None or req.key not in view.members:
                    return (f"gang {gkey}: pod {req.key} is not in the extender's cache yet "
                            f"(the pod watch has not shown it); nothing is reserved")
                if view.identity in self._done:
                    self._single(req.key)
                    return None
                n = self._min_member(view, req)
                with self._cache.lock:
                    capacity = max_members(req, self._cache.snapshot)
                b = self._backoff.get(view.identity)
                left = max(0.0, b.until - now) if b is not None else 0.0
                why = gang_admission(n, len(view.members), capacity, cap=MAX_GANG,
                                     backoff_left_s=left)
                if why is not None:
                    reason = f"gang {gkey}: {why}"
                    if len(view.members) >= n and left > 0:
                        self._emit(gkey, "GangBackoff", reason, _pod_ref(req.key, uid),
                                   "Warning")
                    else:
                        self._emit(gkey, "GangWaiting", reason, _pod_ref(req.key, uid))
                    return reason
                if gkey not in self._planning:
                    self._planning.add(gkey)
                    break
                # Another member's filter is planning this gang: wait for its slot (planning
                # is bounded work), rather than send this member round kube-scheduler's queue.
                if waited >= PLANNING_WAITS:
                    return (f"gang {gkey} is being planned (another member's filter); "
                            f"kube-scheduler will retry this pod")
                waited += 1
                self._cond.wait(timeout=PLANNING_WAIT_S)
        try:
            return self._plan_new(req, gkey, n, view.identity, plan_candidates, namespace, name,
                                  uid)
        finally:
            with self._lock:
                self._planning.discard(gkey)
                self._cond.notify_all()

    @staticmethod
    def _min_member(view: GangView, req: PodRequest) -> int:
        assert req.gang is not None
        pg = view.podgroup
        return pg.min_member if pg is not None and pg.min_member else req.gang.min_member

    def _claim_live(self, g: _Gang, req: PodRequest, namespace: str, name: str,
                    uid: str) -> Assignment | str | None:
        self._singles.pop(req.key, None)
        slot = g.members.get(req.key)
        if slot is not None:
            if uid and slot.uid != uid:
                slot.uid = uid  # recreated under the same name; the slot stays its own
            return slot.held
        if g.state is not GangState.RESERVED:
            self._single(req.key)
            return None
        if _shape(req) != _shape(g.template):
            return (f"gang {g.key} was planned for members asking {_describe(g.template)}; "
                    f"this member asks {_describe(req)}. Members of a gang must ask the "
                    f"same resources")
        free = next((s for s in g.slots if not s.member), None)
        if free is None:
            # Every slot is claimed but the gang is not bound yet: binding this pod alone now
            # would start part of the gang beside a reservation that may still time out.
            return (f"gang {g.key}: all {len(g.slots)} reserved slots are claimed by other "
                    f"members; this pod is scheduled once the gang is bound")
        return self._claim_slot(g, free, req, namespace, name, uid)

    def _single(self, pod_key: str) -> None:
        """Mark a member to be scheduled and bound as a single pod (beyond its gang)."""
        self._singles[pod_key] = self._clock()
        self._singles.move_to_end(pod_key)
        while len(self._singles) > DONE_MEMORY:
            self._singles.popitem(last=False)

    def is_single(self, pod_key: str) -> bool:
        """True when filter decided this gang member goes as a single pod."""
        with self._lock:
            return pod_key in self._singles

    def _plan_new(self, req: PodRequest, gkey: str, n: int, identity: str,
                  candidates: Sequence[str] | None, namespace: str, name: str,
                  uid: str) -> Assignment | str | None:
        """Plan on a private copy with no lock held, then reserve all slots, re-checked."""
        members = [dataclasses.replace(req, key=f"{PLACEHOLDER_PREFIX}{gkey}#{i}", uid="")
                   for i in range(n)]
        with self._cache.lock:
            # The one piece of work done under the cache lock: copying what the plan reads.
            snap = self._cache.snapshot
            work = snap.copy()
            copy_memo(snap, work)
            typical = self._cache.typical_workload
            workload = copy.deepcopy(typical) if typical is not None else None
            idx = None
            if candidates is not None:
                get = snap.index.get
                idx = np.fromiter((i for i in (get(c) for c in candidates) if i is not None),
                                  dtype=np.int64)
        planned = self._plan(members, work, workload, idx)
        if isinstance(planned, str):
            if self._metrics:
                self._metrics.gang_event("unplannable")
            return f"gang {gkey} ({n} members, each {_describe(req)}) cannot be placed: " \
                   f"{planned}"
        if len(planned) != n:
            return f"gang {gkey}: the plan has {len(planned)} placements for {n} members"
        with self._lock:
            now = self._clock()
            if gkey in self._gangs:  # cannot happen while _planning holds the key; be safe
                return self._claim_live(self._gangs[gkey], req, namespace, name, uid)
            held: list[Assignment] = []
            with self._cache.lock:
                try:
                    for a in planned:
                        self._cache.assume(a)  # re-checks the fit against the cache now
                        held.append(a)
                except AllocationError as e:
                    for a in held:
                        self._forget(a.pod)
                    return (f"gang {gkey}: the cluster changed while the gang was planned "
                            f"({e}); nothing is reserved and kube-scheduler will retry")
            g = _Gang(gkey, identity, req, [_Slot(a) for a in planned], now,
                      now + self.timeout_s)
            self._gangs[gkey] = g
            if self._metrics:
                self._metrics.gang_event("planned")
            log.info("gang planned and reserved", extra={
                "gang": gkey, "identity": identity, "members": n,
                "nodes": sorted({a.node for a in planned}), "gpus": g.gpus(),
                "deadline_s": self.timeout_s})
            return self._claim_live(g, req, namespace, name, uid)

    def _claim_slot(self, g: _Gang, slot: _Slot, req: PodRequest, namespace: str, name: str,
                    uid: str) -> Assignment | str:
        mine = dataclasses.replace(slot.held, pod=req.key)
        with self._cache.lock:
            if req.key in self._cache.snapshot.holdings:
                # A pod at filter is pending, so anything held under its key is stale.
                self._forget(req.key)
            self._forget(slot.held.pod)
            try:
                self._cache.assume(mine)
            except AllocationError as e:
                self._cache.assume(slot.held)
                return f"gang {g.key}: cannot hold the reserved GPUs for {req.key}: {e}"
        slot.held, slot.member, slot.namespace, slot.name, slot.uid = mine, req.key, namespace, \
            name, uid
        g.members[req.key] = slot
        return mine

    def reserved_for(self, pod_key: str, gang_key: str) -> Assignment | None:
        """The slot a member already claimed, if its gang is still reserved or binding."""
        with self._lock:
            g = self._gangs.get(gang_key)
            slot = g.members.get(pod_key) if g else None
            return slot.held if slot else None

    # ---- bind side ---------------------------------------------------------------------

    def bind(self, pod_key: str, gang_key: str, uid: str, node: str,
             bind_all: BindAllFn) -> str:
        """Wait until every member reached bind, then bind all; "" when this pod is bound."""
        start = self._clock()
        with self._lock:
            self._expire_locked(start, only=gang_key)
            g = self._gangs.get(gang_key)
            slot = g.members.get(pod_key) if g else None
            if g is None or slot is None:
                return (f"gang {gang_key}: {pod_key} holds no reservation (the gang timed out, "
                        f"lost a member, or the extender restarted); kube-scheduler will retry "
                        f"the pod")
            if slot.held.node != node:
                return (f"gang {gang_key}: {pod_key} is reserved on {slot.held.node}, "
                        f"not {node}")
            if g.state is not GangState.RESERVED:
                return g.failure or f"gang {gang_key} is {g.state.value}"
            slot.at_bind = True
            if uid:
                slot.uid = uid
            arrived = sum(s.at_bind for s in g.slots)
            if arrived < len(g.slots):
                log.info("gang member waiting at bind", extra={
                    "gang": gang_key, "pod": pod_key, "arrived": arrived,
                    "members": len(g.slots)})
                result = self._wait_locked(g, slot)
                self._observe_wait(start, result)
                return result
            g.state = GangState.BINDING
            members = [GangMember(s.namespace, s.name, s.uid, s.held) for s in g.slots]
        try:
            results = bind_all(members)
        except Exception as e:  # the API edge may raise anything; nothing may stay held
            log.exception("gang bind failed", extra={"gang": gang_key})
            results = {m.assignment.pod: BindResult(f"gang {gang_key}: binding failed: {e}")
                       for m in members}
        return self._finish(g, results, pod_key, start)

    def _wait_locked(self, g: _Gang, slot: _Slot) -> str:
        give_up = g.deadline + self.bind_grace_s
        while slot.result is None:
            now = self._clock()
            if g.state is GangState.RESERVED and now >= g.deadline:
                self._fail_locked(g, now)
                break
            if g.state is GangState.FAILED or not slot.at_bind:
                break
            if g.state is GangState.BINDING and now >= give_up:
                return (f"gang {g.key}: binding of all members did not finish in time; "
                        f"kube-scheduler will retry")
            until = g.deadline if g.state is GangState.RESERVED else give_up
            self._cond.wait(timeout=max(0.001, until - now))
        return slot.result if slot.result is not None else g.failure

    def _finish(self, g: _Gang, results: dict[str, BindResult], pod_key: str,
                start: float) -> str:
        with self._lock:
            with self._cache.lock:
                for s in g.slots:
                    r = results.get(s.member, BindResult(f"gang {g.key}: no result for "
                                                         f"{s.member}"))
                    err = s.result = r.error
                    if err and not r.in_doubt:
                        self._forget(s.member)
                    else:
                        try:
                            self._cache.confirm(s.member)
                        except (KeyError, ValueError) as e:
                            log.debug("confirm after bind: %s", e)
            failed = [s.member for s in g.slots if s.result]
            g.state = GangState.FAILED if failed else GangState.DONE
            g.failure = f"gang {g.key}: {len(failed)} member(s) failed to bind" if failed else ""
            self._gangs.pop(g.key, None)
            if not failed or len(failed) < len(g.slots):
                self._remember_done(g.identity)
                self._backoff.pop(g.identity, None)
            self._cond.notify_all()
            log.info("gang bound" if not failed else "gang bind incomplete", extra={
                "gang": g.key, "members": len(g.slots), "failed": failed})
            if self._metrics:
                self._metrics.gang_event("bound" if not failed else "bind_failed")
            if not failed:
                nodes = sorted({s.held.node for s in g.slots})
                self._emit(g.key, "GangScheduled",
                           f"gang {g.key}: all {len(g.slots)} members bound together on "
                           f"{len(nodes)} node(s): {', '.join(nodes[:8])}"
                           f"{' ...' if len(nodes) > 8 else ''}",
                           _pod_ref(pod_key, g.members[pod_key].uid))
            result = g.members[pod_key].result or ""
        self._observe_wait(start, result)
        return result

    # ---- time and membership -----------------------------------------------------------

    def expire(self) -> list[str]:
        """Fail every reserved gang past its deadline (releasing its GPUs, starting its
        backoff) and every one that lost members; their keys."""
        with self._lock:
            return self._expire_locked(self._clock())

    def _expire_locked(self, now: float, only: str | None = None) -> list[str]:
        """Deadlines of every gang; deleted members of gang `only` (every gang when None:
        the 1 s tick), so a verb of one gang never walks the members of all the others."""
        out: list[str] = []
        for g in list(self._gangs.values()):
            if g.state is not GangState.RESERVED:
                continue
            if now >= g.deadline:
                self._fail_locked(g, now)
                out.append(g.key)
            elif (only is None or g.key == only) and self._reconcile_locked(g):
                out.append(g.key)
        return out

    def _reconcile_locked(self, g: _Gang) -> bool:
        """Apply deleted members to a reserved gang; True when it was released."""
        view = self._cache.gang_view(g.key)
        present = view.members if view is not None else {}
        gone = [s for s in g.slots if s.member and (
            s.member not in present
            or (s.uid and present[s.member].uid and present[s.member].uid != s.uid))]
        if len(present) < len(g.slots):
            missing = len(g.slots) - len(present)
            who = f" ({', '.join(s.member for s in gone)} deleted)" if gone else ""
            g.failure = (f"gang {g.key}: a member is gone{who}; waiting for {missing} more "
                         f"member{'s' * (missing > 1)}, its reservation was released and it is "
                         f"planned again once minMember pods exist")
            self._release_locked(g)
            ref = next((_pod_ref(s.member, s.uid) for s in g.slots
                        if s.member and s not in gone), None)
            if ref is not None:
                self._emit(g.key, "GangWaiting", g.failure, ref)
            log.info("gang lost a member; reservation released", extra={
                "gang": g.key, "reason": g.failure})
            return True
        for s in gone:
            # Enough pods remain: free the slot for another member, keep the rest.
            placeholder = dataclasses.replace(s.held, pod=f"{PLACEHOLDER_PREFIX}{g.key}#"
                                                          f"{g.slots.index(s)}")
            with self._cache.lock:
                self._forget(s.member)
                try:
                    self._cache.assume(placeholder)
                except AllocationError as e:
                    g.failure = f"gang {g.key}: could not keep a freed slot ({e})"
                    self._release_locked(g)
                    return True
            g.members.pop(s.member, None)
            if s.at_bind and s.result is None:
                s.result = f"gang {g.key}: {s.member} was deleted; its slot is free again"
            s.at_bind = False
            # A fresh slot: a bind of the deleted pod still waiting keeps its own result.
            g.slots[g.slots.index(s)] = _Slot(placeholder)
        if gone:
            self._cond.notify_all()
        return False

    def _fail_locked(self, g: _Gang, now: float) -> None:
        arrived = sum(s.at_bind for s in g.slots)
        claimed = len(g.members)
        b = self._backoff.pop(g.identity, None)
        failures = (b.failures if b is not None else 0) + 1
        wait = gang_backoff_s(failures, self.backoff_initial_s, self.backoff_max_s)
        self._backoff[g.identity] = _Backoff(failures, now + wait)
        while len(self._backoff) > BACKOFF_MEMORY:
            self._backoff.popitem(last=False)
        g.failure = (f"gang {g.key}: only {arrived} of {len(g.slots)} members reached bind "
                     f"({claimed} seen at filter) within {self.timeout_s:g}s; all its GPU "
                     f"reservations were released and kube-scheduler will retry its pods; "
                     f"the gang backs off {wait:g}s (timeout {failures}) before it may reserve "
                     f"again")
        self._release_locked(g)
        log.warning("gang timed out", extra={"gang": g.key, "arrived": arrived,
                                             "members": len(g.slots), "reason": g.failure})
        ref = next((_pod_ref(s.member, s.uid) for s in g.slots if s.member), None)
        if ref is not None:
            self._emit(g.key, "GangTimedOut", g.failure, ref, "Warning")
            self._emit(g.key, "GangBackoff",
                       f"gang {g.key}: backing off {wait:g}s after timeout {failures}; nothing "
                       f"is reserved meanwhile", ref, "Warning")
        if self._metrics:
            self._metrics.gang_event("timeout")

    def _release_locked(self, g: _Gang) -> None:
        g.state = GangState.FAILED
        with self._cache.lock:
            for s in g.slots:
                self._forget(s.held.pod)
        for s in g.slots:
            if s.at_bind and s.result is None:
                s.result = g.failure
        self._gangs.pop(g.key, None)
        self._cond.notify_all()

    def _forget(self, pod_key: str) -> None:
        # Already released (expired, or the pod was deleted) means nothing is held: fine.
        with contextlib.suppress(KeyError, ValueError):
            self._cache.forget(pod_key)

    def _remember_done(self, identity: str) -> None:
        self._done[identity] = self._clock()
        self._done.move_to_end(identity)
        while len(self._done) > DONE_MEMORY:
            self._done.popitem(last=False)

    def _observe_wait(self, start: float, result: str) -> None:
        if self._metrics:
            self._metrics.gang_wait(self._clock() - start, "bound" if not result else "failed")

    def _emit(self, gkey: str, reason: str, message: str, about: ObjectRef,
              type_: EventType = "Normal") -> None:
        """One event per gang and reason per event_interval_s; the sink must not raise."""
        now = self._clock()
        last = self._emitted.get((gkey, reason))
        if last is not None and now - last < self.event_interval_s:
            return
        self._emitted[(gkey, reason)] = now
        self._emitted.move_to_end((gkey, reason))
        while len(self._emitted) > EVENT_MEMORY:
            self._emitted.popitem(last=False)
        try:
            self.events.emit(Event(about, reason, message, type_))
        except Exception:  # an event is never worth a failed verb
            log.exception("event sink failed", extra={"gang": gkey, "reason": reason})

    # ---- introspection -----------------------------------------------------------------

    def reserved_gpus(self) -> int:
        """GPUs held now by gangs not yet bound (bounded in time by the timeout)."""
        with self._lock:
            return sum(g.gpus() for g in self._gangs.values())

    def status(self, gang_key: str) -> tuple[GangState, int, int, int] | None:
        """(state, members seen at filter, members waiting at bind, min_member) of a live gang."""
        with self._lock:
            g = self._gangs.get(gang_key)
            if g is None:
                return None
            return g.state, len(g.members), sum(s.at_bind for s in g.slots), len(g.slots)

    def active(self) -> int:
        """Gangs reserved or binding."""
        with self._lock:
            return len(self._gangs)

    def backing_off(self) -> int:
        """Gangs that timed out and may not reserve yet."""
        with self._lock:
            now = self._clock()
            return sum(b.until > now for b in self._backoff.values())

    def waiting(self) -> int:
        """Gangs with pending pods but fewer than minMember pods in existence (nothing held)."""
        views = self._cache.gang_views()
        with self._lock:
            return sum(1 for v in views
                       if v.pending and v.key not in self._gangs and v.identity not in self._done
                       and v.min_member is not None and len(v.members) < v.min_member)
