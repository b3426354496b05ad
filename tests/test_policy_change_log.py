"""Snapshot.changed_rows (the change log) names exactly the nodes whose version moved, from any
earlier generation: recent ones from the log, old ones (trimmed, or before a copy) by version."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_policy_properties import make_snapshot

from scheduler.contract.assignment import Assignment


@settings(max_examples=30, deadline=None)
@given(nodes=st.integers(1, 6), steps=st.lists(st.tuples(st.integers(0, 5), st.booleans()),
                                                min_size=1, max_size=1500),
       copy_at=st.integers(0, 1500))
def test_changed_rows_equal_the_version_comparison(
        nodes: int, steps: list[tuple[int, bool]], copy_at: int) -> None:
    snap = make_snapshot([(0, 64000, "r0")] * nodes)
    seen: list[tuple[int, np.ndarray]] = [(snap.generation, snap.node_version.copy())]
    held: list[str] = []
    for k, (node, release) in enumerate(steps):
        if k == copy_at:
            snap = snap.copy()  # a copy starts its own log
        if release and held:
            snap.release(held.pop())
        else:
            key = f"p{k}"
            snap.allocate(Assignment(pod=key, node=snap.names[node % nodes], gpus=(),
                                     cpu_milli=1, memory_mib=0))
            held.append(key)
        seen.append((snap.generation, snap.node_version.copy()))
    for generation, versions in seen[:: max(1, len(seen) // 40)] + seen[-3:]:
        got = snap.changed_rows(generation, versions)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, np.flatnonzero(snap.node_version != versions))


def test_a_long_history_is_trimmed_and_old_generations_still_answer() -> None:
    snap = make_snapshot([(0, 64000, "r0")] * 3)
    versions = snap.node_version.copy()
    for k in range(3000):
        snap.allocate(Assignment(pod=f"p{k}", node=snap.names[k % 2], cpu_milli=1))
    assert snap.log_start > 0 and len(snap.change_log) <= 1024  # trimmed
    np.testing.assert_array_equal(snap.changed_rows(0, versions), [0, 1])
    recent = snap.generation
    snap.allocate(Assignment(pod="last", node=snap.names[2], cpu_milli=1))
    np.testing.assert_array_equal(snap.changed_rows(recent, snap.node_version - [0, 0, 1]), [2])
