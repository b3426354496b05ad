"""Gang admission in the policy core: the cluster-size bound, the backoff, the reason order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.policy.gang_admission import gang_admission, gang_backoff_s, max_members
from scheduler.policy.place import place
from scheduler.policy.snapshot import build_snapshot
from topology.presets import preset


def _snap(n8: int = 2, n4: int = 1, cpu: int = 16_000) -> object:
    specs = [NodeSpec(f"a{i}", cpu, 1 << 20, preset("dgx-a100")) for i in range(n8)]
    specs += [NodeSpec(f"p{i}", cpu, 1 << 20, preset("pcie-4gpu")) for i in range(n4)]
    return build_snapshot(specs)


def test_max_members_counts_every_resource_and_the_model() -> None:
    snap = _snap()
    assert max_members(PodRequest("p", gpus=4), snap) == 2 * 2 + 1  # type: ignore[arg-type]
    assert max_members(PodRequest("p", gpus=3), snap) == 2 * 2 + 1  # type: ignore[arg-type]
    # CPU binds first: 16 cores per node, 6 per pod -> 2 per node.
    assert max_members(PodRequest("p", gpus=1, cpu_milli=6000), snap) == 6  # type: ignore[arg-type]
    # Shares: 3 per GPU at 300 thousandths; 20 GPUs.
    assert max_members(PodRequest("p", gpu_milli=300), snap) == 60  # type: ignore[arg-type]
    a100 = snap.specs[0].gpu_model  # type: ignore[attr-defined]
    only = PodRequest("p", gpus=1, allowed_models=frozenset({a100}))
    assert max_members(only, snap) == 16  # type: ignore[arg-type]
    nowhere = PodRequest("p", gpus=1, allowed_models=frozenset({"B200"}))
    assert max_members(nowhere, snap) == 0  # type: ignore[arg-type]
    assert max_members(PodRequest("p", gpus=1), build_snapshot([])) == 0


@settings(max_examples=40, deadline=None)
@given(gpus=st.integers(0, 8), milli=st.sampled_from([0, 250, 500, 999]),
       cpu=st.integers(0, 20_000))
def test_max_members_bounds_what_an_empty_cluster_takes(gpus: int, milli: int, cpu: int) -> None:
    if gpus and milli:
        milli = 0
    snap = _snap()
    req = PodRequest("p", cpu_milli=cpu, gpus=gpus, gpu_milli=milli)
    if not req.wants_gpu:
        return
    bound = max_members(req, snap)  # type: ignore[arg-type]
    placed = 0
    while placed <= bound:
        a = place(PodRequest(f"p{placed}", cpu_milli=cpu, gpus=gpus, gpu_milli=milli),
                  snap)  # type: ignore[arg-type]
        if a is None:
            break
        snap.allocate(a)  # type: ignore[attr-defined]
        placed += 1
    assert placed <= bound


def test_backoff_doubles_from_the_initial_and_is_capped() -> None:
    assert [gang_backoff_s(n, 30.0, 300.0) for n in range(7)] == [
        0.0, 30.0, 60.0, 120.0, 240.0, 300.0, 300.0]
    assert gang_backoff_s(10_000, 1.0, 5.0) == 5.0  # no overflow


def test_admission_reasons_in_the_order_a_person_needs_them() -> None:
    assert gang_admission(4, 4, 10, cap=100) is None
    assert "above the limit of 100" in (gang_admission(101, 200, 1000, cap=100) or "")
    assert "at most 3 such pods" in (gang_admission(4, 1, 3, cap=100) or "")
    assert "waiting for 1 more member (3 of 4" in (gang_admission(4, 3, 10, cap=100) or "")
    assert "waiting for 2 more members" in (gang_admission(4, 2, 10, cap=100,
                                                           backoff_left_s=5) or "")
    assert "backing off" in (gang_admission(4, 4, 10, cap=100, backoff_left_s=5) or "")
