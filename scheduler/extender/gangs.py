"""Gang reservations and the bind barrier: a gang is bound whole, or holds no GPU.

Life of a gang (keyed by its PodGroup, `namespace/name`):
1. The first member seen at filter triggers a plan of the whole gang from the core for
   `min_member` copies of that member's request: members of a gang are assumed homogeneous
   (same request as the first member seen), as Kubeflow and Volcano gangs are, because the
   others may not exist yet. Every planned slot is reserved in the cache (assume) under a
   placeholder key, and the gang's deadline is set to now + timeout.
2. Each member at filter claims a slot (its reservation is re-keyed to the pod); filter then
   passes only that slot's node. A member that asks for something else is refused.
3. Each member's bind waits until every slot's member has reached bind. The last one to
   arrive binds all: it annotates every member first and posts the Bindings only if all
   annotations succeeded, then wakes the others with their results.
4. At the deadline, unless every member reached bind, all reservations are released and
   every waiting bind fails; kube-scheduler retries those pods and the next filter plans anew.
   So no GPU is held by an incomplete gang for longer than the timeout.

Members beyond min_member, and members arriving after their gang was bound, are scheduled
as single pods (the gang's all-or-nothing guarantee covers min_member pods, as in
Coscheduling).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from scheduler.extender.ports import CacheLike
from scheduler.policy.request import PodRequest
from scheduler.policy.snapshot import AllocationError, Assignment, Snapshot

if TYPE_CHECKING:
    from scheduler.extender.metrics import ExtenderMetrics

PLACEHOLDER_PREFIX = "gang:"  # ':' never occurs in a namespace name, so no pod key collides
DONE_MEMORY = 10_000  # bound gangs remembered, so a late extra member is not taken for a new gang

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
    template: PodRequest
    slots: list[_Slot]
    created: float
    deadline: float
    state: GangState = GangState.RESERVED
    failure: str = ""
    members: dict[str, _Slot] = field(default_factory=dict)

    def gpus(self) -> int:
        return sum(len(s.held.gpus) for s in self.slots)


@dataclass(frozen=True, slots=True)
class BindResult:
    """How binding one member went: "" bound; `in_doubt` when the Binding may still land."""

    error: str = ""
    in_doubt: bool = False


PlanFn = Callable[[list[PodRequest], Snapshot], "list[Assignment] | str"]
BindAllFn = Callable[[Sequence[GangMember]], dict[str, BindResult]]


def _shape(req: PodRequest) -> tuple[object, ...]:
    return (req.gpus, req.gpu_milli, req.gpu_memory_mib, req.cpu_milli, req.memory_mib,
            req.allowed_models)


def _describe(req: PodRequest) -> str:
    what = f"{req.gpus} GPU(s)" if req.gpus else f"{req.gpu_milli}/1000 of a GPU"
    return f"{what}, cpu {req.cpu_milli}m, memory {req.memory_mib}Mi"


class GangCoordinator:
    """Plans, reserves, and binds gangs all-or-nothing; thread-safe.

    Lock order: this coordinator's lock, then the cache's lock; never the reverse, and
    neither is held while the Kubernetes API is called.
    """

    def __init__(
        self,
        cache: CacheLike,
        plan: PlanFn,
        *,
        timeout_s: float,
        clock: Callable[[], float],
        bind_grace_s: float = 10.0,
        metrics: ExtenderMetrics | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"gang timeout_s={timeout_s}: must be positive")
        self._cache = cache
        self._plan = plan
        self.timeout_s = timeout_s
        self.bind_grace_s = bind_grace_s
        self._clock = clock
        self._metrics = metrics
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._gangs: dict[str, _Gang] = {}
        self._done: OrderedDict[str, float] = OrderedDict()
        self._singles: OrderedDict[str, float] = OrderedDict()

    # ---- filter side -------------------------------------------------------------------

    def claim(self, req: PodRequest, namespace: str, name: str, uid: str,
              plan_candidates: Sequence[str] | None = None) -> Assignment | str | None:
        """This member's reserved placement, planning and reserving the gang on first sight.

        Returns the Assignment to steer filter to, a reason (str) when the gang cannot be
        placed now, or None when the pod is to be scheduled as a single pod (its gang is
        already bound, or all min_member slots are taken).
        `plan_candidates` are the nodes kube-scheduler's own filters passed for this pod;
        a new plan uses only those (selectors, taints and affinity are the same for every
        member of a homogeneous gang).
        """
        assert req.gang is not None
        gkey = req.gang.key
        with self._lock:
            self._expire_locked(self._clock())
            g = self._gangs.get(gkey)
            if g is None:
                if gkey in self._done:
                    self._single(req.key)
                    return None
                planned = self._new_gang(req, plan_candidates)
                if isinstance(planned, str):
                    return planned
                g = planned
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
                return (f"gang {gkey} was planned for members asking {_describe(g.template)}; "
                        f"this member asks {_describe(req)}. Members of a gang must ask the "
                        f"same resources")
            free = next((s for s in g.slots if not s.member), None)
            if free is None:
                self._single(req.key)
                return None
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

    def _new_gang(self, req: PodRequest, candidates: Sequence[str] | None) -> _Gang | str:
        assert req.gang is not None
        gkey = req.gang.key
        n = req.gang.min_member
        members = [dataclasses.replace(req, key=f"{PLACEHOLDER_PREFIX}{gkey}#{i}", uid="")
                   for i in range(n)]
        now = self._clock()
        with self._cache.lock:
            snap = self._cache.snapshot
            if candidates is not None:
                snap = _only(snap, candidates)
            planned = self._plan(members, snap)
            if isinstance(planned, str):
                if self._metrics:
                    self._metrics.gang_event("unplannable")
                return f"gang {gkey} ({n} members, each {_describe(req)}) cannot be placed: " \
                       f"{planned}"
            if len(planned) != n:
                return f"gang {gkey}: the plan has {len(planned)} placements for {n} members"
            held: list[Assignment] = []
            try:
                for a in planned:
                    self._cache.assume(a)
                    held.append(a)
            except AllocationError as e:
                for a in held:
                    self._forget(a.pod)
                return f"gang {gkey}: reservation failed: {e}"
        g = _Gang(gkey, req, [_Slot(a) for a in planned], now, now + self.timeout_s)
        self._gangs[gkey] = g
        if self._metrics:
            self._metrics.gang_event("planned")
        log.info("gang planned and reserved", extra={
            "gang": gkey, "members": n, "nodes": sorted({a.node for a in planned}),
            "gpus": g.gpus(), "deadline_s": self.timeout_s})
        return g

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
            self._expire_locked(start)
            g = self._gangs.get(gang_key)
            slot = g.members.get(pod_key) if g else None
            if g is None or slot is None:
                return (f"gang {gang_key}: {pod_key} holds no reservation (the gang timed out "
                        f"or the extender restarted); kube-scheduler will retry the pod")
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
            if g.state is GangState.FAILED:
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
                self._remember_done(g.key)
            self._cond.notify_all()
            log.info("gang bound" if not failed else "gang bind incomplete", extra={
                "gang": g.key, "members": len(g.slots), "failed": failed})
            if self._metrics:
                self._metrics.gang_event("bound" if not failed else "bind_failed")
            result = g.members[pod_key].result or ""
        self._observe_wait(start, result)
        return result

    # ---- time --------------------------------------------------------------------------

    def expire(self) -> list[str]:
        """Fail every reserved gang past its deadline, releasing its GPUs; their keys."""
        with self._lock:
            return self._expire_locked(self._clock())

    def _expire_locked(self, now: float) -> list[str]:
        due = [g for g in self._gangs.values()
               if g.state is GangState.RESERVED and now >= g.deadline]
        for g in due:
            self._fail_locked(g, now)
        while self._done and now - next(iter(self._done.values())) > 3600.0:
            self._done.popitem(last=False)
        return [g.key for g in due]

    def _fail_locked(self, g: _Gang, now: float) -> None:
        arrived = sum(s.at_bind for s in g.slots)
        claimed = len(g.members)
        g.failure = (f"gang {g.key}: only {arrived} of {len(g.slots)} members reached bind "
                     f"({claimed} seen at filter) within {self.timeout_s:g}s; all its GPU "
                     f"reservations were released and kube-scheduler will retry its pods")
        g.state = GangState.FAILED
        with self._cache.lock:
            for s in g.slots:
                self._forget(s.held.pod)
        for s in g.slots:
            if s.at_bind and s.result is None:
                s.result = g.failure
        self._gangs.pop(g.key, None)
        self._cond.notify_all()
        log.warning("gang timed out", extra={"gang": g.key, "arrived": arrived,
                                             "members": len(g.slots), "reason": g.failure})
        if self._metrics:
            self._metrics.gang_event("timeout")

    def _forget(self, pod_key: str) -> None:
        # Already released (expired, or the pod was deleted) means nothing is held: fine.
        with contextlib.suppress(KeyError, ValueError):
            self._cache.forget(pod_key)

    def _remember_done(self, key: str) -> None:
        self._done[key] = self._clock()
        self._done.move_to_end(key)
        while len(self._done) > DONE_MEMORY:
            self._done.popitem(last=False)

    def _observe_wait(self, start: float, result: str) -> None:
        if self._metrics:
            self._metrics.gang_wait(self._clock() - start, "bound" if not result else "failed")

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


def _only(snap: Snapshot, names: Sequence[str]) -> Snapshot:
    """A private copy where only `names` have free capacity, for planning a gang there."""
    out = np.ones(snap.n_nodes, dtype=bool)
    keep = [i for i in (snap.index.get(n) for n in names) if i is not None]
    out[np.asarray(keep, dtype=np.int64)] = False
    s = snap.copy()
    # Only the copy's own arrays are touched; the cache's snapshot is unchanged.
    s.milli_free[out] = 0
    s.gpu_mem_free[out] = 0
    s.free_mask[out] = 0
    s.cpu_free[out] = 0
    s.mem_free[out] = 0
    return s
