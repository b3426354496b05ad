"""A pod's effective requests, recomputed only when the fields they come from change.

Every watch event of a pod reads its requests (the assignment's CPU and memory, the typical
workload), and parsing quantities into exact fractions costs more than the rest of the event
together. The spec's requests rarely change between two events of one pod (the event that
follows our own Binding carries the same spec), so the result is kept per pod key with the raw
JSON it was computed from, and reused while that JSON compares equal.

Equality of decoded JSON is value equality, so 1, 1.0 and true compare alike: the apiserver
writes quantities as strings, and a number equal to the one already read has the same value;
only a `true` where `1` was would be read as 1 instead of refused (the apiserver refuses it
first). Entries live as long as the pod: `drop` on its deletion, `clear` on a re-list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.podcodec.resources import PodResources, pod_resources


def _sources(pod: Mapping[str, Any]) -> tuple[object, ...] | None:
    # Exactly what pod_resources reads; None when the spec is not an object (not memoized).
    spec = pod.get("spec")
    if type(spec) is not dict:
        return None
    return (spec.get("containers"), spec.get("initContainers"), spec.get("resources"),
            spec.get("overhead"))


class ResourceMemo:
    """pod key -> (the JSON its requests come from, PodResources); one entry per pod."""

    def __init__(self) -> None:
        self._memo: dict[str, tuple[tuple[object, ...], PodResources]] = {}

    def __len__(self) -> int:
        return len(self._memo)

    def resources(self, key: str, pod: Mapping[str, Any]) -> PodResources:
        """pod_resources(pod), from the memo when the pod's request fields did not change.

        Raises RequestError as pod_resources does (a pod that does not parse is not kept).
        """
        src = _sources(pod)
        if src is None:
            return pod_resources(pod)
        hit = self._memo.get(key)
        if hit is not None and hit[0] == src:
            return hit[1]
        res = pod_resources(pod)
        self._memo[key] = (src, res)
        return res

    def drop(self, key: str) -> None:
        """Forget pod `key` (it was deleted)."""
        self._memo.pop(key, None)

    def clear(self) -> None:
        """Forget every pod (a re-list)."""
        self._memo.clear()
