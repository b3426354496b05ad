"""Properties of the policy on random small clusters and random request streams."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snapshot_equality import same_state

from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.policy import (
    AllocationError,
    Snapshot,
    TopologyIndex,
    TypicalWorkload,
    assign,
    build_snapshot,
    filter_nodes,
    place,
    plan_gang,
    release_gang,
    reserve_gang,
    score_nodes,
)
from scheduler.policy.config import DEFAULT_CONFIG
from scheduler.policy.failure import Failure
from scheduler.policy.reasons import reason_text
from topology.model import GPU, NodeTopology
from topology.presets import DGX1_NVLINKS

DGX1_NV = DGX1_NVLINKS  # the preset's NVLink pairs, one source of truth
LINKS = ("NV1", "NV2", "NV4", "PIX", "PXB", "PHB", "NODE", "SYS")


def _topo(n: int, link: dict[tuple[int, int], str], model: str, mem: int) -> NodeTopology:
    gpus = tuple(GPU(index=i, model=model, memory_mib=mem) for i in range(n))
    rows = tuple(tuple("X" if i == j else link[(min(i, j), max(i, j))] for j in range(n))
                 for i in range(n))
    return NodeTopology(gpus=gpus, links=rows)


def _random_topo(n: int, seed: int) -> NodeTopology:
    rng = np.random.default_rng(seed)
    link = {(i, j): LINKS[int(rng.integers(len(LINKS)))] for i in range(n) for j in range(i + 1, n)}
    return _topo(n, link, "R", 8000)


TOPOLOGIES: tuple[NodeTopology, ...] = (
    _topo(8, {(i, j): DGX1_NV.get((i, j)) or ("PHB" if i // 4 == j // 4 else "SYS")
              for i in range(8) for j in range(i + 1, 8)}, "V100", 16384),
    _topo(8, {(i, j): "NV12" for i in range(8) for j in range(i + 1, 8)}, "A100", 40960),
    _topo(4, {(i, j): "PIX" if i // 2 == j // 2 else "SYS" for i in range(4)
              for j in range(i + 1, 4)}, "T4", 15360),
    _topo(2, {(0, 1): "PHB"}, "T4", 15360),
    _topo(1, {}, "T4", 15360),
    _random_topo(5, 1),
    _random_topo(6, 2),
    _random_topo(3, 3),
    NodeTopology(gpus=(), links=()),
)
# Tables are built once per topology and shared by every generated cluster.
TIX = TopologyIndex()
for _t in TOPOLOGIES:
    if _t.n:
        TIX.add(_t)

clusters = st.lists(
    st.tuples(st.integers(0, len(TOPOLOGIES) - 1), st.sampled_from([8000, 32000, 96000]),
              st.sampled_from(["r0", "r1", ""])),
    min_size=1, max_size=4,
)


@st.composite
def requests(draw: st.DrawFn) -> PodRequest:
    kind = draw(st.sampled_from(["whole", "whole", "share", "share", "cpu"]))
    cpu = draw(st.sampled_from([0, 1000, 4000, 16000]))
    mem = draw(st.sampled_from([0, 1024, 65536]))
    models = draw(st.sampled_from([frozenset(), frozenset({"T4"}), frozenset({"A100", "V100"})]))
    key = "p"
    if kind == "whole":
        return PodRequest(key, cpu, mem, gpus=draw(st.integers(1, 8)), allowed_models=models)
    if kind == "share":
        return PodRequest(key, cpu, mem, gpu_milli=draw(st.integers(1, 999)),
                          gpu_memory_mib=draw(st.sampled_from([0, 0, 2000, 9000])),
                          allowed_models=models)
    return PodRequest(key, cpu, mem)


def _renamed(r: PodRequest, key: str) -> PodRequest:
    return PodRequest(key, r.cpu_milli, r.memory_mib, r.gpus, r.gpu_milli, r.gpu_memory_mib,
                      r.allowed_models)


def make_snapshot(spec: list[tuple[int, int, str]]) -> Snapshot:
    nodes = [NodeSpec(f"n{i}", cpu, 4 * cpu, TOPOLOGIES[t], (rack,))
             for i, (t, cpu, rack) in enumerate(spec)]
    return build_snapshot(nodes, topo_index=TIX)


def check_invariants(snap: Snapshot) -> None:
    n = snap.gpu_count
    g = np.arange(snap.max_gpus)[None, :]
    real = g < n[:, None]
    assert ((snap.milli_free >= 0) & (snap.milli_free <= 1000)).all()
    assert (snap.milli_free[~real] == 0).all()
    assert ((snap.gpu_mem_free >= 0) & (snap.gpu_mem_free <= snap.gpu_mem_total)).all()
    assert (snap.cpu_free >= 0).all() and (snap.mem_free >= 0).all()
    whole = (snap.milli_free == 1000) & real
    mask = (whole * (1 << g)).sum(axis=1)
    assert (mask == snap.free_mask).all()
    held = np.zeros_like(snap.milli_free)
    for a in snap.holdings.values():
        for gi in a.gpus:
            held[snap.index[a.node], gi] += a.gpu_milli
    assert (held + snap.milli_free == np.where(real, 1000, 0)).all()


def best_quality_bruteforce(snap: Snapshot, node: int, k: int) -> float:
    tables = snap.tables_of(node)
    assert tables is not None
    free = [i for i in range(int(snap.gpu_count[node])) if int(snap.free_mask[node]) >> i & 1]
    return max(float(tables.set_quality[sum(1 << i for i in c)])
               for c in itertools.combinations(free, k))


def check_placement(req: PodRequest, snap: Snapshot, mix: TypicalWorkload) -> None:
    a = place(req, snap, mix)
    fr = filter_nodes(req, snap)
    # The sentences are shared between nodes with equal values: each is the node's own.
    codes = dict(zip(fr.candidates.tolist(), fr.codes.tolist(), strict=True))
    assert fr.reasons == {j: reason_text(req, snap, j, Failure(c), DEFAULT_CONFIG)
                          for j, c in codes.items() if c != Failure.OK}
    if a is None:
        assert fr.feasible.size == 0
        return
    node = snap.index[a.node]
    assert node in set(fr.feasible.tolist())
    assert assign(req, snap, node, workload=mix) == a  # score and assign agree
    scores = score_nodes(req, snap, fr.feasible, mix)  # the extender's path: cached choices
    assert int(fr.feasible[int(np.argmax(scores))]) == node
    assert assign(req, snap, node, workload=mix) == a
    if req.gpus:
        assert len(a.gpus) == req.gpus and a.gpu_milli == 1000
        tables = snap.tables_of(node)
        assert tables is not None
        got = float(tables.set_quality[sum(1 << g for g in a.gpus)])
        assert got == best_quality_bruteforce(snap, node, req.gpus)
    elif req.is_share:
        (g,) = a.gpus
        assert a.gpu_milli == req.gpu_milli <= snap.milli_free[node, g]
        assert a.gpu_memory_mib == req.gpu_memory_mib <= snap.gpu_mem_free[node, g]
    else:
        assert a.gpus == ()
    if req.allowed_models:
        assert snap.specs[node].gpu_model in req.allowed_models
    for j in range(snap.n_nodes):
        if j in fr.reasons:
            try:
                assign(req, snap, j, workload=mix)
            except AllocationError:
                continue
            raise AssertionError(f"assign succeeded on node {j}: {fr.reasons[j]}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters, st.lists(st.tuples(requests(), st.integers(0, 5)), max_size=25))
def test_random_streams_keep_every_invariant(
    spec: list[tuple[int, int, str]], stream: list[tuple[PodRequest, int]]
) -> None:
    snap = make_snapshot(spec)
    empty = snap.copy()
    mix = TypicalWorkload(refresh_every=1)
    for i, (req0, release_roll) in enumerate(stream):
        req = _renamed(req0, f"s{i}")
        mix.observe(req)
        check_placement(req, snap, mix)
        a = place(req, snap, mix)
        if a is not None:
            before = snap.copy()
            snap.allocate(a)
            check_invariants(snap)
            if release_roll == 0:  # allocate-then-release is exact
                snap.release(a.pod)
                assert same_state(snap, before)
        if release_roll == 1 and snap.holdings:
            snap.release(sorted(snap.holdings)[0])
            check_invariants(snap)
    for pod in list(snap.holdings):
        snap.release(pod)
    assert same_state(snap, empty)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters, st.lists(requests(), max_size=8), st.lists(requests(), min_size=1, max_size=5))
def test_gang_plans_are_all_or_nothing(
    spec: list[tuple[int, int, str]], background: list[PodRequest], members: list[PodRequest]
) -> None:
    snap = make_snapshot(spec)
    mix = TypicalWorkload()
    for i, req0 in enumerate(background):
        req = _renamed(req0, f"b{i}")
        a = place(req, snap, mix)
        if a is not None:
            snap.allocate(a)
    members = [_renamed(m, f"gang-{i}") for i, m in enumerate(members)]
    before = snap.copy()
    plan = plan_gang(members, snap, mix)
    assert same_state(snap, before)  # planning never touches the snapshot
    if isinstance(plan, str):
        assert plan
        return
    assert [a.pod for a in plan.assignments] == [m.key for m in members]
    reserve_gang(snap, plan.assignments)
    check_invariants(snap)
    assert all(m.key in snap.holdings for m in members)
    for m, a in zip(members, plan.assignments, strict=True):
        if m.gpus:
            assert len(a.gpus) == m.gpus
    if plan.level is not None:
        col = snap.level_ids[:, plan.level]
        assert len({int(col[snap.index[a.node]]) for a in plan.assignments}) == 1
    release_gang(snap, plan.assignments)
    assert same_state(snap, before)
