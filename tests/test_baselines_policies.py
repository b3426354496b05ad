"""Every baseline: valid answers on random streams, no mutation, determinism, the registry."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snapshot_equality import same_state

from bench.baselines import POLICIES, UnknownPolicyError, make_policy
from bench.fill_replay import replay_fill
from bench.policy_answer import check_assignment, gpu_replicas, replica_parts
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.snapshot import Snapshot, build_snapshot
from topology.presets import preset

BASELINES = ["default", "default-timeslice", "binpack", "random", "bestfit", "fgd"]
TOPOS = ["dgx1-v100", "dgx-a100", "pcie-8gpu-2socket", "pcie-4gpu", "pcie-2gpu", "single-gpu"]


def cluster(shapes: list[tuple[str, int, int]]) -> list[NodeSpec]:
    return [NodeSpec(name=f"n{i}", cpu_milli=cpu, memory_mib=mem, topology=preset(t))
            for i, (t, cpu, mem) in enumerate(shapes)]


node_shapes = st.lists(
    st.tuples(st.sampled_from(TOPOS), st.sampled_from([4000, 16000, 64000]),
              st.sampled_from([8192, 65536])),
    min_size=1, max_size=6,
)


@st.composite
def pod_streams(draw: st.DrawFn) -> list[PodRequest]:
    n = draw(st.integers(1, 40))
    out = []
    for i in range(n):
        kind = draw(st.sampled_from(["cpu", "share", "whole"]))
        cpu = draw(st.sampled_from([0, 500, 2000, 8000]))
        mem = draw(st.sampled_from([0, 1024, 8192]))
        models = draw(st.sampled_from([frozenset(), frozenset({"Tesla T4"})]))
        if kind == "cpu":
            out.append(PodRequest(key=f"p{i}", cpu_milli=cpu, memory_mib=mem))
        elif kind == "share":
            out.append(PodRequest(key=f"p{i}", cpu_milli=cpu, memory_mib=mem,
                                  gpu_milli=draw(st.sampled_from([100, 250, 500, 810, 999])),
                                  allowed_models=models))
        else:
            out.append(PodRequest(key=f"p{i}", cpu_milli=cpu, memory_mib=mem,
                                  gpus=draw(st.sampled_from([1, 2, 3, 4, 8])),
                                  allowed_models=models))
    return out


def run_stream(name: str, seed: int, nodes: list[NodeSpec], pods: list[PodRequest],
               ) -> tuple[Snapshot, list[tuple[str, str, tuple[int, ...], int] | None]]:
    snap = build_snapshot(nodes)
    pol = make_policy(name, seed)
    for p in pods:
        pol.observe(p)
    trail: list[tuple[str, str, tuple[int, ...], int] | None] = []
    for p in pods:
        before = snap.copy()
        a = pol.place(p, snap)
        assert same_state(snap, before), f"{name} mutated the snapshot"
        if a is None:
            trail.append(None)
            continue
        reps = gpu_replicas(pol)  # time-sliced replicas are held as shares of their GPU
        check_assignment(p, a, snap, name, reps)
        for part in (replica_parts(a) if reps > 1 else [a]):
            snap.allocate(part)  # raises on any over-commit
        trail.append((a.pod, a.node, a.gpus, a.gpu_milli))
    return snap, trail


@pytest.mark.parametrize("name", BASELINES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes=node_shapes, pods=pod_streams(), seed=st.integers(0, 2**16))
def test_never_over_allocates_and_is_deterministic(
    name: str, shapes: list[tuple[str, int, int]], pods: list[PodRequest], seed: int
) -> None:
    nodes = cluster(shapes)
    snap, trail = run_stream(name, seed, nodes, pods)
    assert (snap.milli_free >= 0).all() and (snap.cpu_free >= 0).all()
    assert (snap.mem_free >= 0).all() and (snap.gpu_mem_free >= 0).all()
    _, again = run_stream(name, seed, nodes, pods)
    assert trail == again


@pytest.mark.parametrize("name", ["random", "bestfit", "fgd"])
def test_artifact_baselines_share_gpus(name: str) -> None:
    nodes = cluster([("pcie-2gpu", 64000, 65536)])
    pods = [PodRequest(key=f"s{i}", cpu_milli=100, gpu_milli=250) for i in range(8)]
    snap, trail = run_stream(name, 1, nodes, pods)
    assert all(t is not None for t in trail)  # eight quarter-GPU shares fit on two GPUs
    assert int(snap.milli_free.sum()) == 0
    assert make_policy(name, 0).place(PodRequest(key="x", gpu_milli=1), snap) is None


def test_bestfit_packs_shares_onto_the_tightest_gpu() -> None:
    nodes = cluster([("pcie-2gpu", 64000, 65536)])
    pods = [PodRequest(key="a", cpu_milli=100, gpu_milli=600),
            PodRequest(key="b", cpu_milli=100, gpu_milli=300)]
    _, trail = run_stream("bestfit", 0, nodes, pods)
    assert trail[0] is not None and trail[1] is not None
    assert trail[1][2] == trail[0][2]  # the 300 share joins the 600 one


def test_fill_replay_runs_every_baseline_on_a_small_cluster() -> None:
    nodes = cluster([(t, 64000, 262144) for t in TOPOS for _ in range(2)])
    pods = ([PodRequest(key=f"w{i}", cpu_milli=4000, memory_mib=8192, gpus=1 + i % 4)
             for i in range(10)]
            + [PodRequest(key=f"s{i}", cpu_milli=2000, memory_mib=4096,
                          gpu_milli=(230, 470, 810)[i % 3]) for i in range(30)]
            + [PodRequest(key=f"c{i}", cpu_milli=6000, memory_mib=8192) for i in range(5)])
    for name in BASELINES:
        r = replay_fill(make_policy(name, 3), nodes, pods, seed=3)
        assert r.n_pods > len(pods)  # copies added up to 130 % of the GPUs
        assert r.allocated_pct.max() <= 100.0 + 1e-9
        assert r.placed.any()
        assert r.capacity_milli == sum(n.topology.n for n in nodes) * MILLI_PER_GPU


def test_registry_lists_every_policy_and_names_the_valid_ones() -> None:
    assert set(BASELINES) | {"topology"} == set(POLICIES)
    for name in BASELINES:
        assert make_policy(name, 1).name == name
    with pytest.raises(UnknownPolicyError, match="valid policies: topology, default"):
        make_policy("kube", 0)
