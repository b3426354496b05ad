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
from scheduler.cluster.events import EventSink
from scheduler.extender.config import (
    ConfigError,
    ServeConfig,
    load_policy_config,
    load_signer,
)
from scheduler.extender.metrics import ExtenderMetrics
from scheduler.extender.ports import BinderLike, RecordOnlyBinder
from scheduler.extender.server import (
    DEFAULT_LIMITS,
    ExtenderApp,
    ExtenderHTTPServer,
    Limits,
    serve_in_thread,
    tls_context,
)
from scheduler.extender.service import ExtenderService, ServiceOptions
from scheduler.podcodec.signing import Signer

log = logging.getLogger("gts.extender")

TICK_S = 1.0


@dataclass
class Extender:
    """Service + HTTP server + ticker over a cache; `start()` serves in threads, `stop()` ends."""

    cache: ClusterCache
    service: ExtenderService
    server: ExtenderHTTPServer
    metrics_server: ExtenderHTTPServer | None = None
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

    @property
    def metrics_url(self) -> str | None:
        """Base URL of the plain-HTTP health and metrics port, None when there is none."""
        if self.metrics_server is None:
            return None
        host, port = self.metrics_server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}"

    def start(self) -> Extender:
        """Serve HTTP and tick in daemon threads; returns self."""
        self._threads.append(serve_in_thread(self.server))
        if self.metrics_server is not None:
            self._threads.append(serve_in_thread(self.metrics_server))
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
        for srv in (self.server, self.metrics_server):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
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
    limits: Limits = DEFAULT_LIMITS,
    metrics_port: int | None = None,
    events: EventSink | None = None,
) -> Extender:
    """An Extender over `cache` and `binder`, bound to host:port (not started).

    With `metrics_port` (0 picks a free one), /healthz, /readyz and /metrics are also served
    over plain HTTP there, and /metrics leaves the extender port.
    """
    metrics = ExtenderMetrics()
    service = ExtenderService(cache, binder, signer, options, metrics=metrics, clock=clock,
                              events=events)
    metrics.track(cache, service.gangs, service.fragmentation)
    ready = lambda: cache.synced  # noqa: E731
    app = ExtenderApp(service, metrics, ready=ready, serve_metrics=metrics_port is None)
    server = ExtenderHTTPServer(app, host, port, tls, limits)
    side = None
    if metrics_port is not None:
        try:
            side = ExtenderHTTPServer(ExtenderApp(None, metrics, ready=ready, verbs=False),
                                      host, metrics_port, None, limits)
        except OSError as e:
            server.server_close()
            raise ConfigError(f"--metrics-port={metrics_port}: cannot listen on "
                              f"{host}:{metrics_port}: {e.strerror}") from None
    return Extender(cache, service, server, side)


def _options(cfg: ServeConfig, record_only: bool) -> ServiceOptions:
    return ServiceOptions(policy_config=load_policy_config(cfg),
                          gang_timeout_s=cfg.gang_timeout,
                          gang_bind_grace_s=cfg.gang_bind_grace,
                          record_only=record_only,
                          expire_assumptions=record_only,
                          scheduler_name=cfg.scheduler_name)


def _limits(cfg: ServeConfig) -> Limits:
    return Limits(max_body_bytes=cfg.max_body_bytes,
                  max_inflight_bytes=4 * cfg.max_body_bytes,
                  max_connections=cfg.max_connections,
                  idle_timeout_s=cfg.idle_timeout, read_timeout_s=cfg.read_timeout)


def _tls(cfg: ServeConfig) -> Any:
    if not (cfg.tls_cert and cfg.tls_key):
        return None
    try:
        return tls_context(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca, http2=cfg.http2)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        raise ConfigError(f"--tls-cert/--tls-key/--tls-client-ca: {e}") from None


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
    signer = load_signer(cfg)
    ext = build(cache, RecordOnlyBinder(), signer, _options(cfg, record_only=True),
                host=cfg.host, port=cfg.port, tls=_tls(cfg), limits=_limits(cfg),
                metrics_port=cfg.metrics_port or None)
    log.warning("static mode: no Kubernetes; bind only records the assignment in this "
                "process's cache and returns success", extra={
                    "cluster": cfg.cluster, "nodes": len(specs)})
    return ext


def kube_extender(cfg: ServeConfig) -> Extender:
    """`gts serve` in a cluster: list+watch nodes and pods, bind through the API server."""
    from kubernetes import client, config

    from scheduler.cluster.kube_binder import KubeBinder
    from scheduler.cluster.kube_events import KubeEvents
    from scheduler.cluster.kube_expiry import AssumptionExpiry
    from scheduler.cluster.kube_watch import KubeSource

    signer = load_signer(cfg)
    if signer is None:
        raise ConfigError("--signing-key-file is required with Kubernetes (or "
                          "--signing-key-dir): the node agent honours only assignments signed "
                          "with the shared key")
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
    # Binds run concurrently (kube-scheduler binds each pod in its own goroutine); a pool
    # smaller than the burst would open and drop a TLS connection per bind beyond it.
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, 64)
    api = client.ApiClient(configuration)
    events = KubeEvents(api)
    cache = ClusterCache(level_keys=cfg.level_label_keys, assume_ttl_s=cfg.assume_ttl,
                         signer=signer, events=events)
    binder = KubeBinder(api)
    ext = build(cache, binder, signer, _options(cfg, record_only=False),
                host=cfg.host, port=cfg.port, tls=_tls(cfg), limits=_limits(cfg),
                metrics_port=cfg.metrics_port or None, events=events)
    events.start()
    ext.stoppers.append(events.stop)
    source = KubeSource(api, cache)
    source.start()
    ext.stoppers.append(source.stop)
    # Also removes expired pods' annotations from the API.
    expiry = AssumptionExpiry(cache, binder).start()
    ext.stoppers.append(expiry.stop)
    return ext
