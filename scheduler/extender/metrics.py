"""Prometheus metrics of the extender, in a registry of its own (tests run several servers).

Counters and histograms are updated on each request; the cluster state (GPUs allocated and
free by model, fragmentation, cache sync, gang reservations) is read from the cache when
Prometheus scrapes, so it is never stale and costs nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scheduler.contract.units import MILLI_PER_GPU
from scheduler.extender.ports import CacheLike
from scheduler.policy.snapshot import Snapshot

if TYPE_CHECKING:
    from scheduler.extender.gangs import GangCoordinator

# Sub-millisecond resolution: the target is a p99 under 10 ms for filter + prioritize.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)

FragmentationFn = Callable[[Snapshot], float]


class ExtenderMetrics:
    """Every metric the extender exports; `render()` is the /metrics body."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "gts_extender_request_duration_seconds",
            "Time to answer one extender call, by verb.", ["verb"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.requests = Counter(
            "gts_extender_requests", "Extender calls by verb and HTTP status.",
            ["verb", "code"], registry=r)
        self.decisions = Counter(
            "gts_extender_decisions",
            "Decisions by verb, outcome and reason category.",
            ["verb", "outcome", "reason"], registry=r)
        self.gang_events = Counter(
            "gts_gang_events",
            "Gang lifecycle events: planned, unplannable, bound, bind_failed, timeout "
            "(timeout counts gangs timed out).",
            ["event"], registry=r)
        self.gang_wait_seconds = Histogram(
            "gts_gang_bind_wait_seconds",
            "Time a gang member's bind waited for the rest of its gang.", ["outcome"],
            buckets=WAIT_BUCKETS, registry=r)
        self.connections = Counter(
            "gts_extender_connections",
            "Connections to the extender port past their handshake, by protocol (h2 when "
            "the client negotiated HTTP/2 by ALPN, else http/1.1).", ["protocol"], registry=r)
        self.http2_errors = Counter(
            "gts_extender_http2_protocol_errors",
            "HTTP/2 connections closed because the client broke the protocol.", registry=r)
        self._request_children: dict[tuple[str, int], tuple[Histogram, Counter]] = {}

    def observe_request(self, verb: str, code: int, seconds: float) -> None:
        """One HTTP call answered."""
        # The labelled children, looked up once per (verb, code): labels() validates and
        # locks on every call, on the path of every request. Both label sets are bounded
        # (the server maps unknown paths to "other").
        pair = self._request_children.get((verb, code))
        if pair is None:
            pair = (self.request_seconds.labels(verb), self.requests.labels(verb, str(code)))
            self._request_children[(verb, code)] = pair
        pair[0].observe(seconds)
        pair[1].inc()

    def connection(self, protocol: str) -> None:
        """A connection accepted, speaking `protocol` ("h2" or "http/1.1")."""
        self.connections.labels(protocol).inc()

    def http2_error(self) -> None:
        """An HTTP/2 connection closed for a protocol error."""
        self.http2_errors.inc()

    def decision(self, verb: str, outcome: str, reason: str) -> None:
        """One decision; `reason` is a category (bounded set), never free text."""
        self.decisions.labels(verb, outcome, reason).inc()

    def gang_event(self, event: str) -> None:
        """A gang was planned, bound, failed or timed out."""
        self.gang_events.labels(event).inc()

    def gang_wait(self, seconds: float, outcome: str) -> None:
        """A member's bind returned after waiting `seconds` for its gang."""
        self.gang_wait_seconds.labels(outcome).observe(seconds)

    def track(self, cache: CacheLike, gangs: GangCoordinator | None = None,
              fragmentation: FragmentationFn | None = None) -> None:
        """Export the cluster state of `cache` (and gang reservations) at scrape time."""
        self.registry.register(_StateCollector(cache, gangs, fragmentation))

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


def gpu_usage_by_model(snap: Snapshot) -> dict[str, tuple[float, int, int]]:
    """model -> (GPUs allocated in GPU units, wholly free GPUs, total GPUs)."""
    out: dict[str, tuple[float, int, int]] = {}
    if snap.n_nodes == 0 or snap.max_gpus == 0:
        return out
    valid = np.arange(snap.max_gpus)[None, :] < snap.gpu_count[:, None]
    used = np.where(valid, MILLI_PER_GPU - snap.milli_free, 0).sum(axis=1) / MILLI_PER_GPU
    free = np.where(valid & (snap.milli_free == MILLI_PER_GPU), 1, 0).sum(axis=1)
    m = snap.model_id
    ok = m >= 0
    k = len(snap.models)
    used_m = np.bincount(m[ok], weights=used[ok], minlength=k)
    free_m = np.bincount(m[ok], weights=free[ok], minlength=k)
    total_m = np.bincount(m[ok], weights=snap.gpu_count[ok], minlength=k)
    for j, name in enumerate(snap.models):
        out[name] = (float(used_m[j]), int(free_m[j]), int(total_m[j]))
    return out


class _StateCollector(Collector):
    def __init__(self, cache: CacheLike, gangs: GangCoordinator | None,
                 fragmentation: FragmentationFn | None) -> None:
        self._cache = cache
        self._gangs = gangs
        self._frag = fragmentation

    def collect(self) -> Iterator[Metric]:
        alloc = GaugeMetricFamily("gts_gpus_allocated",
                                  "GPUs allocated (shares counted in GPU units), by model.",
                                  labels=["model"])
        free = GaugeMetricFamily("gts_gpus_free", "Wholly free GPUs, by model.",
                                 labels=["model"])
        total = GaugeMetricFamily("gts_gpus_total", "GPUs in the cache, by model.",
                                  labels=["model"])
        with self._cache.lock:
            snap = self._cache.snapshot
            usage = gpu_usage_by_model(snap)
            synced = self._cache.synced
            n_nodes = snap.n_nodes
            n_errors = len(self._cache.errors)
            n_holdings = len(snap.holdings)
            unverified = len(getattr(self._cache, "unverified", {}))
            overcommitted = len(getattr(self._cache, "overcommitted", {}))
            frag = self._frag(snap) if self._frag is not None and n_nodes else None
        for model, (u, f, t) in sorted(usage.items()):
            alloc.add_metric([model], u)
            free.add_metric([model], f)
            total.add_metric([model], t)
        yield alloc
        yield free
        yield total
        if frag is not None:
            yield GaugeMetricFamily(
                "gts_fragmentation_gpus",
                "Fragmented GPU capacity (FGD, ATC'23) against the recent pod mix, in GPUs.",
                value=frag)
        yield GaugeMetricFamily("gts_cache_synced", "1 once the cache has listed the cluster.",
                                value=1.0 if synced else 0.0)
        yield GaugeMetricFamily("gts_cache_nodes", "Nodes in the cache.", value=n_nodes)
        yield GaugeMetricFamily("gts_cache_invalid_nodes",
                                "Nodes kept out of scheduling because their spec is invalid.",
                                value=n_errors)
        yield GaugeMetricFamily("gts_cache_holdings", "Pods holding resources in the cache.",
                                value=n_holdings)
        yield GaugeMetricFamily(
            "gts_unverified_assignments",
            "Bound pods whose assignment signature no key verifies; counted as holding their "
            "GPUs (never free).", value=unverified)
        yield GaugeMetricFamily(
            "gts_overcommitted_nodes",
            "Nodes where a pod's GPUs could not all be counted (another scheduler's pod on "
            "GPUs that hold shares, say); counted conservatively.", value=overcommitted)
        if self._gangs is not None:
            yield GaugeMetricFamily("gts_gangs_active", "Gangs reserved and not yet bound.",
                                    value=self._gangs.active())
            yield GaugeMetricFamily("gts_gang_reserved_gpus",
                                    "GPUs held by gangs not yet bound.",
                                    value=self._gangs.reserved_gpus())
            yield GaugeMetricFamily("gts_gangs_waiting",
                                    "Gangs with fewer than minMember pods in existence "
                                    "(members turned away, nothing held).",
                                    value=self._gangs.waiting())
            yield GaugeMetricFamily("gts_gangs_backing_off",
                                    "Gangs that timed out and may not reserve again yet.",
                                    value=self._gangs.backing_off())
