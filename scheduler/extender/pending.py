"""Requests seen at filter, kept for bind: kube-scheduler's bind carries only the pod's name.

Bounded in size and age, so pods that never reach bind (deleted, bound elsewhere) do not
accumulate; a bind whose pod is not here fails and kube-scheduler runs filter again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from scheduler.policy.request import PodRequest


@dataclass(frozen=True, slots=True)
class PendingPod:
    """A parsed pod request and who it belongs to."""

    req: PodRequest
    namespace: str
    name: str
    uid: str
    seen_at: float


class PendingPods:
    """Thread-safe map pod key -> PendingPod, oldest dropped first beyond `max_entries`."""

    def __init__(self, clock: Callable[[], float], ttl_s: float = 600.0,
                 max_entries: int = 100_000) -> None:
        self._clock = clock
        self._ttl = ttl_s
        self._max = max_entries
        self._items: OrderedDict[str, PendingPod] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, req: PodRequest, namespace: str, name: str, uid: str) -> bool:
        """Remember a request; True when this pod (key and uid) was not seen before."""
        now = self._clock()
        with self._lock:
            old = self._items.pop(req.key, None)
            self._items[req.key] = PendingPod(req, namespace, name, uid, now)
            while len(self._items) > self._max:
                self._items.popitem(last=False)
            while self._items:
                first = next(iter(self._items.values()))
                if now - first.seen_at <= self._ttl:
                    break
                self._items.popitem(last=False)
            return old is None or old.uid != uid

    def get(self, key: str) -> PendingPod | None:
        """The request remembered for a pod key, if any and not too old."""
        with self._lock:
            p = self._items.get(key)
            if p is not None and self._clock() - p.seen_at > self._ttl:
                del self._items[key]
                return None
            return p

    def drop(self, key: str) -> None:
        """Forget a pod (it was bound)."""
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
