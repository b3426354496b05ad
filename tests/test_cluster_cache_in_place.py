"""A holding applied in place (without re-placing its node) gives the snapshot, pod errors and
overcommitted nodes that a full re-placement gives: a differential test against a cache whose
in-place path is turned off, over random streams of assumptions, bound pods, other
schedulers' pods, deletions and releases."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from snapshot_equality import same_state
from test_cluster_cache import annotated, new_cache, node_obj, pod_obj, whole

from scheduler.cluster.cache import ClusterCache
from scheduler.contract.assignment import Assignment
from scheduler.policy.snapshot import AllocationError

POD = st.integers(0, 5)
NODE = st.sampled_from(["a", "b"])
OPS = st.lists(st.one_of(
    st.tuples(st.just("assume"), POD, NODE, st.sets(st.integers(0, 3), min_size=1,
                                                   max_size=2).map(lambda s: tuple(sorted(s)))),
    st.tuples(st.just("bound"), POD),
    st.tuples(st.just("foreign"), POD, NODE, st.integers(1, 3)),
    st.tuples(st.just("delete"), POD),
    st.tuples(st.just("forget"), POD),
), max_size=30)


def new_pair() -> tuple[ClusterCache, ClusterCache]:
    """Two caches on nodes a and b (4 GPUs each); the second always re-places the node."""
    fast, full = new_cache(), new_cache()
    full._set_in_place = lambda key, new: False  # type: ignore[method-assign]
    for c in (fast, full):
        c.replace_nodes([node_obj("a", 4), node_obj("b", 4)])
        c.replace_pods([])
    return fast, full


def _state(c: ClusterCache) -> tuple[Any, ...]:
    return (dict(c.pod_errors), c.overcommitted, sorted(c._pods))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
# p1's bound pod wins GPU 0 over p0's newer assumption; then p0's own bound pod arrives with
# the same assignment and, keyed first, must take the GPU back: a node with a conflict is
# re-placed, never patched in place.
@example(ops=[("assume", 1, "a", (0,)), ("forget", 1), ("assume", 0, "a", (0,)),
              ("bound", 1), ("bound", 0)])
# Another scheduler's pod on the lowest wholly free GPUs, then ours beside it.
@example(ops=[("foreign", 2, "a", 1), ("assume", 0, "a", (1,)), ("bound", 0),
              ("foreign", 3, "a", 2)])
def test_in_place_equals_a_full_replacement(ops: list[tuple[Any, ...]]) -> None:
    fast, full = new_pair()
    assumed: dict[str, Assignment] = {}
    for op in ops:
        name = f"p{op[1]}"
        for c in (fast, full):
            if op[0] == "assume":
                a = whole(name, op[2], op[3])
                try:
                    c.assume(a)
                except AllocationError:
                    continue
                c.confirm(a.pod)
                assumed[name] = a
            elif op[0] == "bound" and name in assumed:
                a = assumed[name]
                c.upsert_pod(annotated(pod_obj(name, gpus=len(a.gpus), node=a.node), a))
            elif op[0] == "foreign":
                c.upsert_pod(pod_obj(name, gpus=op[3], node=op[2]))
            elif op[0] == "delete":
                c.delete_pod(pod_obj(name))
            elif op[0] == "forget":
                c.forget(f"ns/{name}")
        assert same_state(fast.snapshot, full.snapshot)
        assert _state(fast) == _state(full)
