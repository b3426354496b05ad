"""The per-shape rows cached on the snapshot give exactly what an uncached call computes."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_policy_properties import TOPOLOGIES, make_snapshot, requests

from scheduler.contract.request import PodRequest
from scheduler.policy import DEFAULT_CONFIG, TypicalWorkload, filter_nodes, place, score_nodes
from scheduler.policy.feasibility import failure_codes
from scheduler.policy.flat_tables import flat_tables
from scheduler.policy.scoring import evaluate
from scheduler.policy.shape_cache import MAX_SHAPES, MEMO_KEY

NODE = st.tuples(st.integers(0, len(TOPOLOGIES) - 1), st.sampled_from([8000, 64000]),
                 st.sampled_from(["r0", "r1"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.lists(NODE, min_size=1, max_size=12), stream=st.lists(requests(), max_size=25),
       probe=requests())
def test_cached_rows_equal_a_fresh_computation(spec: list[tuple[int, int, str]],
                                               stream: list[PodRequest],
                                               probe: PodRequest) -> None:
    snap = make_snapshot(spec)
    mix = TypicalWorkload()
    for i, req in enumerate([probe, *stream]):
        # Every step: the probe shape (cached since the first step) against a fresh
        # computation on all nodes, then one placement changes one node.
        idx = np.arange(snap.n_nodes)
        fresh_codes, _ = failure_codes(probe, snap, idx, DEFAULT_CONFIG, flat_tables(snap))
        fr = filter_nodes(probe, snap)
        assert np.array_equal(fr.codes, fresh_codes)
        if fr.feasible.size:
            fresh, choice = evaluate(probe, snap, fr.feasible, mix, DEFAULT_CONFIG)
            cached = score_nodes(probe, snap, fr.feasible, mix)
            np.testing.assert_array_equal(cached, fresh)
            # ...and the GPUs each score assumed (what assign() hands out).
            last = snap.memo["last_scored"]
            np.testing.assert_array_equal(last.choice.sets, choice.sets)  # type: ignore[attr-defined]
            np.testing.assert_array_equal(last.choice.share_gpu,  # type: ignore[attr-defined]
                                          choice.share_gpu)
            assert int(np.argmax(cached)) == int(np.argmax(fresh))
        a = place(dataclasses.replace(req, key=f"p{i}"), snap, mix)
        if a is not None:
            snap.allocate(a)


def test_shapes_kept_are_bounded() -> None:
    snap = make_snapshot([(0, 64000, "r0")] * 3)
    from scheduler.contract.request import PodRequest

    for cpu in range(MAX_SHAPES + 10):
        filter_nodes(PodRequest("p", cpu_milli=cpu + 1, gpus=1), snap)
    memo = snap.memo[MEMO_KEY]
    assert isinstance(memo, dict) and len(memo) == MAX_SHAPES
