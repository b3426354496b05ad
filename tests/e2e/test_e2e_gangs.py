"""Gangs through the real kube-scheduler: a gang whose members all exist is bound whole; one
with fewer members than minMember is never bound and holds no GPU; a PodGroup created after
its pods. Members are counted from the pods (a gang is planned only once minMember exist)."""

from __future__ import annotations

from bench.controlplane import ControlPlane
from e2e.e2e_kit import (
    Api,
    MakeNodes,
    Placed,
    create_podgroup,
    create_pods,
    dgx1,
    metric,
    name_of,
    pod_body,
    unassigned,
    verify_cluster,
    wait_bound,
    wait_turned_away,
)
from scheduler.podcodec.signing import Signer
from topology.quality import set_quality


def _ours(placed: dict[str, Placed], ns: str) -> dict[str, Placed]:
    return {p.name: p for k, p in placed.items() if k.startswith(f"{ns}/")}


def test_gang_with_every_member_is_bound_whole_and_packed(
        api: Api, ns: str, make_nodes: MakeNodes, signer: Signer) -> None:
    topo = dgx1()
    nodes = make_nodes(3, topo, prefix="gang")
    members = [f"m{i}" for i in range(4)]
    create_podgroup(api.custom, ns, "train", 4)
    create_pods(api.core, ns, [pod_body(n, gpus=2, gang="train") for n in members])
    # Under load (or as the first test on a cold scheduler) the members may not all arrive
    # within gang-timeout; the gang then backs off, and kube-scheduler retries on the next
    # cluster event: kubelets' node status updates, made here.
    wait_bound(api, ns, members, heartbeat=nodes)
    placed = _ours(verify_cluster(api, signer), ns)
    assert set(placed) == set(members)
    # 4 x 2 GPUs fit one DGX-1: the gang is packed there, each member on an NVLinked pair.
    assert len({p.node for p in placed.values()}) == 1
    assert {p.node for p in placed.values()} <= set(nodes)
    for p in placed.values():
        assert set_quality(topo, p.assignment.gpus) == 1.0, p


def test_gang_short_of_min_member_is_never_bound_and_holds_nothing(
        api: Api, ns: str, make_nodes: MakeNodes, signer: Signer,
        control_plane: ControlPlane) -> None:
    (node,) = make_nodes(1, dgx1(), prefix="short")
    create_podgroup(api.custom, ns, "short", 4)
    members = ["m0", "m1"]
    create_pods(api.core, ns, [pod_body(n, gpus=2, gang="short") for n in members])
    wait_turned_away(api, ns, members)
    # Nothing is held for the incomplete gang: a pod that needs the whole node binds there
    # while the two members still wait.
    create_pods(api.core, ns, [pod_body("whole", gpus=8)])
    wait_bound(api, ns, ["whole"])
    pods = {name_of(p): p for p in api.pods(ns)}
    assert all(unassigned(pods[n]) for n in members)
    placed = _ours(verify_cluster(api, signer), ns)
    assert set(placed) == {"whole"} and placed["whole"].node == node
    assert sorted(placed["whole"].assignment.gpus) == list(range(8))
    # And the extender reserves nothing for the gang (the node is full now in any case).
    assert metric(control_plane.extender_get("/metrics")[1], "gts_gang_reserved_gpus") == 0


def test_podgroup_created_after_its_pods(
        api: Api, ns: str, make_nodes: MakeNodes, signer: Signer) -> None:
    nodes = make_nodes(2, dgx1(), prefix="late")
    members = [f"m{i}" for i in range(3)]
    # No PodGroup and no min-member annotation yet: the size is unknown, nobody is bound.
    create_pods(api.core, ns, [pod_body(n, gpus=2, gang="late") for n in members])
    wait_turned_away(api, ns, members)
    assert all(unassigned(p) for p in api.pods(ns))
    create_podgroup(api.custom, ns, "late", 3)
    # kube-scheduler retries pods that only an extender turned away on the next cluster event;
    # in a real cluster kubelets' node status updates come every few seconds, here we make them.
    wait_bound(api, ns, members, heartbeat=nodes)
    placed = _ours(verify_cluster(api, signer), ns)
    assert set(placed) == set(members)
    assert len({p.node for p in placed.values()}) == 1
