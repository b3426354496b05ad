"""The extender's verbs over the cluster cache and the policy core: filter, prioritize, bind.

Every placement decision comes from scheduler.policy (filter_nodes, score_nodes, assign,
plan_gang); this module only maps kube-scheduler's candidate names onto snapshot indices,
keeps the cache's reservations consistent, and talks to the binder.

Reply rules, from kube-scheduler's behaviour (see reference/extender-wire.md):
- A pod we cannot accept (bad quantities, unknown GPU model) gets 200 with every node in
  FailedAndUnresolvableNodes and a reason a person can act on; kube-scheduler shows it in
  the pod's events. Only bodies that are not extender requests get a 4xx (server.py).
- Pods without a GPU request pass filter unchanged and score 0 everywhere.
- Nodes that can never fit (wrong model, too few GPUs in total, invalid topology) are
  unresolvable; nodes that might fit later (busy, not yet in the cache) are FailedNodes.
- Every reason is capped (wire.cap_reason), so a reply grows with the node count only.

One scheduling cycle per pod (cycle.py): filter parses the pod once into a Cycle, prioritize
adds the GPUs each score assumed, bind assigns exactly those (re-checked now) or fails.

Bind is one API write: the Binding carries the signed assignment in metadata.annotations and
the API server copies them onto the pod in the same write that sets spec.nodeName
(setPodNodeAndMetadata in kubernetes pkg/registry/core/pod/storage/storage.go). So a pod is
either bound with its signed assignment or neither; there is no annotated-but-unbound pod
to clean up after a failed bind, and no window in which a restart could see a bound pod
without its assignment. A restart loses only reservations whose Binding had not landed yet:
a Binding still in flight that lands later arrives through the watch as a bound, annotated
pod and is held from then on.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scheduler import policy
from scheduler.cluster.events import EventSink, NoEvents
from scheduler.cluster.kube_errors import Timeout as ApiTimeout
from scheduler.constants import (
    GANG_MIN_MEMBER_ANNOTATION,
    MAX_EXTENDER_PRIORITY,
    MIN_EXTENDER_PRIORITY,
    POD_GROUP_LABEL,
    SCHEDULER_NAME,
)
from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest, RequestError
from scheduler.extender.cycle import BindOutcome, Cycle, Cycles, name_hashes
from scheduler.extender.gangs import BindResult, GangCoordinator, GangMember
from scheduler.extender.metrics import ExtenderMetrics
from scheduler.extender.ports import BinderLike, CacheLike
from scheduler.extender.scores import extender_scores
from scheduler.extender.wire import (
    BindingArgs,
    ExtenderArgs,
    HostPriorities,
    JSONDict,
    bind_reply,
    cap_reason,
    filter_reply,
    pod_identity,
)
from scheduler.podcodec.assignment import assignment_annotations
from scheduler.podcodec.pod_request import pod_request_from_k8s
from scheduler.podcodec.signing import Signer
from scheduler.policy.admission import share_refusal
from scheduler.policy.choice import Choice, assignment_for
from scheduler.policy.gpu_models import check_models
from scheduler.policy.scoring import evaluate
from scheduler.policy.shape_cache import cached_scores
from scheduler.policy.snapshot import AllocationError, Snapshot

log = logging.getLogger("gts.extender")

PODGROUP_TTL_S = 30.0
CANDIDATE_LISTS_KEPT = 8
# best-node-only: how many of the snapshot's best nodes are looked for in kube-scheduler's list
# before the general path maps every name (a node kube-scheduler's own filters left out, such
# as one whose last GPU it has just assumed for the pod before, is skipped this way).
BEST_LISTED_TRIES = 4


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """How the service decides and binds (from `gts serve` flags and its config file)."""

    policy_config: policy.PolicyConfig = policy.DEFAULT_CONFIG
    gang_timeout_s: float = 30.0
    gang_bind_grace_s: float = 10.0
    record_only: bool = False  # static mode: bind records in the cache, posts nothing
    # tick() expires the cache's assumptions; False when the watch (KubeSource) does it and
    # also removes the expired pods' annotations from the API.
    expire_assumptions: bool = True
    # spec.schedulerName of the pods this extender binds (the profile kube-scheduler runs it in).
    scheduler_name: str = SCHEDULER_NAME


class ExtenderService:
    """Answers filter, prioritize and bind; thread-safe (one cache lock, one gang lock)."""

    def __init__(
        self,
        cache: CacheLike,
        binder: BinderLike,
        signer: Signer | None,
        options: ServiceOptions = ServiceOptions(),
        *,
        metrics: ExtenderMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        events: EventSink | None = None,
    ) -> None:
        if signer is None and not options.record_only:
            raise ValueError("a signing key is required to bind in a cluster "
                             "(the node agent honours only signed assignments)")
        self.cache = cache
        self.binder = binder
        self.signer = signer
        self.options = options
        self.config = options.policy_config
        self.metrics = metrics if metrics is not None else ExtenderMetrics()
        self.clock = clock
        self.events: EventSink = events if events is not None else NoEvents()
        self.cycles = Cycles(clock)
        self.gangs = GangCoordinator(
            cache, self._plan_gang, timeout_s=options.gang_timeout_s, clock=clock,
            bind_grace_s=options.gang_bind_grace_s, metrics=self.metrics, events=events,
            # Static mode has no pod watch: the pods seen at filter are the gang's members.
            members_from_filter=options.record_only)
        self._podgroups: dict[str, tuple[int | None, float]] = {}
        # Candidate lists -> snapshot indices; kube-scheduler sends the same list for pod
        # after pod. Read and written only under cache.lock.
        self._indices: list[_KnownList] = []
        self._podgroups_lock = threading.Lock()

    # ---- parsing -----------------------------------------------------------------------

    def _request(self, pod: JSONDict) -> PodRequest:
        """The pod's request; RequestError naming the field when it cannot be accepted."""
        sizes: dict[str, int] | None = None
        labels = pod.get("metadata", {}).get("labels")
        group = labels.get(POD_GROUP_LABEL) if isinstance(labels, dict) else None
        if isinstance(group, str) and group:
            ns = pod_identity(pod)[0]
            n = self._podgroup_min_member(ns, group)
            if n is not None:
                sizes = {f"{ns}/{group}": n}
        try:
            return pod_request_from_k8s(pod, known_gang_sizes=sizes)
        except RequestError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            # A pod kube-scheduler sends is always well formed; this is a hand-made one.
            raise RequestError("Pod", "...", f"cannot be read as a pod: {e}") from None

    def _podgroup_min_member(self, ns: str, group: str) -> int | None:
        key = f"{ns}/{group}"
        now = self.clock()
        with self._podgroups_lock:
            hit = self._podgroups.get(key)
            if hit is not None and now - hit[1] < PODGROUP_TTL_S:
                return hit[0]
        try:
            n = self.binder.get_podgroup_min_member(ns, group)
        except Exception as e:  # the pod annotation is the fallback; say why in the log
            log.warning("PodGroup lookup failed; using the pod annotation",
                        extra={"gang": key, "reason": str(e),
                               "annotation": GANG_MIN_MEMBER_ANNOTATION})
            n = None
        with self._podgroups_lock:
            self._podgroups[key] = (n, now)
            if len(self._podgroups) > 10_000:
                self._podgroups.clear()
        return n

    # ---- filter ------------------------------------------------------------------------

    def filter(self, args: ExtenderArgs) -> JSONDict:
        """ExtenderFilterResult for the pod over its candidate nodes; starts the pod's Cycle."""
        names = args.names
        ns, name, uid = pod_identity(args.pod)
        pod_key = f"{ns}/{name}"
        try:
            req = self._request(args.pod)
        except RequestError as e:
            reason = cap_reason(f"{SCHEDULER_NAME} cannot accept pod {pod_key}: {e}")
            self._decided("filter", pod_key, "rejected", "bad_request", reason)
            return filter_reply(args, [], {}, dict.fromkeys(names, reason))
        sched = _scheduler_name(args.pod)
        if not req.wants_gpu or sched != self.options.scheduler_name:
            # Nothing of ours to decide; remembered so that bind (ours) can answer it: a
            # zero-quantity request binds like a pod without GPUs, another scheduler's pod
            # is refused there.
            # Built only here: a list as long as the cluster for every GPU pod otherwise.
            everyone = list(range(len(names)))
            self._start_cycle(req, ns, name, uid, sched, list(names))
            why = "no_gpu_request" if sched == self.options.scheduler_name else "not_our_pod"
            self._decided("filter", pod_key, "passed", why, "")
            return filter_reply(args, everyone, {}, {})
        if not self.cache.synced:
            reason = f"{SCHEDULER_NAME}: cluster cache not synced yet; retrying"
            self._decided("filter", pod_key, "rejected", "not_synced", reason)
            return filter_reply(args, [], dict.fromkeys(names, reason), {})
        with self.cache.lock:
            try:
                check_models(req, frozenset(self.cache.snapshot.models))
            except RequestError as e:
                reason = cap_reason(f"{SCHEDULER_NAME} cannot accept pod {pod_key}: {e}")
                self._decided("filter", pod_key, "rejected", "unknown_model", reason)
                return filter_reply(args, [], {}, dict.fromkeys(names, reason))
        if req.gang is not None:
            slot = self.gangs.claim(req, ns, name, uid, plan_candidates=names, pod=args.pod)
            if slot is not None:
                return self._filter_gang(args, req, pod_key, uid, slot)
        with self.cache.lock:
            snap = self.cache.snapshot
            if self.config.best_node_only and not self.config.admission_reserve:
                best = self._best_listed(req, snap, names)
                if best is not None:
                    passed_names = [names[best]]
                    if self._start_cycle(req, ns, name, uid, sched, passed_names) and \
                            self.options.record_only:
                        self.cache.typical_workload.observe(req)
                    self._decided("filter", pod_key, "passed", "fits", "", passed=1,
                                  candidates=len(names))
                    return filter_reply(args, [best], {}, {}, passed_names=passed_names)
            cand = _Candidates.of(names, snap, self.cache.errors, self._indices)
            fr = policy.filter_nodes(req, snap, cand.idx, self.config)
            feasible = np.asarray(fr.feasible, dtype=np.int64)
            reasons: Mapping[int, str] = fr.reasons
            refused = share_refusal(req, snap, feasible,
                                    self.cache.typical_workload.classes(),
                                    self.config.admission_reserve) \
                if self.config.admission_reserve else None
            if refused is not None:
                # Opt-in admission (PolicyConfig.admission_reserve): every node that fits
                # fails with the rule's sentence, so the pod stays pending and says why.
                reasons = {**fr.reasons, **dict.fromkeys(feasible.tolist(), refused)}
                feasible = feasible[:0]
            chosen = feasible
            if self.config.best_node_only and len(feasible) > 1:
                # Exactly one node (the scores carry the policy's hashed tie-break), so that
                # kube-scheduler skips scoring and the prioritize call (schedulePod: "When
                # only one node after predicate, just use it"); bind then chooses the GPUs
                # on it by the same scoring.
                scores = policy.score_nodes(req, snap, feasible, self.cache.typical_workload,
                                            self.config)
                chosen = feasible[[int(np.argmax(scores))]]
            passed, failed, unres = cand.split(chosen, feasible, reasons, fr.unresolvable, snap)
            passed_names = [names[p] for p in passed]
            if self._start_cycle(req, ns, name, uid, sched, passed_names) and \
                    self.options.record_only:
                # Static mode has no pod watch; otherwise the cache counts each pod as it
                # appears, so a restart rebuilds the same typical workload.
                self.cache.typical_workload.observe(req)
        outcome = "passed" if passed else "rejected"
        reason = "fits" if passed else ("unresolvable" if len(unres) == len(names) else "no_fit")
        self._decided("filter", pod_key, outcome, reason,
                      "" if passed else _summary(failed, unres), passed=len(passed),
                      candidates=len(names))
        return filter_reply(args, passed, failed, unres, passed_names=passed_names)

    def _best_listed(self, req: PodRequest, snap: Snapshot, names: tuple[str, ...]
                     ) -> int | None:
        """best-node-only's answer without mapping every candidate name: the position in
        `names` of the best-scoring node of the whole snapshot that fits and is listed, or
        None where the general path must decide (nothing fits, a tie at the top, or none of
        the best few is listed).

        kube-scheduler lists the feasible nodes in the order its parallel filter finished
        them, a different order on every call, so the general path looks every name up (a
        string hash and a dict probe each: at 1,000 nodes about an eighth of `gts serve`'s
        CPU in `gts bench e2e`). The best node of the snapshot is the best node of any list
        that holds it, so one scan of the list for its name (string compares in C) decides.
        Scores carry the policy's hashed tie-break and are distinct; an exact tie at the top
        goes to the general path, whose order decides ties as before.
        """
        fr = policy.filter_nodes(req, snap, None, self.config)
        feasible = np.asarray(fr.feasible, dtype=np.int64)
        if not feasible.size:
            return None
        scores = np.array(policy.score_nodes(req, snap, feasible, self.cache.typical_workload,
                                             self.config), dtype=np.float64)
        for _ in range(BEST_LISTED_TRIES):
            k = int(np.argmax(scores))
            top = scores[k]
            if not np.isfinite(top) or np.count_nonzero(scores == top) > 1:
                return None
            try:
                return names.index(snap.names[int(feasible[k])])
            except ValueError:  # kube-scheduler's own filters left it out: the next best
                scores[k] = -np.inf
        return None

    def _start_cycle(self, req: PodRequest, ns: str, name: str, uid: str, sched: str,
                     passed_names: Sequence[str]) -> bool:
        # Only the passing names are hashed: a request's names are new strings, so hashing
        # them all would cost a hash per candidate.
        approved = name_hashes(passed_names)
        return self.cycles.start(Cycle(uid=uid, namespace=ns, name=name, req=req,
                                       scheduler_name=sched, started=self.clock(),
                                       approved=approved))

    def _filter_gang(self, args: ExtenderArgs, req: PodRequest, pod_key: str, uid: str,
                     slot: Assignment | str) -> JSONDict:
        names = args.names
        assert req.gang is not None
        ns, name = pod_key.split("/", 1)
        if isinstance(slot, str):
            slot = cap_reason(slot)
            self._decided("filter", pod_key, "rejected", "gang_unplaceable", slot)
            return filter_reply(args, [], dict.fromkeys(names, slot), {})
        passed = [i for i, n in enumerate(names) if n == slot.node]
        self._start_cycle(req, ns, name, uid, self.options.scheduler_name,
                          [names[p] for p in passed[:1]])
        other = (f"gang {req.gang.key} reserved node {slot.node} (GPUs "
                 f"{','.join(map(str, slot.gpus))}) for this member")
        if not passed:
            other += ", which kube-scheduler's own filters excluded; the reservation ends " \
                     f"after {self.options.gang_timeout_s:g}s and the gang is planned again"
        other = cap_reason(other)
        failed = {n: other for n in names if n != slot.node}
        self._decided("filter", pod_key, "passed" if passed else "rejected", "gang_steered",
                      other, node=slot.node)
        return filter_reply(args, passed, failed, {})

    # ---- prioritize --------------------------------------------------------------------

    def prioritize(self, args: ExtenderArgs) -> HostPriorities:
        """HostPriorityList: 0..10 per candidate, 0 where the pod does not fit.

        Records in the pod's cycle the GPUs each node's score assumed, for bind.
        """
        names = args.names
        ns, name, uid = pod_identity(args.pod)
        pod_key = f"{ns}/{name}"
        zeros = [MIN_EXTENDER_PRIORITY] * len(names)
        cycle = self.cycles.get(uid, pod_key) if uid else None
        if cycle is not None:
            req = cycle.req  # parsed once, at filter
        else:
            try:
                req = self._request(args.pod)
            except RequestError:
                self._decided("prioritize", pod_key, "neutral", "bad_request", "")
                return HostPriorities(names, zeros)
        if not req.wants_gpu or not self.cache.synced:
            self._decided("prioritize", pod_key, "neutral",
                          "no_gpu_request" if not req.wants_gpu else "not_synced", "")
            return HostPriorities(names, zeros)
        if req.gang is not None:
            slot = self.gangs.reserved_for(req.key, req.gang.key)
            if slot is not None:
                scores = [MAX_EXTENDER_PRIORITY if n == slot.node else MIN_EXTENDER_PRIORITY
                          for n in names]
                self._decided("prioritize", pod_key, "scored", "gang_steered", "",
                              node=slot.node)
                return HostPriorities(names, scores)
        with self.cache.lock:
            snap = self.cache.snapshot
            cand = _Candidates.of(names, snap, self.cache.errors, self._indices)
            fr = policy.filter_nodes(req, snap, cand.idx, self.config)
            ok = np.zeros(snap.n_nodes, dtype=bool)
            ok[np.asarray(fr.feasible, dtype=np.int64)] = True
            m = ok[cand.idx]
            idx, pos = cand.idx[m], cand.pos[m]
            # The shape cache: the same scores and GPUs as evaluate(), recomputed only on
            # the nodes that changed since this pod shape was last scored.
            raw, choice = cached_scores(req, snap, idx, self.cache.typical_workload, self.config)
            ext = extender_scores(np.asarray(raw, dtype=np.float64), idx, self.config)
        scores_by_pos = np.full(len(names), MIN_EXTENDER_PRIORITY, dtype=np.int64)
        scores_by_pos[pos] = np.clip(ext, MIN_EXTENDER_PRIORITY, MAX_EXTENDER_PRIORITY)
        if cycle is not None and len(idx):
            assumed = choice.sets if req.gpus else choice.share_gpu
            self.cycles.scored(cycle, name_hashes(names)[pos],
                               np.asarray(assumed, dtype=np.int64).copy())
        self._decided("prioritize", pod_key, "scored", "fits" if len(idx) else "no_fit",
                      "", feasible=len(idx))
        return HostPriorities(names, scores_by_pos)

    # ---- bind --------------------------------------------------------------------------

    def bind(self, args: BindingArgs) -> JSONDict:
        """Bind the pod's cycle to args.node: serialized per pod, a repeat gets the first
        answer; the GPUs are the ones prioritize's score assumed, re-checked now."""
        key = args.pod_key
        cycle = self.cycles.get(args.pod_uid, key)
        if cycle is None:
            err = cap_reason(
                f"{SCHEDULER_NAME}: pod {key} (uid {args.pod_uid or '?'}) was not seen at "
                f"filter by this extender (restarted, or the pod was recreated); "
                f"kube-scheduler will retry it")
            self._decided("bind", key, "failed", "unknown_pod", err)
            return bind_reply(err)
        with cycle.lock:
            first = cycle.outcome
            if first is not None:
                err = first.error
                if not err and first.node != args.node:
                    err = (f"{SCHEDULER_NAME}: pod {key} is already bound to {first.node}; "
                           f"not binding it to {args.node}")
                self._decided("bind", key, "repeat", "repeat", err, node=args.node)
                return bind_reply(cap_reason(err))
            err = self._refusal(cycle, args)
            if err:
                # Nothing was done: the cycle stays open, so a refused call (a wrong node,
                # say) cannot decide what the real bind of this pod will be answered.
                return bind_reply(err)
            err = self._bind_cycle(cycle, args)
            self.cycles.finish(cycle, BindOutcome(args.node, err))
        return bind_reply(err)

    def _refusal(self, cycle: Cycle, args: BindingArgs) -> str:
        """Why this bind is refused before anything is reserved or written; "" if it is not."""
        key = args.pod_key
        ours = self.options.scheduler_name
        if cycle.scheduler_name != ours:
            err = cap_reason(
                f"{SCHEDULER_NAME}: pod {key} has schedulerName "
                f"{cycle.scheduler_name or '(none)'!r}; this extender binds only pods of "
                f"schedulerName {ours!r}")
            self._decided("bind", key, "failed", "not_our_pod", err)
            return err
        if not cycle.approves(args.node):
            err = cap_reason(f"{SCHEDULER_NAME}: node {args.node} did not pass filter for pod "
                             f"{key}; refusing to bind it there")
            self._decided("bind", key, "failed", "node_not_approved", err, node=args.node)
            return err
        return ""

    def _bind_cycle(self, cycle: Cycle, args: BindingArgs) -> str:
        """Bind one pod (its cycle's lock held); the error, "" when bound."""
        key = args.pod_key
        req = cycle.req
        uid = args.pod_uid or cycle.uid
        if req.gang is not None and not self.gangs.is_single(key):
            err = cap_reason(self.gangs.bind(key, req.gang.key, uid, args.node,
                                             self._bind_gang_members))
            self._decided("bind", key, "bound" if not err else "failed",
                          "gang" if not err else "gang_failed", err, node=args.node)
            return err
        if not req.wants_gpu:
            err, _ = self._post_binding(args.pod_namespace, args.pod_name, uid, args.node, None)
            self._decided("bind", key, "bound" if not err else "failed",
                          "no_gpu_request" if not err else "api_error", err, node=args.node)
            return err
        with self.cache.lock:
            snap = self.cache.snapshot
            node = snap.index.get(args.node)
            if node is None:
                err = cap_reason(f"{SCHEDULER_NAME}: node {args.node} is not in the "
                                 f"extender's cache")
                self._decided("bind", key, "failed", "unknown_node", err)
                return err
            if key in snap.holdings:
                # The pod is pending (it is being bound), so a holding under its key is stale.
                self._forget(key)
            try:
                a = self._assignment(cycle, snap, node)
                self.cache.assume(a)
            except AllocationError as e:
                err = cap_reason(f"{SCHEDULER_NAME}: pod {key} no longer fits on {args.node}: "
                                 f"{e}; kube-scheduler will retry it")
                self._decided("bind", key, "failed", "no_fit", err)
                return err
        annotations = None if self.options.record_only else \
            self._signed(a, uid)
        err, in_doubt = self._post_binding(args.pod_namespace, args.pod_name, uid, a.node,
                                           annotations)
        if err:
            if not in_doubt:
                self._forget_locked(key)
            self._decided("bind", key, "failed", "api_timeout" if in_doubt else "api_error",
                          err, node=args.node)
            return cap_reason(err)
        with self.cache.lock:
            try:
                self.cache.confirm(key)
            except (KeyError, ValueError) as e:
                log.debug("confirm after bind: %s", e)
        self._decided("bind", key, "bound", "assigned", "", node=args.node,
                      gpus=list(a.gpus), gpu_milli=a.gpu_milli,
                      note="static mode: recorded in the cache only" if
                      self.options.record_only else "")
        return ""

    def _assignment(self, cycle: Cycle, snap: Snapshot, node: int) -> Assignment:
        """Exactly the GPUs prioritize's score assumed on `node`, if the pod still fits there.

        kube-scheduler skips prioritize when one node passes filter; the GPUs are then
        chosen now, by the same scoring. Raises AllocationError with the reason.
        """
        req = cycle.req
        fr = policy.filter_nodes(req, snap, np.array([node], dtype=np.int64), self.config)
        if not fr.feasible.size:
            raise AllocationError(fr.reasons.get(node, "does not fit"))
        one = np.array([node], dtype=np.int64)
        assumed = cycle.assumed_on(snap.names[node])
        if assumed is None:
            _, choice = evaluate(req, snap, one, self.cache.typical_workload, self.config)
            return assignment_for(req, snap, node, choice, 0)
        v = np.array([assumed], dtype=np.int64)
        a = assignment_for(req, snap, node, Choice(v, v), 0)
        free = int(snap.free_mask[node])
        if req.gpus and any(not free >> g & 1 for g in a.gpus):
            raise AllocationError(f"GPUs {','.join(map(str, a.gpus))} that its score assumed "
                                  f"are no longer free")
        return a

    def _signed(self, a: Assignment, uid: str) -> dict[str, str]:
        assert self.signer is not None
        return assignment_annotations(a, self.signer, uid=uid)

    def _post_binding(self, ns: str, name: str, uid: str, node: str,
                      annotations: Mapping[str, str] | None) -> tuple[str, bool]:
        """Post the Binding (with the signed assignment): ("", False), or (error, in doubt).

        One write: nothing to roll back on the pod when it fails. A timed-out Binding may
        still land, so the caller keeps the reservation (in doubt) until the watch shows the
        pod bound or the assumption expires.
        """
        if self.options.record_only:
            return "", False
        try:
            self.binder.bind(ns, name, uid, node, annotations)
        except Exception as e:  # any API failure must roll the reservation back
            if isinstance(e, ApiTimeout | TimeoutError):
                return (f"{SCHEDULER_NAME}: binding pod {ns}/{name} to {node} timed out "
                        f"({e}); it may still land, so its GPUs stay reserved until the "
                        f"pod is seen bound or the reservation expires"), True
            return _api_error("binding", ns, name, e), False
        return "", False

    def _bind_gang_members(self, members: Sequence[GangMember]) -> dict[str, BindResult]:
        """Bind a whole gang: one Binding per member, each carrying its signed assignment."""
        results: dict[str, BindResult] = {}
        for m in members:
            annotations = None if self.options.record_only else \
                self._signed(m.assignment, m.uid)
            err, in_doubt = self._post_binding(m.namespace, m.name, m.uid, m.assignment.node,
                                               annotations)
            results[m.assignment.pod] = BindResult(err, in_doubt)
        return results

    def _plan_gang(self, members: list[PodRequest], snap: Snapshot,
                   workload: policy.TypicalWorkload | None,
                   candidates: np.ndarray | None) -> list[Assignment] | str:
        # Called with private copies of the snapshot and the typical workload, no lock held.
        plan = policy.plan_gang(members, snap, workload, self.config, candidates)
        if isinstance(plan, str):
            return plan
        return list(plan.assignments)

    # ---- housekeeping ------------------------------------------------------------------

    def tick(self) -> None:
        """Release expired assumptions and timed-out gangs (call about once a second)."""
        self.gangs.expire()
        if self.options.expire_assumptions:
            with self.cache.lock:
                expired = self.cache.expire()
            for k in expired:
                log.warning("assumption expired", extra={"pod": k})

    def fragmentation(self, snap: Snapshot) -> float:
        """FGD fragmentation of the whole cluster against the recent typical workload, in GPUs."""
        from scheduler.policy.fragmentation import snapshot_fragmentation

        classes = self.cache.typical_workload.classes()
        return float(np.sum(snapshot_fragmentation(snap, classes))) / 1000.0

    def _forget(self, key: str) -> None:
        # Nothing held (already released) is fine.
        with contextlib.suppress(KeyError, ValueError):
            self.cache.forget(key)

    def _forget_locked(self, key: str) -> None:
        with self.cache.lock:
            self._forget(key)

    def _decided(self, verb: str, pod: str, outcome: str, reason: str, detail: str,
                 **fields: Any) -> None:
        self.metrics.decision(verb, outcome, reason)
        # Every pod passes filter and prioritize once per attempt: those routine outcomes are
        # debug; what a person acts on (rejections, binds, failures) is info or warning.
        if outcome == "failed":
            level = logging.WARNING
        elif outcome in ("passed", "scored", "neutral"):
            level = logging.DEBUG
        else:
            level = logging.INFO
        if log.isEnabledFor(level):
            log.log(level, f"{verb} {outcome}", extra={
                "verb": verb, "pod": pod, "decision": outcome, "reason": reason,
                "detail": detail, **fields})


