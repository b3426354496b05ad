"""What the extender needs from its edges: the cluster cache and the Kubernetes binder.

scheduler.cluster.cache.ClusterCache and scheduler.cluster.kube_binder.KubeBinder implement these
(the Protocols below are the contract); tests and static mode pass their own.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

from scheduler.cluster.gang_members import GangView
from scheduler.contract.assignment import Assignment
from scheduler.policy.snapshot import Snapshot


class CacheLike(Protocol):
    """The cluster cache: a Snapshot guarded by one lock, plus assumptions that expire."""

    lock: threading.RLock
    synced: bool
    errors: dict[str, str]
    typical_workload: Any

    @property
    def snapshot(self) -> Snapshot:
        """The nodes and holdings now; read under `lock`."""
        ...

    def assume(self, a: Assignment) -> None:
        """Hold `a` now; expires unless confirmed."""
        ...

    def confirm(self, key: str) -> bool:
        """Keep an assumption until the pod is deleted or finishes; False if none."""
        ...

    def forget(self, key: str) -> bool:
        """Release what the pod holds; False if nothing was released."""
        ...

    def expire(self) -> list[str]:
        """Release assumptions past their time to live; their pod keys."""
        ...

    def gang_view(self, gang_key: str) -> GangView | None:
        """The gang's existing pods and identity (gang admission counts these)."""
        ...

    def gang_views(self) -> list[GangView]:
        """Every gang with at least one existing pod."""
        ...

    def note_gang_member(self, pod: Mapping[str, Any]) -> None:
        """Count a gang pod seen at filter (static mode: no pod watch)."""
        ...


class BinderLike(Protocol):
    """The writes the extender makes to the Kubernetes API."""

    def bind(self, ns: str, name: str, uid: str, node: str,
             annotations: Mapping[str, str] | None = None) -> None:
        """Post the pod's Binding to `node`; the API server copies `annotations` (the
        signed assignment) onto the pod in the same write."""
        ...

    def get_podgroup_min_member(self, ns: str, name: str) -> int | None:
        """minMember of a scheduling.x-k8s.io PodGroup, None when there is none."""
        ...


class RecordOnlyBinder:
    """Static mode (no Kubernetes): binding only records the assignment in the cache."""

    def bind(self, ns: str, name: str, uid: str, node: str,
             annotations: Mapping[str, str] | None = None) -> None:
        """Nothing to post without an API server."""

    def get_podgroup_min_member(self, ns: str, name: str) -> int | None:
        """No PodGroup objects in static mode: minMember comes from the pod annotation."""
        return None
