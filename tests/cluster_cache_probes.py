"""What tests ask of a ClusterCache beyond the service's needs: a full re-list in one step,
the pods a restart would lose, the snapshot a restart would rebuild, a node's row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from scheduler.cluster.cache import ClusterCache
from scheduler.policy.snapshot import Snapshot, build_snapshot


def replace_all(
    cache: ClusterCache, nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> None:
    """A full re-list (start-up, or after 410 Gone): nodes and pods from scratch."""
    with cache.lock:
        cache._load_nodes(nodes)
        cache._load_pods(pods)
        cache._rebuild()


def node_index(cache: ClusterCache, name: str) -> int | None:
    """Index of a schedulable node in the snapshot, None if unknown or kept out."""
    with cache.lock:
        return cache.snapshot.index.get(name)


def in_memory_keys(cache: ClusterCache) -> list[str]:
    """Pods held only in memory (assumed, annotation not seen yet): lost by a restart."""
    with cache.lock:
        return sorted(k for k, h in cache._pods.items() if not h.durable)


def durable_snapshot(cache: ClusterCache) -> Snapshot:
    """The snapshot a restart would rebuild from the API objects now (no in-memory holds)."""
    with cache.lock:
        snap = build_snapshot(cache._sorted_specs(), topo_index=cache._topo_index)
        durable = {k: h for k, h in cache._pods.items() if h.durable}
        for node in sorted({h.node for h in durable.values()} & set(snap.index)):
            cache._place(snap, node, {k: durable[k] for k in cache._by_node.get(node, ())
                                      if k in durable}, record=False)
        return snap