@dataclass(frozen=True, slots=True)
class _Candidates:
    """kube-scheduler's candidate names mapped to snapshot indices, once per request."""

    names: Sequence[str]
    idx: np.ndarray  # snapshot index of each known candidate
    pos: np.ndarray  # its position in `names`
    unknown_failed: dict[str, str]
    unknown_unresolvable: dict[str, str]

    @staticmethod
    def of(names: tuple[str, ...], snap: Snapshot, errors: Mapping[str, str],
           memo: list[_KnownList]) -> _Candidates:
        raw = _known_indices(names, snap, memo)
        known = raw >= 0
        pos = np.flatnonzero(known)
        failed: dict[str, str] = {}
        unres: dict[str, str] = {}
        if not known.all():
            for p in np.flatnonzero(~known).tolist():
                n = names[p]
                err = errors.get(n)
                if err:
                    unres[n] = f"{SCHEDULER_NAME}: node {n} is kept out of scheduling: {err}"
                else:
                    failed[n] = f"{SCHEDULER_NAME}: node {n} is not in the extender's cache yet"
        return _Candidates(names, raw[pos], pos, failed, unres)

    def split(self, chosen: np.ndarray, feasible: np.ndarray, reasons: Mapping[int, str],
              unresolvable: frozenset[int] | set[int], snap: Snapshot
              ) -> tuple[list[int], dict[str, str], dict[str, str]]:
        """(passing positions, FailedNodes, FailedAndUnresolvableNodes).

        `chosen` pass; nodes that fit but were not chosen (best-node-only) are left out of
        both maps: kube-scheduler reads only the passing names, and a reason per node would
        make every reply (and its parsing in kube-scheduler) grow with the cluster for a pod
        that does get a node.
        """
        ok = np.zeros(snap.n_nodes, dtype=bool)
        ok[chosen] = True
        fits = np.zeros(snap.n_nodes, dtype=bool)
        fits[feasible] = True
        mask = ok[self.idx]
        passed = self.pos[mask].tolist()
        failed = dict(self.unknown_failed)
        unres = dict(self.unknown_unresolvable)
        names = self.names
        out = ~fits[self.idx]
        for p, i in zip(self.pos[out].tolist(), self.idx[out].tolist(), strict=True):
            n = names[p]
            why = reasons.get(i) or "does not fit"
            if i in unresolvable:
                unres[n] = why
            else:
                failed[n] = why
        return passed, failed, unres


