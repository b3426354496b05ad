"""Expiry of assumptions that never became a bound pod, in the cache and in the API.

A reservation the extender made at bind (cache.assume) lasts until the watch shows the pod
bound, or until it expires (cache.expire, after assume-ttl). A pod that still carries our
assignment annotations without being held (written by an older extender that annotated before
binding, or by hand) is cleaned here too, so the API, and a cache rebuilt from it after a
restart, agrees with this cache.
"""

from __future__ import annotations

import logging
import threading

from scheduler.cluster.cache import ClusterCache
from scheduler.cluster.kube_binder import KubeBinder
from scheduler.cluster.kube_errors import Conflict, KubeError, NotFound

log = logging.getLogger(__name__)


class AssumptionExpiry:
    """Calls `cache.expire()` every `interval_s` in a thread and removes stale annotations."""

    def __init__(self, cache: ClusterCache, binder: KubeBinder | None, *,
                 interval_s: float = 1.0) -> None:
        self.cache = cache
        self.binder = binder
        self.interval_s = interval_s
        self.expired = 0
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._cleared: set[str] = set()

    def start(self) -> AssumptionExpiry:
        """Start the expiry thread."""
        self._thread = threading.Thread(target=self._loop, name="gts-expire", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def expire_once(self) -> list[str]:
        """Release expired assumptions and remove their stale annotations from the API."""
        gone = self.cache.expire()
        self.expired += len(gone)
        if self.binder is None:
            return gone
        stale = self.cache.stale_annotations()
        # Patched once each; the entry leaves the cache when the watch shows the annotation
        # gone (or changed), and a patch that failed for another reason is tried again.
        self._cleared &= {k for k, _, _ in stale}
        for key, uid, ours in stale:
            if key in self._cleared:
                continue
            ns, name = key.split("/", 1)
            try:
                self.binder.remove_annotations_if(ns, name, uid, ours)
                self._cleared.add(key)
            except (NotFound, Conflict):
                self._cleared.add(key)  # the pod is gone, or holds another assignment now
            except KubeError as e:
                if e.status == 403:
                    # Binds are one write now, so only pods annotated by an older extender
                    # (or by hand) need this; without `pods patch` in RBAC, give up on them
                    # once: the cache ignores the stale annotation anyway.
                    self._cleared.add(key)
                log.warning("could not clear the expired assignment of %s: %s", key, e)
        return gone

    def _loop(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            try:
                self.expire_once()
            except Exception:  # the loop must keep running
                log.exception("expiring assumptions failed")
