"""Which pods of each gang exist now, and the PodGroup objects: what gang admission counts.

A gang is admitted (planned and reserved) only once at least minMember of its pods exist,
as the Coscheduling plugin does from its pod lister. This index is that lister: every
non-terminal pod carrying the group label `scheduling.x-k8s.io/pod-group` (or Volcano's
group annotation), by gang key `namespace/group`, fed by the same watch as the cache, plus
the PodGroup objects (their UID and spec.minMember) when a PodGroup watch feeds it.

A gang's identity is its PodGroup's UID, or, without a PodGroup object, the gang key and the
creation time of its oldest existing member: a name reused after the old gang's pods are gone
is a new gang, never taken for the finished one.

Static mode has no pod watch: there the extender notes each gang pod it is asked to filter
(`note`), and such provisional entries are dropped when not seen again for `ttl_s`; a watch
entry for the same pod replaces them and never expires. Not thread-safe: the cache calls it
under its lock.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.constants import GANG_MIN_MEMBER_ANNOTATION
from scheduler.contract.request import RequestError
from scheduler.contract.units import MAX_GANG
from scheduler.podcodec.pod_fields import (
    annotations_of,
    gang_key_of,
    is_terminal,
    node_name_of,
    pod_key,
    pod_uid,
)

PROVISIONAL_MAX = 100_000  # static-mode entries kept at most (oldest dropped first)
_INT_RE = re.compile(r"[1-9][0-9]{0,8}")


@dataclass(frozen=True, slots=True)
class Member:
    """One existing pod of a gang."""

    key: str
    uid: str
    created: str  # metadata.creationTimestamp (RFC 3339, sorts as time), "" when absent
    bound: bool
    min_member: int | None  # its gang-min-member annotation, when valid
    provisional: bool = False  # seen only at filter (static mode)
    seen: float = 0.0  # when last noted (provisional entries only)
    order: int = 0  # when first known here, to order pods without a creation time


@dataclass(frozen=True, slots=True)
class PodGroupInfo:
    """A scheduling.x-k8s.io PodGroup object: UID and spec.minMember (None when absent)."""

    key: str
    uid: str
    min_member: int | None


@dataclass(frozen=True, slots=True)
class GangView:
    """A gang as it exists now: its identity, minimum size and current member pods."""

    key: str
    identity: str
    members: Mapping[str, Member]  # by pod key; non-terminal pods only
    podgroup: PodGroupInfo | None

    @property
    def min_member(self) -> int | None:
        """minMember from the PodGroup object, else the oldest member's annotation."""
        if self.podgroup is not None and self.podgroup.min_member is not None:
            return self.podgroup.min_member
        for m in sorted(self.members.values(), key=_age):
            if m.min_member is not None:
                return m.min_member
        return None

    @property
    def pending(self) -> int:
        """Members not bound to a node yet."""
        return sum(not m.bound for m in self.members.values())


def _age(m: Member) -> tuple[bool, str, int]:
    # Oldest first; pods without a creation time (static mode) after those with one, in the
    # order they became known.
    return (not m.created, m.created, m.order)


def _min_annotation(pod: Mapping[str, Any]) -> int | None:
    try:
        raw = annotations_of(pod).get(GANG_MIN_MEMBER_ANNOTATION)
    except RequestError:
        return None
    if raw is None or not _INT_RE.fullmatch(raw) or int(raw) > MAX_GANG:
        return None
    return int(raw)


