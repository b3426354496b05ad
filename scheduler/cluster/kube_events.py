"""The Kubernetes EventSink: core/v1 Events through the API, off the request path.

`emit` only puts the event on a bounded queue (never blocks, never raises; a full queue
drops the event and counts it). One thread posts them, rate-limited by a token bucket so a
storm of events cannot flood the API server. A repeat of the same event (same object,
reason and message) within `dedupe_s` is aggregated as kubelet's recorder does: the first
is created, later ones patch its `count` and `lastTimestamp`.
Nodes' events go to the `default` namespace, as kubelet's do.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s

from scheduler.cluster.events import Event
from scheduler.constants import SCHEDULER_NAME

log = logging.getLogger(__name__)

_DEDUPE_KEPT = 4096


def _now_rfc3339(wall: Callable[[], float]) -> str:
    return datetime.fromtimestamp(wall(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeEvents:
    """EventSink that posts core/v1 Events (see the module docstring)."""

    def __init__(
        self,
        api_client: Any = None,
        *,
        core: Any = None,
        component: str = SCHEDULER_NAME,
        queue_size: int = 1000,
        rate_per_s: float = 5.0,
        burst: int = 25,
        dedupe_s: float = 600.0,
        request_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.core = core if core is not None else k8s.CoreV1Api(api_client)
        self.component = component
        self.rate = rate_per_s
        self.burst = float(burst)
        self.dedupe_s = dedupe_s
        self.timeout = request_timeout_s
        self.clock = clock
        self.wall = wall
        self._queue: queue.Queue[Event] = queue.Queue(maxsize=queue_size)
        self._tokens = float(burst)
        self._refilled = clock()
        # (ns, kind, name, uid, reason, message) -> (event name, count, first seen)
        self._recent: OrderedDict[tuple[str, ...], tuple[str, int, float]] = OrderedDict()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {"posted": 0, "patched": 0, "dropped": 0, "failed": 0}

    def emit(self, event: Event) -> None:
        """Queue the event for posting; drops it (counted) when the queue is full."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.stats["dropped"] += 1

    def start(self) -> KubeEvents:
        """Start the posting thread."""
        self._thread = threading.Thread(target=self._loop, name="gts-events", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop posting (queued events not yet posted are dropped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ev = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            wait = self._take_token()
            while wait > 0:
                if self._stop.wait(wait):
                    return
                wait = self._take_token()
            self._post(ev)

    def _take_token(self) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def _post(self, ev: Event) -> None:
        ref = ev.about
        ns = ref.namespace or "default"
        key = (ns, ref.kind, ref.name, ref.uid, ev.reason, ev.message)
        now = self.clock()
        stamp = _now_rfc3339(self.wall)
        hit = self._recent.get(key)
        try:
            if hit is not None and now - hit[2] <= self.dedupe_s:
                name, count, first = hit
                self.core.patch_namespaced_event(
                    name, ns, {"count": count + 1, "lastTimestamp": stamp},
                    _preload_content=False, _request_timeout=self.timeout)
                self._recent[key] = (name, count + 1, first)
                self._recent.move_to_end(key)
                self.stats["patched"] += 1
                return
            name = f"{ref.name}.{time.time_ns():x}"[:253]
            body: Any = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {"apiVersion": "v1", "kind": ref.kind, "name": ref.name,
                                   "namespace": ref.namespace or None, "uid": ref.uid or None},
                "reason": ev.reason, "message": ev.message[:1024], "type": ev.type,
                "source": {"component": self.component},
                "reportingComponent": self.component,
                "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            }
            self.core.create_namespaced_event(ns, body, _preload_content=False,
                                              _request_timeout=self.timeout)
            self._recent[key] = (name, 1, now)
            while len(self._recent) > _DEDUPE_KEPT:
                self._recent.popitem(last=False)
            self.stats["posted"] += 1
        except Exception as e:  # events are best effort: log and go on
            self.stats["failed"] += 1
            self._recent.pop(key, None)
            log.info("could not post event %s for %s %s/%s: %s", ev.reason, ref.kind, ns,
                     ref.name, e)
