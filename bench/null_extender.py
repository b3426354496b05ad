"""The least an extender can do per pod, as a floor for `gts bench e2e --extender null`.

It serves the extender port exactly as `gts serve` does (the same HTTP/2 and TLS server,
limits and wire parsing) but decides nothing: filter passes the first listed node, bind posts
a bare Binding (no assignment annotations) through the same raw Binding POST. No cache, no
watch, no policy, no signing, no decision log. It places pods wrongly on purpose (first
listed, GPUs never counted), so it is a benchmark's peer only: what `gts bench e2e` measures
with it is what kube-scheduler, the API server and this transport cost for an extender that
costs nothing, which is the most any extender written on this stack could reach.

    python -m bench.null_extender --config serve.yaml   (bench.controlplane starts it)
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from scheduler.cluster.kube_binder import KubeBinder
from scheduler.extender.metrics import ExtenderMetrics
from scheduler.extender.server import (
    JSON,
    ExtenderApp,
    ExtenderHTTPServer,
    Reply,
    serve_in_thread,
    tls_context,
)
from scheduler.extender.wire import (
    WireError,
    bind_reply,
    decode_json,
    encode_json,
    error_body,
    filter_reply,
    parse_binding_args,
    parse_extender_args,
)


class NullApp(ExtenderApp):
    """filter: the first listed node; bind: a bare Binding; health and metrics as gts serve."""

    def __init__(self, binder: Any, metrics: ExtenderMetrics, *,
                 serve_metrics: bool = True) -> None:
        super().__init__(None, metrics, ready=lambda: True, serve_metrics=serve_metrics)
        self.binder = binder
        self.verbs = True  # ExtenderApp turns verbs off without a service; these are ours

    def _route(self, method: str, verb: str, body: bytes) -> Reply:
        if verb not in ("filter", "prioritize", "bind"):
            return super()._route(method, verb, body)
        if method != "POST":
            return 405, JSON, error_body(f"/{verb} takes POST with a JSON body")
        try:
            doc = decode_json(body)
            if verb == "bind":
                b = parse_binding_args(doc)
                try:
                    self.binder.bind(b.pod_namespace, b.pod_name, b.pod_uid, b.node, None)
                except Exception as e:  # kube-scheduler retries the pod, as with gts serve
                    return 200, JSON, encode_json(bind_reply(f"{type(e).__name__}: {e}"))
                return 200, JSON, encode_json(bind_reply())
            args = parse_extender_args(doc)
            if verb == "prioritize":
                return 200, JSON, encode_json([{"Host": n, "Score": 0} for n in args.names])
            return 200, JSON, encode_json(filter_reply(args, [0] if args.names else [], {}, {}))
        except WireError as e:
            return 400, JSON, error_body(f"not an extender {verb} request: {e}")


def _binder(kubeconfig: str) -> KubeBinder:
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration)
    except config.ConfigException as e:
        raise ValueError(f"kubeconfig {kubeconfig!r}: {e}") from None
    # As gts serve (scheduler/extender/runtime.py): binds run concurrently.
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, 64)
    return KubeBinder(client.ApiClient(configuration))


def build(cfg: Mapping[str, Any], binder: Any) -> list[ExtenderHTTPServer]:
    """The servers for a `gts serve` YAML configuration: the extender port (host, port, TLS)
    and, with metrics-port, health and metrics over plain HTTP there, as gts serve."""
    tls = None
    if cfg.get("tls-cert") and cfg.get("tls-key"):
        tls = tls_context(str(cfg["tls-cert"]), str(cfg["tls-key"]),
                          cfg.get("tls-client-ca") or None, http2=bool(cfg.get("http2", True)))
    metrics = ExtenderMetrics()
    host = str(cfg.get("host", "127.0.0.1"))
    side = cfg.get("metrics-port")
    app = NullApp(binder, metrics, serve_metrics=side is None)
    servers = [ExtenderHTTPServer(app, host, int(cfg.get("port", 0)), tls)]
    if side is not None:
        servers.append(ExtenderHTTPServer(
            ExtenderApp(None, metrics, ready=lambda: True, verbs=False), host, int(side)))
    return servers


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    ap = argparse.ArgumentParser(prog="python -m bench.null_extender",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, type=Path,
                    help="a gts serve YAML configuration (host, port, TLS files, kubeconfig)")
    args = ap.parse_args(argv)
    try:
        cfg = yaml.safe_load(args.config.read_text()) or {}
        if not isinstance(cfg, dict) or not cfg.get("kubeconfig"):
            raise ValueError(f"needs a mapping with kubeconfig, got {cfg!r:.200}")
        servers = build(cfg, _binder(str(cfg["kubeconfig"])))
    except (OSError, ValueError, TypeError, yaml.YAMLError) as e:
        print(f"python -m bench.null_extender: --config {args.config}: {e}", file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    for s in servers:
        serve_in_thread(s)
    done.wait()
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
