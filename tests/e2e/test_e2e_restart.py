"""The extender killed (SIGKILL) and restarted during a burst of pods: no GPU is double-booked,
the pending pods bind, and the rebuilt state equals what the pods' annotations say."""

from __future__ import annotations

from bench.controlplane import ControlPlane
from e2e.e2e_kit import (
    Api,
    MakeNodes,
    create_pods,
    dgx1,
    metric,
    node_of,
    pod_body,
    verify_cluster,
    wait_bound,
    wait_until,
)
from scheduler.podcodec.signing import Signer


def test_extender_killed_and_restarted_mid_burst(
        api: Api, ns: str, make_nodes: MakeNodes, signer: Signer,
        control_plane: ControlPlane) -> None:
    nodes = make_nodes(4, dgx1(), prefix="crash")
    first = [f"a{i}" for i in range(16)]
    create_pods(api.core, ns, [pod_body(n, gpus=1) for n in first])
    wait_until("the first binds", lambda: any(node_of(p) for p in api.pods(ns)))
    control_plane.procs["gts-serve"].kill()
    second = [f"b{i}" for i in range(6)] + [f"c{i}" for i in range(3)]
    create_pods(api.core, ns, [pod_body(n, gpus=1) for n in second[:6]]
                + [pod_body(n, gpus=2) for n in second[6:]])
    control_plane.restart_extender()
    wait_bound(api, ns, first + second)
    placed = {k: p for k, p in verify_cluster(api, signer).items() if k.startswith(f"{ns}/")}
    assert len(placed) == len(first) + len(second)
    assert {p.node for p in placed.values()} <= set(nodes)
    # The restarted extender's cache, rebuilt from the API, counts exactly the GPUs that the
    # annotations of the bound pods (ours, all namespaces) hold.
    want = sum(len(p.assignment.gpus) * p.assignment.gpu_milli / 1000
               for p in verify_cluster(api, signer).values())

    def cache_agrees() -> bool:
        return abs(metric(control_plane.extender_get("/metrics")[1], "gts_gpus_allocated")
                   - want) < 1e-6

    wait_until(f"the extender's gts_gpus_allocated = {want}", cache_agrees)
