"""kube-scheduler v1.36.2 really speaks HTTP/2 to the extender (deploy/'s TLS port, ALPN h2):
its extender client would otherwise open a TLS connection per concurrent bind."""

from __future__ import annotations

from bench.controlplane import ControlPlane
from e2e.e2e_kit import Api, MakeNodes, create_pods, dgx1, metric, pod_body, wait_bound


def test_kube_scheduler_negotiates_http2_with_the_extender(
        api: Api, ns: str, make_nodes: MakeNodes, control_plane: ControlPlane) -> None:
    make_nodes(2, dgx1(), prefix="h2")
    names = [f"p{i}" for i in range(8)]
    create_pods(api.core, ns, [pod_body(n, gpus=1) for n in names])
    wait_bound(api, ns, names)
    text = control_plane.extender_get("/metrics")[1]
    # Counted since this extender process started (another test may have restarted it):
    # kube-scheduler's connections to it were all HTTP/2, none fell back to HTTP/1.1.
    h2 = metric(text, 'gts_extender_connections_total{protocol="h2"}')
    assert h2 >= 1 and metric(text, "gts_extender_connections_total") == h2
