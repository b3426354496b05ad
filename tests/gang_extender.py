"""The extender's service over a static three-node cluster, set up for the gang tests
(test_extender_gangs, test_extender_gang_admission, test_extender_gang_properties): pods
appear in its cache by hand, as the pod watch would put them there."""

from __future__ import annotations

from typing import Any

from extender_fakes import KEY, FakeBinder, spec, static_cache
from recorded_events import RecordedEvents

from scheduler.cluster.cache import ClusterCache
from scheduler.extender.server import ExtenderApp
from scheduler.extender.service import ExtenderService, ServiceOptions
from scheduler.podcodec.signing import Signer

NODES = ["n1", "n2", "n3"]


def gang_extender(timeout: float = 20.0, *, clock: Any = None, nodes: list[Any] | None = None,
                  binder: FakeBinder | None = None, events: RecordedEvents | None = None,
                  record_only: bool = False, bind_grace_s: float = 2.0,
                  assume_ttl_s: float | None = None,
                  ) -> tuple[ExtenderApp, ExtenderService, FakeBinder]:
    """App, service and binder; `clock` drives both the service and the cache's assumptions."""
    ttl = timeout + 60 if assume_ttl_s is None else assume_ttl_s
    cache = static_cache(nodes or [spec(n) for n in NODES], assume_ttl_s=ttl)
    if clock is not None:
        cache.clock = clock
    binder = binder or FakeBinder()
    kw: dict[str, Any] = {"clock": clock} if clock else {}
    if events is not None:
        kw["events"] = events
    svc = ExtenderService(cache, binder, Signer(KEY),
                          ServiceOptions(gang_timeout_s=timeout, gang_bind_grace_s=bind_grace_s,
                                         record_only=record_only), **kw)
    return ExtenderApp(svc, svc.metrics, ready=lambda: True), svc, binder


def appear(svc: ExtenderService, *pods: dict[str, Any]) -> None:
    """The pods appear in the cluster (what the pod watch does)."""
    cache = svc.cache
    assert isinstance(cache, ClusterCache)
    for p in pods:
        cache.upsert_pod(p)
