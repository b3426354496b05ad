"""Real kube-scheduler + extender: whole GPUs of every size and shares on DGX-1 nodes, a pod
that fits nowhere, deleted pods' GPUs reused, and default-scheduler pods on the same nodes.
Every check reads the pods back from the API server and verifies their signed assignments."""

from __future__ import annotations

from collections import defaultdict

from e2e.e2e_kit import (
    Api,
    MakeNodes,
    create_pods,
    delete_pods,
    dgx1,
    failed_scheduling,
    name_of,
    node_of,
    pod_body,
    unassigned,
    verify_cluster,
    wait_bound,
    wait_turned_away,
    wait_until,
)
from scheduler.podcodec.signing import Signer
from topology.quality import set_quality


def test_whole_gpus_of_every_size_and_shares_get_nvlinked_sets(
        api: Api, ns: str, make_nodes: MakeNodes, signer: Signer) -> None:
    topo = dgx1()
    nodes = make_nodes(4, topo, prefix="dgx1")
    sizes = {"w8": 8, "w4a": 4, "w4b": 4, "w2a": 2, "w2b": 2, "w1a": 1, "w1b": 1}
    shares = {"s500a": 500, "s500b": 500, "s250a": 250, "s300": 300}
    create_pods(api.core, ns, [pod_body(n, gpus=g) for n, g in sizes.items()]
                + [pod_body(n, milli=m) for n, m in shares.items()])
    wait_bound(api, ns, [*sizes, *shares])
    placed = {p.name: p for k, p in verify_cluster(api, signer).items()
              if k.startswith(f"{ns}/")}
    assert set(placed) == set(sizes) | set(shares)
    assert {p.node for p in placed.values()} <= set(nodes)
    for name, g in sizes.items():
        gpus = placed[name].assignment.gpus
        assert len(gpus) == g
        if g > 1:
            # Every multi-GPU pod got a set as good as an empty DGX-1 offers (a 2-set is an
            # NVLinked pair, a 4-set a fully NVLinked quad): 4 nodes leave room for that.
            assert set_quality(topo, gpus) == 1.0, (name, gpus)
            if g == 2:
                a, b = gpus
                assert topo.links[a][b].startswith("NV"), (name, gpus, topo.links[a][b])
    held: dict[tuple[str, int], int] = defaultdict(int)
    for name, m in shares.items():
        share = placed[name].assignment
        assert share.gpu_milli == m and len(share.gpus) == 1
        held[(share.node, share.gpus[0])] += m
    # Shares never land on a GPU that a whole-GPU pod holds.
    whole = {(p.node, g) for n, p in placed.items() if n in sizes for g in p.assignment.gpus}
    assert not whole & set(held)


def test_pod_that_fits_nowhere_gets_the_reason_in_its_events(
        api: Api, ns: str, make_nodes: MakeNodes, signer: Signer) -> None:
    make_nodes(2, dgx1(), prefix="small")
    # A share asking for more GPU memory than any GPU has: only the extender judges shares
    # (ignoredByScheduler), so the reason that reaches the pod's events is ours.
    create_pods(api.core, ns, [pod_body("huge", milli=500, gpu_memory_mib=4_000_000)])
    messages = wait_turned_away(api, ns, ["huge"])["huge"]
    # kube-scheduler's "0/2 nodes are available: 2 <our reason>".
    assert any("0/2 nodes are available" in m and "4000000 MiB" in m for m in messages), messages
    pod = next(p for p in api.pods(ns) if name_of(p) == "huge")
    assert unassigned(pod)
    verify_cluster(api, signer)


def test_deleted_pods_gpus_are_reused(api: Api, ns: str, make_nodes: MakeNodes,
                                      signer: Signer) -> None:
    (node,) = make_nodes(1, dgx1(), prefix="reuse")
    first = [f"a{i}" for i in range(8)]
    create_pods(api.core, ns, [pod_body(n, gpus=1) for n in first])
    wait_bound(api, ns, first)
    placed = verify_cluster(api, signer)
    gpus_of = {p.name: p.assignment.gpus[0] for k, p in placed.items() if k.startswith(ns)}
    assert sorted(gpus_of.values()) == list(range(8))
    create_pods(api.core, ns, [pod_body(n, gpus=1) for n in ("late0", "late1")])
    wait_turned_away(api, ns, ["late0", "late1"])
    assert all(unassigned(p) for p in api.pods(ns) if name_of(p).startswith("late"))
    delete_pods(api.core, ns, ["a2", "a5"])
    wait_bound(api, ns, ["late0", "late1"])
    placed = verify_cluster(api, signer)
    reused = {placed[f"{ns}/{n}"].assignment.gpus[0] for n in ("late0", "late1")}
    assert reused == {gpus_of["a2"], gpus_of["a5"]}
    assert {placed[f"{ns}/{n}"].node for n in ("late0", "late1")} == {node}


def test_default_scheduler_pods_on_the_same_nodes(
        api: Api, ns: str, make_nodes: MakeNodes, signer: Signer) -> None:
    (node,) = make_nodes(1, dgx1(), prefix="mixed")
    create_pods(api.core, ns, [pod_body("theirs", gpus=4, scheduler="default-scheduler")])
    theirs = wait_bound(api, ns, ["theirs"])["theirs"]
    assert node_of(theirs) == node
    ours = [f"o{i}" for i in range(6)]
    create_pods(api.core, ns, [pod_body(n, gpus=1) for n in ours])

    def four_bound_two_turned_away() -> bool:
        pods = {name_of(p): p for p in api.pods(ns)}
        bound = [n for n in ours if node_of(pods[n])]
        waiting = [n for n in ours if not node_of(pods[n]) and failed_scheduling(api, ns, n)]
        return len(bound) == 4 and len(waiting) == 2

    wait_until("4 of our pods bound and 2 turned away", four_bound_two_turned_away)
    placed = [p for k, p in verify_cluster(api, signer).items() if k.startswith(f"{ns}/")]
    assert len(placed) == 4
    assert len({p.assignment.gpus[0] for p in placed}) == 4
    # The default scheduler's pod carries none of our annotations.
    theirs = next(p for p in api.pods(ns) if name_of(p) == "theirs")
    assert not any(k.startswith("gts.dev/") for k in theirs["metadata"].get("annotations") or {})
