"""default-timeslice: kube-scheduler's default profile over time-sliced GPU replicas."""

from __future__ import annotations

import numpy as np
import pytest

from bench.baselines import make_policy
from bench.baselines.timeslice import TimeSliceDefaultPolicy
from bench.dynamic_replay import replay_dynamic
from bench.fill_replay import replay_fill
from bench.policy_answer import hold
from bench.workloads import Job
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.policy.snapshot import build_snapshot
from topology.presets import preset


def _node(name: str, topo: str = "pcie-2gpu") -> NodeSpec:
    return NodeSpec(name, 64_000, 256_000, preset(topo))


def _pod(key: str, gpus: int = 0, milli: int = 0) -> PodRequest:
    return PodRequest(key=key, cpu_milli=1000, memory_mib=1000, gpus=gpus, gpu_milli=milli)


def test_replicas_spread_over_the_least_allocated_gpus() -> None:
    pol = TimeSliceDefaultPolicy(0, replicas=4)
    free = np.array([4, 2, 3, 4])  # GPU 1 has 2 replicas taken, GPU 2 one
    for _ in range(20):  # ties are broken by kubelet's random order
        got = pol.distributed_alloc(free, 4, 3)
        # GPUs 0 and 3 (nothing allocated) first, then any GPU with one allocated: never 1.
        assert {0, 3} <= set(got) and 1 not in got
    # More replicas than GPUs: some GPU must repeat.
    got = pol.distributed_alloc(np.array([4, 4]), 2, 3)
    assert len(got) == 3 and len(set(got)) == 2


def test_a_fractional_pod_takes_one_replica_and_risks_are_counted() -> None:
    snap = build_snapshot([_node("a", "single-gpu")])
    pol = TimeSliceDefaultPolicy(0, replicas=4)
    placed = []
    for k in range(4):  # 4 pods of 0.6 GPU: kube sees 4 replicas, the GPU 2.4 GPUs of demand
        a = pol.place(_pod(f"s{k}", milli=600), snap)
        assert a is not None and a.gpus == (0,) and a.gpu_milli == 250
        hold(snap, [a], pol.name, 4)
        placed.append(a)
    assert pol.place(_pod("s4", milli=100), snap) is None  # replicas are gone
    assert pol.events["oversubscribed_gpu_pods"] == 3  # the 2nd, 3rd and 4th pods
    assert pol.events["colocated_whole_gpu_pods"] == 0


def test_whole_gpu_pods_share_a_gpu_and_are_counted() -> None:
    snap = build_snapshot([_node("a", "single-gpu")])
    pol = TimeSliceDefaultPolicy(0, replicas=2)
    a = pol.place(_pod("w0", gpus=1), snap)
    assert a is not None
    hold(snap, [a], pol.name, 2)
    b = pol.place(_pod("w1", gpus=1), snap)
    assert b is not None and b.gpus == (0,)  # kube-scheduler sees a free replica
    assert pol.events["colocated_whole_gpu_pods"] == 1
    assert pol.events["oversubscribed_gpu_pods"] == 1


def test_fill_replay_counts_replicas_and_never_overcommits() -> None:
    nodes = [_node(f"n{i}") for i in range(4)]  # 8 GPUs, 32 replicas
    pods = [_pod(f"p{i}", milli=500) for i in range(40)] + [_pod(f"w{i}", gpus=2)
                                                            for i in range(4)]
    r = replay_fill(make_policy("default-timeslice", 1), nodes, pods, seed=1, target_ratio=0)
    # The pods in submission order (the fill protocol's shuffle), to count their replicas.
    from bench.fill_replay import fill_order

    order, _ = fill_order(pods, 8000, 1, 0)
    replicas = sum(1 if p.is_share else p.gpus for p, ok in zip(order, r.placed, strict=True)
                   if ok)
    assert replicas * 250 == round(r.allocated_pct[-1] * 8000 / 100)  # a replica = 1/4 GPU
    assert replicas >= 31  # a pod fails only when fewer replicas are left than it asks for
    assert r.allocated_pct[-1] <= 100.0
    assert r.events["oversubscribed_gpu_pods"] > 0


def test_dynamic_replay_releases_every_replica() -> None:
    nodes = [_node("n0")]
    jobs = [Job(f"j{i}", float(i), 10.0, (_pod(f"p{i}", gpus=2),)) for i in range(6)]
    d = replay_dynamic(make_policy("default-timeslice", 0), nodes, jobs, seed=0)
    assert d.completed == 6 and d.queued_at_end == 0
    assert d.alloc_milli[-1] == 0  # everything handed back
    # 4 replicas of 2 GPUs: two 2-GPU jobs at a time, each on both GPUs (spread first).
    assert d.events["colocated_whole_gpu_pods"] > 0


def test_replicas_must_divide_a_gpu() -> None:
    with pytest.raises(ValueError, match="replicas=3"):
        TimeSliceDefaultPolicy(0, replicas=3)