# A candidate list seen before (most recent last): (names, the snapshot's index it was mapped
# with, the snapshot index of each name or -1).
_KnownList = tuple[tuple[str, ...], Mapping[str, int], np.ndarray]


def _known_indices(names: tuple[str, ...], snap: Snapshot, memo: list[_KnownList]
                   ) -> np.ndarray:
    """The snapshot index of each name (-1 where unknown), read-only.

    The names of each request are new strings, so hashing them (a dict keyed by the list, or
    a dict lookup per name) costs a hash per name; comparing with the lists seen before
    costs a length check, or a memcmp per name when the list is the same (the usual case).
    """
    for j in range(len(memo) - 1, -1, -1):
        seen, index, raw = memo[j]
        if index is snap.index and len(seen) == len(names) and seen == names:
            if j != len(memo) - 1:
                memo.append(memo.pop(j))
            return raw
    get = snap.index.get
    # map() over dict.get with a default stays in C: a third of a generator's time.
    raw = np.fromiter(map(get, names, itertools.repeat(-1, len(names))),
                      dtype=np.int64, count=len(names))
    raw.setflags(write=False)
    # Kept while the node set (index) is the same; a list longer than the cluster is not
    # one kube-scheduler sends, and keeping it would let a caller pin memory.
    if len(names) <= 2 * snap.n_nodes + 64:
        memo.append((names, snap.index, raw))
        if len(memo) > CANDIDATE_LISTS_KEPT:
            del memo[0]
    return raw


def _scheduler_name(pod: Mapping[str, Any]) -> str:
    spec = pod.get("spec")
    name = spec.get("schedulerName") if isinstance(spec, dict) else None
    return name if isinstance(name, str) else ""


def _summary(failed: Mapping[str, str], unres: Mapping[str, str]) -> str:
    counts: dict[str, int] = {}
    for why in (*failed.values(), *unres.values()):
        counts[why] = counts.get(why, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    return cap_reason("; ".join(f"{n} node(s): {why}" for why, n in top))


def _api_error(doing: str, ns: str, name: str, e: Exception) -> str:
    return (f"{SCHEDULER_NAME}: {doing} pod {ns}/{name} failed: {type(e).__name__}: {e}; "
            f"the reservation was released and kube-scheduler will retry the pod")
