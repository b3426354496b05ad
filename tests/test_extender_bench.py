"""The extender load benchmark runs end to end on a tiny cluster (its harness, not its speed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kube_scheduler_oracle import check_reply

from bench import extender_load


def test_benchmark_harness_runs_and_checks_every_reply() -> None:
    seen: list[str] = []

    def check(verb: str, reply: object, request: Mapping[str, Any]) -> object:
        seen.append(verb)
        return check_reply(verb, reply, request)

    res = extender_load.run([24], pods=6, object_pods=2, binds=10, seed=3, check=check)
    assert {"filter", "prioritize", "bind"} <= set(seen)
    r = res["sizes"]["24"]
    assert r["binds"]["bound"] == 10 and r["binds"]["failed"] == 0
    assert r["names"]["pods"] == 6 and r["names"]["filter_ms"]["n"] == 6
    assert r["objects"]["filter_ms"]["n"] == 2
    assert "binds at 24 nodes" in extender_load.table(res)


def test_filters_list_the_nodes_in_a_fresh_order_unless_fixed() -> None:
    """kube-scheduler's parallel filter lists feasible nodes in a different order every call;
    the benchmark does the same by default, so a memo of seen lists cannot flatter it."""
    lists: dict[str, list[list[str]]] = {"shuffled": [], "fixed": []}
    for order, seen in lists.items():
        def check(verb: str, reply: object, request: Mapping[str, Any],
                  seen: list[list[str]] = seen) -> object:
            if verb == "filter" and request.get("NodeNames"):
                seen.append(list(request["NodeNames"]))
            return check_reply(verb, reply, request)

        res = extender_load.run([24], pods=5, object_pods=0, binds=5, seed=3, check=check,
                                best_node_only=True, order=order)
        assert res["sizes"]["24"]["binds"]["failed"] == 0
    cluster = sorted(lists["fixed"][0])
    assert all(sorted(x) == cluster for v in lists.values() for x in v)
    assert all(x == lists["fixed"][0] for x in lists["fixed"])
    assert len({tuple(x) for x in lists["shuffled"]}) == len(lists["shuffled"]) == 10
