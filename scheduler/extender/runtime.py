"""A running extender: cache source, service, HTTP server and the housekeeping ticker.

`Extender` wires parts that are passed in (tests give a fake binder or the API double);
`static_extender` and `kube_extender` build the two real configurations of `gts serve`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scheduler.cluster.cache import ClusterCache
from scheduler.cluster.signing import Signer
from scheduler.extender.config import (
    ConfigError,
    ServeConfig,
    load_policy_config,
    load_signing_key,
)
from scheduler.extender.metrics import ExtenderMetrics
from scheduler.extender.ports import BinderLike, RecordOnlyBinder
from scheduler.extender.server import ExtenderApp, ExtenderHTTPServer, serve_in_thread, tls_context
from scheduler.extender.service import ExtenderService, ServiceOptions

log = logging.getLogger("gts.extender")

TICK_S = 1.0


@dataclass
class Extender:
    """Service + HTTP server + ticker over a cache; `start()` serves in threads, `stop()` ends."""

    cache: ClusterCache
    service: ExtenderService
    server: ExtenderHTTPServer
    stoppers: list[Callable[[], None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Base URL (kube-scheduler's urlPrefix)."""
        host, port = self.server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        scheme = "https" if self.server.tls is not None else "http"
        return f"{scheme}://{host}:{port}"

    def start(self) -> Extender:
        """Serve HTTP and tick in daemon threads; returns self."""
        self._threads.append(serve_in_thread(self.server))
        t = threading.Thread(target=self._tick_loop, name="gts-extender-tick", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _tick_loop(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.service.tick()
            except Exception:  # housekeeping must never stop
                log.exception("tick failed")

    def stop(self) -> None:
        """Stop serving, ticking and watching; close the socket."""
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        for s in self.stoppers:
            s()
        for t in self._threads:
            t.join(timeout=5)


def build(
    cache: ClusterCache,
    binder: BinderLike,
    signer: Signer | None,
    options: ServiceOptions,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: Any = None,
    clock: Callable[[], float] = time.monotonic,
) -> Extender:
    """An Extender over `cache` and `binder`, bound to host:port (not started)."""
    metrics = ExtenderMetrics()
    service = ExtenderService(cache, binder, signer, options, metrics=metrics, clock=clock)
    metrics.track(cache, service.gangs, service.fragmentation)
    app = ExtenderApp(service, metrics, ready=lambda: cache.synced)
    server = ExtenderHTTPServer(app, host, port, tls)
    return Extender(cache, service, server)


def _options(cfg: ServeConfig, record_only: bool) -> ServiceOptions:
    return ServiceOptions(policy_config=load_policy_config(cfg),
                          gang_timeout_s=cfg.gang_timeout,
                          gang_bind_grace_s=cfg.gang_bind_grace,
                          record_only=record_only,
                          expire_assumptions=record_only)


def static_extender(cfg: ServeConfig) -> Extender:
    """`gts serve --cluster FILE`: decisions for a cluster file; bind records in memory only."""
    from scheduler.cluster.static import load_cluster_file

    assert cfg.cluster is not None
    try:
        specs = load_cluster_file(cfg.cluster)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--cluster {cfg.cluster}: {e}") from None
    cache = ClusterCache(level_keys=cfg.level_label_keys, assume_ttl_s=cfg.assume_ttl)
    cache.replace_specs(specs)
    cache.synced = True
    signer = Signer(load_signing_key(cfg.signing_key_file)) if cfg.signing_key_file else None
    tls = tls_context(cfg.tls_cert, cfg.tls_key) if cfg.tls_cert and cfg.tls_key else None
    ext = build(cache, RecordOnlyBinder(), signer, _options(cfg, record_only=True),
                host=cfg.host, port=cfg.port, tls=tls)
    log.warning("static mode: no Kubernetes; bind only records the assignment in this "
                "process's cache and returns success", extra={
                    "cluster": cfg.cluster, "nodes": len(specs)})
    return ext


def kube_extender(cfg: ServeConfig) -> Extender:
    """`gts serve` in a cluster: list+watch nodes and pods, bind through the API server."""
    from kubernetes import client, config

    from scheduler.cluster.kube import KubeBinder, KubeSource

    if not cfg.signing_key_file:
        raise ConfigError("--signing-key-file is required with Kubernetes: the node agent "
                          "honours only assignments signed with the shared key")
    signer = Signer(load_signing_key(cfg.signing_key_file))
    configuration = client.Configuration()
    if cfg.kubeconfig:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=cfg.kubeconfig, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
        except config.ConfigException as e:
            raise ConfigError(f"not running in a cluster and no --kubeconfig given: {e}; "
                              "use --cluster FILE for static mode") from None
    api = client.ApiClient(configuration)
    cache = ClusterCache(level_keys=cfg.level_label_keys, assume_ttl_s=cfg.assume_ttl,
                         signer=signer)
    tls = tls_context(cfg.tls_cert, cfg.tls_key) if cfg.tls_cert and cfg.tls_key else None
    binder = KubeBinder(api)
    ext = build(cache, binder, signer, _options(cfg, record_only=False),
                host=cfg.host, port=cfg.port, tls=tls)
    # The source's expiry loop also removes expired pods' annotations from the API.
    source = KubeSource(api, cache, binder=binder)
    source.start()
    ext.stoppers.append(source.stop)
    return ext