def _created(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata")
    ts = meta.get("creationTimestamp") if isinstance(meta, Mapping) else None
    return ts if isinstance(ts, str) else ""


class GangMembers:
    """Existing pods per gang and PodGroup objects; see the module docstring."""

    def __init__(self, ttl_s: float = 600.0) -> None:
        self.ttl_s = ttl_s
        self._gangs: dict[str, dict[str, Member]] = {}
        self._gang_of: dict[str, str] = {}
        self._podgroups: dict[str, PodGroupInfo] = {}
        self._first_seen: dict[str, float] = {}
        self._order: dict[str, int] = {}
        self._next = 0

    # ---- pods ----------------------------------------------------------------------------

    def pod_changed(self, pod: Mapping[str, Any]) -> None:
        """Apply a pod's current object (watch ADDED/MODIFIED, or a list)."""
        try:
            key = pod_key(pod)
        except RequestError:
            return
        member = self._member(key, pod, provisional=False, now=0.0)
        if member is None:
            self.pod_deleted(key)
        else:
            self._put(key, *member)

    def pod_deleted(self, key: str) -> None:
        """The pod is gone (or finished): it no longer counts for its gang."""
        gkey = self._gang_of.pop(key, None)
        self._first_seen.pop(key, None)
        self._order.pop(key, None)
        if gkey is None:
            return
        members = self._gangs.get(gkey)
        if members is not None:
            members.pop(key, None)
            if not members:
                del self._gangs[gkey]

    def replace_pods(self, pods: Iterable[Mapping[str, Any]]) -> None:
        """A re-list: exactly these pods exist (provisional entries are dropped too)."""
        self._gangs, self._gang_of, self._first_seen, self._order = {}, {}, {}, {}
        for p in pods:
            self.pod_changed(p)

    def note(self, pod: Mapping[str, Any], now: float) -> None:
        """A gang pod seen at filter without a watch (static mode): counts for `ttl_s`."""
        try:
            key = pod_key(pod)
        except RequestError:
            return
        old = self._gangs.get(self._gang_of.get(key, ""), {}).get(key)
        if old is not None and not old.provisional:
            return  # the watch knows it better
        first = self._first_seen.setdefault(key, now)
        member = self._member(key, pod, provisional=True, now=first)
        if member is None:
            self.pod_deleted(key)
            return
        gkey, m = member
        self._put(key, gkey, dataclasses.replace(m, seen=now))
        if len(self._first_seen) > PROVISIONAL_MAX:
            oldest = min(self._first_seen, key=lambda k: self._first_seen[k])
            self.pod_deleted(oldest)

    def _member(self, key: str, pod: Mapping[str, Any], *, provisional: bool,
                now: float) -> tuple[str, Member] | None:
        try:
            gkey = gang_key_of(pod)
            if gkey is None or is_terminal(pod):
                return None
            bound = bool(node_name_of(pod))
            uid = pod_uid(pod)
        except RequestError:
            return None
        return gkey, Member(key, uid, _created(pod), bound, _min_annotation(pod),
                            provisional=provisional, seen=now)

    def _put(self, key: str, gkey: str, m: Member) -> None:
        old = self._gang_of.get(key)
        if old is not None and old != gkey:
            self.pod_deleted(key)
        if key not in self._order:
            self._order[key] = self._next
            self._next += 1
        m = dataclasses.replace(m, order=self._order[key])
        self._gang_of[key] = gkey
        self._gangs.setdefault(gkey, {})[key] = m

    # ---- PodGroups -----------------------------------------------------------------------

    def podgroup_changed(self, obj: Mapping[str, Any]) -> None:
        """Apply a PodGroup object (watch ADDED/MODIFIED); malformed ones are ignored."""
        info = _podgroup(obj)
        if info is not None:
            self._podgroups[info.key] = info

    def podgroup_deleted(self, obj: Mapping[str, Any]) -> None:
        """The PodGroup is gone."""
        info = _podgroup(obj)
        if info is not None:
            self._podgroups.pop(info.key, None)

    def replace_podgroups(self, objs: Iterable[Mapping[str, Any]]) -> None:
        """A re-list of PodGroups."""
        self._podgroups = {}
        for o in objs:
            self.podgroup_changed(o)

    # ---- queries -------------------------------------------------------------------------

    def view(self, gkey: str, now: float) -> GangView | None:
        """The gang `namespace/group` as it exists now; None when it has no pod."""
        self._drop_stale(gkey, now)
        members = self._gangs.get(gkey)
        if not members:
            return None
        pg = self._podgroups.get(gkey)
        if pg is not None:
            identity = f"{gkey}#{pg.uid}"
        else:
            oldest = min(members.values(), key=_age)
            identity = f"{gkey}@{oldest.created}" if oldest.created else \
                f"{gkey}@first:{oldest.uid or oldest.key}"
        return GangView(gkey, identity, dict(members), pg)

    def views(self, now: float) -> Iterator[GangView]:
        """Every gang with at least one existing pod."""
        for gkey in sorted(self._gangs):
            v = self.view(gkey, now)
            if v is not None:
                yield v

    def _drop_stale(self, gkey: str, now: float) -> None:
        members = self._gangs.get(gkey)
        if not members:
            return
        stale = [k for k, m in members.items() if m.provisional and now - m.seen > self.ttl_s]
        for k in stale:
            self.pod_deleted(k)


def _podgroup(obj: Mapping[str, Any]) -> PodGroupInfo | None:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return None
    name, ns, uid = meta.get("name"), meta.get("namespace") or "default", meta.get("uid")
    if not isinstance(name, str) or not name or not isinstance(ns, str):
        return None
    spec = obj.get("spec")
    mm = spec.get("minMember") if isinstance(spec, Mapping) else None
    if isinstance(mm, bool) or not isinstance(mm, int) or mm < 1:
        mm = None  # out-of-range sizes are kept: admission refuses them with the reason
    return PodGroupInfo(f"{ns}/{name}", uid if isinstance(uid, str) else "", mm)
