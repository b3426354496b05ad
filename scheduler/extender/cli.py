"""`gts serve`: the kube-scheduler extender (Kubernetes, or static with --cluster FILE)."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
from typing import Any

from scheduler.extender.config import YAML_EXAMPLE, ConfigError, add_arguments, resolve

DESCRIPTION = """\
Serve kube-scheduler's extender verbs at /filter, /prioritize and /bind (urlPrefix is
http[s]://HOST:PORT), plus /healthz and /readyz (ready once the cluster cache has synced);
/healthz, /readyz and /metrics (Prometheus) also on the plain-HTTP --metrics-port.
With Kubernetes (in-cluster, or --kubeconfig) it watches nodes and pods
and binds through the API server; with --cluster FILE it serves decisions for a static
cluster and bind only records the assignment in memory.
"""

log = logging.getLogger("gts.extender")


def add_parser(subparsers: Any) -> None:
    """Register `gts serve`."""
    p = subparsers.add_parser(
        "serve", help="run the kube-scheduler extender", description=DESCRIPTION,
        epilog=YAML_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the extender and serve until SIGTERM or SIGINT."""
    from scheduler.extender.logs import setup_logging

    try:
        cfg = resolve(args)
        setup_logging(cfg.log_level)
        from scheduler.extender.runtime import kube_extender, static_extender

        ext = static_extender(cfg) if cfg.static else kube_extender(cfg)
    except ConfigError as e:
        print(f"gts serve: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the listening socket: port in use, privileged port, foreign address
        from scheduler.extender.listen_error import describe_listen_error

        metrics_port = getattr(cfg, "metrics_port", 0)
        ports = f"{cfg.port}" + (f" (metrics {metrics_port})" if metrics_port else "")
        why = describe_listen_error(e, cfg.host, ports)
        print(f"gts serve: {why or e}", file=sys.stderr)
        return 2
    done = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # Everything built so far (topology tables, the cache) lives as long as the process:
    # keep the cyclic GC from walking it again, which shows up as latency spikes.
    gc.collect()
    gc.freeze()
    ext.start()
    log.info("serving", extra={
        "url": ext.url, "metrics_url": ext.metrics_url,
        "mode": "static" if cfg.static else "kubernetes",
        "gang_timeout_s": cfg.gang_timeout,
        "min_http_timeout_s": cfg.min_http_timeout,
        "tls": cfg.tls_cert is not None, "client_certificates": bool(cfg.tls_client_ca)})
    if not cfg.static and not cfg.tls_client_ca:
        log.warning("no --tls-client-ca: anyone who reaches the extender port can call bind; "
                    "require kube-scheduler's client certificate in production")
    done.wait()
    ext.stop()
    return 0
