"""The dynamic replay's bookkeeping against the policy: "can never fit" agrees with the
policy's unresolvable failure codes, a gang is held all or none, and a completion frees its
GPUs before an arrival at the same instant is placed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.baselines import make_policy
from bench.dynamic_replay import replay_dynamic
from bench.job_fit import never_fits
from bench.policy_answer import ReplayError, hold
from bench.workloads import Job
from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.policy.node_filter import filter_nodes
from scheduler.policy.snapshot import build_snapshot
from topology.presets import preset

PRESETS = ("dgx-a100", "pcie-4gpu", "single-gpu", "dgx1-v100")
MODELS = tuple(sorted({preset(p).model for p in PRESETS}))

nodes_st = st.lists(
    st.tuples(st.sampled_from(PRESETS), st.integers(1_000, 64_000), st.integers(1_024, 65_536)),
    min_size=1, max_size=4,
)


@st.composite
def pods(draw: st.DrawFn) -> PodRequest:
    kind = draw(st.sampled_from(("cpu", "whole", "share")))
    cpu = draw(st.integers(0, 80_000))
    mem = draw(st.integers(0, 80_000))
    models = frozenset(draw(st.sets(st.sampled_from(MODELS), max_size=2)))
    if kind == "cpu":
        return PodRequest("p", cpu, mem)
    if kind == "whole":
        return PodRequest("p", cpu, mem, gpus=draw(st.integers(1, 9)), allowed_models=models)
    return PodRequest("p", cpu, mem, gpu_milli=draw(st.integers(1, 999)),
                      gpu_memory_mib=draw(st.integers(0, 90_000)), allowed_models=models)


@settings(max_examples=200, deadline=None)
@given(nodes_st, pods())
def test_never_fits_exactly_when_every_node_is_ruled_out_for_good(
    spec: list[tuple[str, int, int]], pod: PodRequest
) -> None:
    nodes = [NodeSpec(f"n{i}", cpu, mem, preset(p)) for i, (p, cpu, mem) in enumerate(spec)]
    snap = build_snapshot(nodes)
    fr = filter_nodes(pod, snap)
    every_node_unresolvable = len(fr.unresolvable) == snap.n_nodes
    why = never_fits(snap, Job("j", 0.0, 1.0, (pod,)))
    assert (why is not None) == every_node_unresolvable, (why, fr.codes)


def test_a_gang_is_held_all_or_none() -> None:
    snap = build_snapshot([NodeSpec("a", 8_000, 8_192, preset("pcie-4gpu"))])
    free = (snap.milli_free.copy(), snap.cpu_free.copy())
    ok = Assignment("m0", "a", (0, 1), 1000, 0, 1_000, 1_024)
    clash = Assignment("m1", "a", (1, 2), 1000, 0, 1_000, 1_024)  # GPU 1 is m0's
    with pytest.raises(ReplayError, match="over-commits"):
        hold(snap, [ok, clash], "test")
    assert not snap.holdings
    assert np.array_equal(snap.milli_free, free[0]) and np.array_equal(snap.cpu_free, free[1])


def test_a_completion_frees_its_gpus_before_an_arrival_at_the_same_instant() -> None:
    nodes = [NodeSpec("a", 64_000, 65_536, preset("dgx-a100"))]
    jobs = [Job("first", 0.0, 10.0, (PodRequest("first", 1_000, 1_024, gpus=8),)),
            Job("second", 10.0, 10.0, (PodRequest("second", 1_000, 1_024, gpus=8),))]
    r = replay_dynamic(make_policy("binpack", 0), nodes, jobs, seed=0)
    assert r.completed == 2 and r.wait_s.tolist() == [0.0, 0.0]
